//! When a failed delivery runs again: exponential backoff with jitter, a
//! `Retry-After` floor, snapped to the fixed set of delay-queue TTLs the topology
//! declares. Pure, no I/O: the deliverer asks for a delay after an
//! `Outcome::Retry` (or for a parked task) and publishes the task to that
//! bucket's delay queue.

use std::time::{Duration, SystemTime};

use crate::config::DeliveryConfig;

/// Jitter spreads a delay by up to this fraction either way.
const JITTER: f64 = 0.2;
/// Where a level's buckets sit, in units of [`JITTER`]: factors 0.8, 0.9, 1.0, 1.1, 1.2.
const BUCKET_STEPS: [f64; 5] = [-1.0, -0.5, 0.0, 0.5, 1.0];

/// The retry schedule: the n-th retry waits `min(initial * multiplier^(n-1), max_delay)`,
/// +-20 % jitter, never less than a `Retry-After` (itself capped at `max_delay`).
///
/// Delays are whole milliseconds; set `max_delay` to at least 1 ms (config validates it).
/// Compute delays with the deployment's policy even when a subscription overrides
/// `max_attempts`: only that policy's [`buckets`](Self::buckets) have delay queues, and
/// a retry past `max_attempts` still lands on one of them.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Wait before the first retry.
    pub initial: Duration,
    /// Growth per retry; below 1 (or NaN) counts as 1, so waits never shrink.
    pub multiplier: f64,
    /// No wait is longer, a `Retry-After` included.
    pub max_delay: Duration,
    /// Attempts in all, the first included: `max_attempts - 1` retries.
    pub max_attempts: u32,
}

impl RetryPolicy {
    /// The deployment's schedule; a subscription may override `max_attempts` only.
    pub fn from_config(config: &DeliveryConfig) -> Self {
        Self {
            initial: config.retry_initial,
            multiplier: config.retry_multiplier,
            max_delay: config.retry_max_delay,
            max_attempts: config.max_attempts.get(),
        }
    }

    /// The fixed set of delay-queue TTLs this policy can ever ask for, ascending,
    /// deduplicated, whole milliseconds (at least 1 ms). For every distinct level
    /// `min(initial * multiplier^(n-1), max_delay)`, n = 1 ..= max_attempts - 1 (at least
    /// level 1, so there is always a bucket), five buckets at 0.8, 0.9, 1.0, 1.1 and 1.2
    /// of it, none above `max_delay`; plus `max_delay` itself, which a `Retry-After`
    /// may ask for even when the backoff never gets there.
    pub fn buckets(&self) -> Vec<Duration> {
        self.bucket_millis()
            .into_iter()
            .map(Duration::from_millis)
            .collect()
    }

    /// The delay before retry number `retry` (1-based: retry 1 follows attempt 1; 0 counts
    /// as 1), with `jitter` in [-1.0, 1.0] spreading it by up to 20 % (outside values are
    /// clamped, NaN counts as 0), never below `not_before` (a `Retry-After`, capped at
    /// `max_delay`). Returns the smallest bucket at or above that wanted delay.
    pub fn delay(&self, retry: u32, jitter: f64, not_before: Option<Duration>) -> Duration {
        let cap = self.cap_millis();
        let backoff = jittered(self.level_millis(retry, cap), jitter, cap);
        // Rounded up: a whole-ms bucket must not undercut a sub-millisecond floor.
        let floor = not_before.map_or(0, |at_least| ceil_millis(at_least).min(cap));
        self.bucket_at_least(backoff.max(floor))
    }

    /// The shortest bucket that waits at least `wait` (the longest, `max_delay`,
    /// when none does): where a task waits for its subscription to have room.
    pub fn bucket_for_wait(&self, wait: Duration) -> Duration {
        self.bucket_at_least(ceil_millis(wait).min(self.cap_millis()))
    }

    /// The smallest bucket at or above `wanted` milliseconds (at most the cap).
    fn bucket_at_least(&self, wanted: u64) -> Duration {
        let buckets = self.bucket_millis();
        // The cap is always a bucket and `wanted` never exceeds it, so `find` finds one;
        // the fallbacks only keep this total.
        let chosen = buckets
            .iter()
            .copied()
            .find(|&bucket| bucket >= wanted)
            .or_else(|| buckets.last().copied())
            .unwrap_or_else(|| self.cap_millis());
        Duration::from_millis(chosen)
    }

