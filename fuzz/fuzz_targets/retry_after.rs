//! `Retry-After` parsing (`delivery::retry::parse_retry_after`): a receiver's header value,
//! read on every retryable response. Any string: no panic; delta-seconds give exactly that
//! many seconds (saturating), a negative number zero, an HTTP date at most the distance to
//! the end of year 9999, and a later `now` never a longer wait.
#![no_main]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use herald::delivery::retry::parse_retry_after;
use libfuzzer_sys::fuzz_target;

/// 9999-12-31T23:59:59Z, the last second an HTTP date can name.
const LAST_HTTP_DATE: Duration = Duration::from_secs(253_402_300_799);

fuzz_target!(|data: &[u8]| {
    let Ok(value) = std::str::from_utf8(data) else {
        return;
    };
    let now = SystemTime::now();
    let Some(wait) = parse_retry_after(value, now) else {
        return;
    };

    let trimmed = value.trim();
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if digits(trimmed) {
        let secs = trimmed.parse::<u64>().unwrap_or(u64::MAX);
        assert_eq!(wait, Duration::from_secs(secs), "{value:?}");
        return;
    }
    if trimmed.strip_prefix('-').is_some_and(digits) {
        assert_eq!(wait, Duration::ZERO, "{value:?}");
        return;
    }

    // An HTTP date: never later than the last date there is.
    let since_epoch = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let bound = LAST_HTTP_DATE.saturating_sub(since_epoch);
    assert!(
        wait <= bound,
        "{value:?} waits {wait:?}, more than {bound:?}"
    );
    let later = parse_retry_after(value, now + Duration::from_secs(3600))
        .unwrap_or_else(|| panic!("{value:?} parses at one time and not an hour later"));
    assert!(
        later <= wait,
        "{value:?}: {later:?} an hour later, {wait:?} now"
    );
    assert!(wait.saturating_sub(later) <= Duration::from_secs(3600));
});