    /// [`delay`](Self::delay) with jitter drawn from `fastrand`.
    pub fn next_delay(&self, retry: u32, not_before: Option<Duration>) -> Duration {
        self.delay(retry, fastrand::f64() * 2.0 - 1.0, not_before)
    }

    fn bucket_millis(&self) -> Vec<u64> {
        let cap = self.cap_millis();
        let levels = self.max_attempts.saturating_sub(1).max(1);
        let mut buckets = Vec::new();
        let mut previous = None;
        for retry in 1..=levels {
            let level = self.level_millis(retry, cap);
            // Levels never shrink, so once one repeats (saturated at the cap, or a
            // multiplier of 1) every later one is the same.
            if previous == Some(level) {
                break;
            }
            previous = Some(level);
            buckets.extend(BUCKET_STEPS.iter().map(|&step| jittered(level, step, cap)));
        }
        buckets.push(cap);
        buckets.sort_unstable();
        buckets.dedup();
        buckets
    }

    /// The un-jittered wait before `retry`, in (fractional) milliseconds, at most `cap`.
    fn level_millis(&self, retry: u32, cap: u64) -> f64 {
        let exponent = i32::try_from(retry.max(1) - 1).unwrap_or(i32::MAX);
        // In f64 a huge power becomes infinity rather than overflowing, and `min`
        // brings it back to the cap.
        let growth = self.multiplier.max(1.0).powi(exponent);
        let millis = self.initial.as_secs_f64() * 1000.0 * growth;
        // NaN only from a zero initial times an infinite growth: zero it is.
        if millis.is_nan() {
            0.0
        } else {
            millis.min(cap as f64)
        }
    }

    /// `max_delay` in whole milliseconds, at least 1.
    fn cap_millis(&self) -> u64 {
        u64::try_from(self.max_delay.as_millis())
            .unwrap_or(u64::MAX)
            .max(1)
    }
}

/// `level` spread by `jitter` (in [-1, 1]) times [`JITTER`], rounded to whole
/// milliseconds, within 1 ..= `cap`. Buckets and wanted delays both come from here,
/// so a jitter of exactly a bucket step lands exactly on that bucket.
fn jittered(level: f64, jitter: f64, cap: u64) -> u64 {
    let jitter = if jitter.is_nan() {
        0.0
    } else {
        jitter.clamp(-1.0, 1.0)
    };
    // `as` saturates on out-of-range floats.
    let millis = (level * (1.0 + JITTER * jitter)).round() as u64;
    millis.clamp(1, cap)
}

fn ceil_millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX)
}

/// Parses a `Retry-After` value: delta-seconds or an HTTP date, taken relative to
/// `now`. A date in the past, or a negative number of seconds, means no wait
/// (`Duration::ZERO`); anything else that is neither form is `None`. Numbers too
/// large for a `u64` saturate; [`RetryPolicy::delay`] caps the result at `max_delay`.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Some(digits) = value.strip_prefix('-') {
        return all_digits(digits).then_some(Duration::ZERO);
    }
    if all_digits(value) {
        // Only overflow can fail here, since the value is all digits.
        let secs = value.parse().unwrap_or(u64::MAX);
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const SECOND: Duration = Duration::from_secs(1);
    const HOUR: Duration = Duration::from_secs(3600);

    /// herald's shipped defaults (config/herald.toml).
    fn defaults() -> RetryPolicy {
        RetryPolicy {
            initial: 5 * SECOND,
            multiplier: 3.0,
            max_delay: 6 * HOUR,
            max_attempts: 13,
        }
    }

    /// What the integration tests use: millisecond timings.
    fn fast() -> RetryPolicy {
        RetryPolicy {
            initial: Duration::from_millis(1),
            multiplier: 2.0,
            max_delay: Duration::from_millis(50),
            max_attempts: 5,
        }
    }

    fn base(policy: &RetryPolicy, retry: u32) -> Duration {
        let exponent = i32::try_from(retry - 1).expect("small retry");
        let secs = policy.initial.as_secs_f64() * policy.multiplier.powi(exponent);
        Duration::from_secs_f64(secs).min(policy.max_delay)
    }

    #[test]
    fn the_default_schedule_spans_about_28_hours_from_first_attempt_to_last() {
        let policy = defaults();
        let retries = 1..policy.max_attempts;
        let total: Duration = retries.clone().map(|n| base(&policy, n)).sum();
        // 5s + 15s + ... + 10935s = 16400s, then four retries at the 6h cap.
        assert_eq!(total, Duration::from_secs(102_800));
        assert!(total > 27 * HOUR && total < 29 * HOUR, "{total:?}");

        let without_jitter: Duration = retries.map(|n| policy.delay(n, 0.0, None)).sum();
        assert_eq!(without_jitter, total);
    }

    #[test]
    fn the_default_policy_needs_43_delay_queues() {
        let buckets = defaults().buckets();
        // Eight levels below the cap (5s .. 10935s), five buckets each, then the
        // cap's 0.8, 0.9 and 1.0 (1.1 and 1.2 clamp to 6h).
        assert_eq!(buckets.len(), 43);
        assert_eq!(buckets.first(), Some(&(4 * SECOND)));
        assert_eq!(buckets.last(), Some(&(6 * HOUR)));
        assert!(
            buckets.windows(2).all(|w| w[0] < w[1]),
            "ascending, no duplicates"
        );
        let first_level: Vec<_> = buckets[..5].iter().map(Duration::as_millis).collect();
        assert_eq!(first_level, [4000, 4500, 5000, 5500, 6000]);
        let top = [17_280, 19_440, 21_600].map(Duration::from_secs);
        assert_eq!(buckets[40..], top);
    }

    #[test]
    fn buckets_are_whole_milliseconds_of_at_least_one() {
        let buckets = fast().buckets();
        // Levels 1, 2, 4, 8 ms: 0.8 ms and 0.9 ms round to 1 ms, 1.1 ms rounds down to it.
        let millis: Vec<_> = buckets.iter().map(Duration::as_millis).collect();
        assert_eq!(millis, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 50]);
        assert!(buckets.iter().all(|b| b.subsec_nanos() % 1_000_000 == 0));
    }

    #[test]
    fn every_delay_is_one_of_the_buckets() {
        for policy in [defaults(), fast()] {
            let buckets = policy.buckets();
            let not_befores = [
                None,
                Some(Duration::ZERO),
                Some(7 * SECOND),
                Some(3 * HOUR),
                Some(100 * HOUR),
            ];
            for retry in 0..=20 {
                for step in -20..=20 {
                    let jitter = f64::from(step) / 20.0;
                    for not_before in not_befores {
                        let delay = policy.delay(retry, jitter, not_before);
                        assert!(
                            buckets.contains(&delay),
                            "{delay:?} for retry {retry}, jitter {jitter}, {not_before:?}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn without_jitter_the_delay_is_the_level_itself() {
        let policy = defaults();
        for retry in 1..=20 {
            assert_eq!(
                policy.delay(retry, 0.0, None),
                base(&policy, retry),
                "retry {retry}"
            );
        }
    }

    #[test]
    fn jitter_stays_within_twenty_percent_and_snaps_up_to_the_next_bucket_of_its_level() {
        let policy = defaults();
        // Retry 2 waits 15s; its buckets are 12, 13.5, 15, 16.5 and 18s.
        let ms = |jitter: f64| policy.delay(2, jitter, None).as_millis();
        assert_eq!(ms(-1.0), 12_000);
        assert_eq!(ms(-0.9), 13_500, "12.3s snaps up to 13.5s");
        assert_eq!(ms(0.3), 16_500, "15.9s snaps up to 16.5s");
        assert_eq!(ms(1.0), 18_000);
        // Out of range or NaN jitter is clamped, never more than 20 %.
        assert_eq!(ms(7.0), 18_000);
        assert_eq!(ms(-7.0), 12_000);
        assert_eq!(ms(f64::NAN), 15_000);
        // At the cap, upward jitter has nowhere to go.
        assert_eq!(policy.delay(12, 1.0, None), 6 * HOUR);
    }

    #[test]
    fn a_retry_after_is_never_undercut() {
        let policy = defaults();
        // Retry 1 would wait 5s; the endpoint asked for 7s, the next bucket up is 12s.
        assert_eq!(policy.delay(1, 0.0, Some(7 * SECOND)), 12 * SECOND);
        // A Retry-After shorter than the backoff changes nothing.
        assert_eq!(policy.delay(3, 0.0, Some(SECOND)), 45 * SECOND);
        for not_before in [SECOND, 61 * SECOND, 2 * HOUR, 5 * HOUR + SECOND] {
            for retry in 1..13 {
                assert!(policy.delay(retry, -1.0, Some(not_before)) >= not_before);
            }
        }
    }

    #[test]
    fn a_retry_after_beyond_max_delay_is_capped_at_it() {
        let policy = defaults();
        assert_eq!(policy.delay(1, 0.0, Some(48 * HOUR)), 6 * HOUR);
        // Even when the backoff itself never reaches the cap.
        let short = RetryPolicy {
            max_attempts: 3,
            ..defaults()
        };
        assert_eq!(short.delay(1, 0.0, Some(Duration::MAX)), 6 * HOUR);
    }

    #[test]
    fn a_sub_millisecond_retry_after_rounds_up() {
        let policy = fast();
        assert_eq!(
            policy.delay(1, -1.0, Some(Duration::from_micros(1_500))),
            Duration::from_millis(2)
        );
    }

    #[test]
    fn a_wait_goes_to_the_shortest_bucket_that_covers_it() {
        let policy = defaults();
        assert_eq!(policy.bucket_for_wait(Duration::ZERO), 4 * SECOND);
        assert_eq!(
            policy.bucket_for_wait(4100 * Duration::from_millis(1)),
            4500 * Duration::from_millis(1)
        );
        assert_eq!(policy.bucket_for_wait(7 * SECOND), 12 * SECOND);
        assert_eq!(policy.bucket_for_wait(48 * HOUR), 6 * HOUR);
    }

    #[test]
    fn retry_zero_counts_as_the_first_retry() {
        let policy = defaults();
        assert_eq!(policy.delay(0, 0.0, None), policy.delay(1, 0.0, None));
    }

    #[test]
    fn huge_retries_and_multipliers_saturate_at_max_delay() {
        let policy = RetryPolicy {
            multiplier: 1e300,
            max_attempts: u32::MAX,
            ..defaults()
        };
        assert_eq!(policy.delay(u32::MAX, 1.0, None), 6 * HOUR);
        assert_eq!(policy.buckets().len(), 5 + 3, "level 1, then the cap");
        let endless = RetryPolicy {
            multiplier: f64::INFINITY,
            ..defaults()
        };
        assert_eq!(endless.delay(2, 0.0, None), 6 * HOUR);
        let zero = RetryPolicy {
            initial: Duration::ZERO,
            multiplier: f64::INFINITY,
            ..defaults()
        };
        assert_eq!(zero.delay(2, 0.0, None), Duration::from_millis(1));
    }

    #[test]
    fn a_multiplier_below_one_counts_as_one() {
        let policy = RetryPolicy {
            multiplier: 0.5,
            ..defaults()
        };
        assert_eq!(policy.delay(5, 0.0, None), 5 * SECOND);
        assert_eq!(policy.buckets().len(), 5 + 1);
    }

    #[test]
    fn a_policy_without_retries_still_has_buckets() {
        for max_attempts in [0, 1] {
            let policy = RetryPolicy {
                max_attempts,
                ..defaults()
            };
            let buckets = policy.buckets();
            assert_eq!(buckets.len(), 6, "level 1 and the cap");
            assert!(buckets.contains(&policy.delay(1, 0.0, None)));
        }
    }

    #[test]
    fn a_retry_past_max_attempts_still_lands_on_a_bucket() {
        // A subscription may allow more attempts than the deployment's policy.
        let policy = RetryPolicy {
            max_attempts: 3,
            ..defaults()
        };
        let delay = policy.delay(8, 0.0, None);
        assert!(policy.buckets().contains(&delay));
        assert_eq!(delay, 6 * HOUR);
    }

    #[test]
    fn next_delay_draws_a_bucket_within_the_jitter_band() {
        let policy = defaults();
        let buckets = policy.buckets();
        for _ in 0..200 {
            let delay = policy.next_delay(2, None);
            assert!(buckets.contains(&delay));
            assert!(delay >= 12 * SECOND && delay <= 18 * SECOND, "{delay:?}");
        }
    }

    #[test]
    fn retry_after_reads_delta_seconds() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_retry_after("120", now), Some(120 * SECOND));
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("-5", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("99999999999999999999999999", now),
            Some(Duration::from_secs(u64::MAX))
        );
    }

    #[test]
    fn retry_after_reads_http_dates_relative_to_now() {
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").expect("valid date");
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:51:07 GMT", now),
            Some(90 * SECOND)
        );
        // The obsolete forms HTTP still requires receivers to accept.
        assert_eq!(
            parse_retry_after("Sunday, 06-Nov-94 08:50:37 GMT", now),
            Some(60 * SECOND)
        );
        assert_eq!(
            parse_retry_after("Sun Nov  6 08:49:47 1994", now),
            Some(10 * SECOND)
        );
        assert_eq!(
            parse_retry_after("Sat, 05 Nov 1994 08:49:37 GMT", now),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn retry_after_garbage_is_none() {
        let now = SystemTime::now();
        for value in [
            "",
            " ",
            "soon",
            "1.5",
            "+5",
            "5s",
            "-",
            "--5",
            "0x10",
            "Sun, 06 Nov 1994",
        ] {
            assert_eq!(parse_retry_after(value, now), None, "{value:?}");
        }
    }

    fn policies() -> impl Strategy<Value = RetryPolicy> {
        (0..=3_600_000u64, 0.0..20.0f64, 1..=172_800_000u64, 0..40u32).prop_map(
            |(initial, multiplier, max_delay, max_attempts)| RetryPolicy {
                initial: Duration::from_millis(initial),
                multiplier,
                max_delay: Duration::from_millis(max_delay),
                max_attempts,
            },
        )
    }

    fn not_befores() -> impl Strategy<Value = Option<Duration>> {
        prop::option::of(prop_oneof![
            any::<u64>().prop_map(Duration::from_nanos),
            (0..=200_000u64).prop_map(Duration::from_secs),
            any::<u64>().prop_map(Duration::from_secs),
        ])
    }

    proptest! {
        #[test]
        fn a_delay_is_always_a_bucket_within_max_delay_and_above_retry_after(
            policy in policies(),
            retry in prop_oneof![0..60u32, any::<u32>()],
            jitter in prop_oneof![-1.0..=1.0f64, any::<f64>()],
            not_before in not_befores(),
        ) {
            let delay = policy.delay(retry, jitter, not_before);
            prop_assert!(policy.buckets().contains(&delay), "{:?} not in {:?}", delay, policy.buckets());
            prop_assert!(delay <= policy.max_delay);
            let floor = not_before.unwrap_or(Duration::ZERO).min(policy.max_delay);
            prop_assert!(delay >= floor, "{delay:?} below {floor:?}");
        }

        #[test]
        fn buckets_are_ascending_distinct_and_within_one_ms_to_max_delay(policy in policies()) {
            let buckets = policy.buckets();
            prop_assert!(!buckets.is_empty());
            prop_assert!(buckets.windows(2).all(|w| w[0] < w[1]));
            prop_assert!(buckets.iter().all(|b| *b >= Duration::from_millis(1) && *b <= policy.max_delay));
            prop_assert!(buckets.len() <= 5 * policy.max_attempts.max(2) as usize);
        }

        #[test]
        fn without_retry_after_a_delay_stays_near_its_level(
            policy in policies(),
            retry in 1..40u32,
            jitter in -1.0..=1.0f64,
        ) {
            // Within the policy's own retries, where the level has its buckets.
            let retry = 1 + (retry - 1) % policy.max_attempts.saturating_sub(1).max(1);
            let cap = policy.cap_millis();
            let level = policy.level_millis(retry, cap);
            let delay = policy.delay(retry, jitter, None).as_millis();
            let low = jittered(level, -1.0, cap);
            let high = jittered(level, 1.0, cap);
            prop_assert!((u128::from(low)..=u128::from(high)).contains(&delay), "{delay} outside {low}..={high}");
        }

        #[test]
        fn parse_retry_after_never_panics(value in any::<String>(), secs in any::<u64>()) {
            let now = SystemTime::UNIX_EPOCH + Duration::from_secs(secs % 400_000_000_000);
            let _ = parse_retry_after(&value, now);
        }

        #[test]
        fn parse_retry_after_never_panics_on_near_misses(
            value in r"-?[0-9]{0,30}|[A-Za-z]{3}, [0-9]{1,2} [A-Za-z]{3} [0-9]{1,5} [0-9]{2}:[0-9]{2}:[0-9]{2} GMT",
        ) {
            let _ = parse_retry_after(&value, SystemTime::now());
        }

        #[test]
        fn any_delta_seconds_parse_to_themselves(secs in any::<u64>()) {
            prop_assert_eq!(parse_retry_after(&secs.to_string(), SystemTime::now()), Some(Duration::from_secs(secs)));
        }
    }
}
