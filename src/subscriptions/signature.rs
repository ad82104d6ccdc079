//! Standard Webhooks signing: the `webhook-signature` header that every delivery
//! attempt carries, and its check in `herald sink`. A subscription's key is a
//! `whsec_<base64>` secret; during a rotation the current and the previous secret
//! both sign, so receivers holding either one keep verifying.

use std::fmt;
use std::ops::RangeInclusive;

use base64::Engine as _;
use base64::alphabet;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

const PREFIX: &str = "whsec_";
const VERSION: &str = "v1";
const KEY_LEN: RangeInclusive<usize> = 24..=64;
const GENERATED_KEY_LEN: usize = 32;
/// Length of one `v1,<base64 of 32 bytes>` entry.
const SIGNATURE_LEN: usize = VERSION.len() + 1 + 44;

// Secrets are pasted in by people and other tools, and some drop the `=` padding;
// both forms name the same key.
const SECRET_BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// A subscription's signing secret, `whsec_<base64>`. Past [`SigningSecret::parse`]
/// the key is 24 to 64 bytes. `Debug` shows `SigningSecret(***)` and there is no
/// `Display`, so a secret cannot end up in a log line by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningSecret {
    /// The `whsec_` form, as given or generated.
    text: String,
    /// The HMAC key: the base64-decoded part after `whsec_`.
    key: Vec<u8>,
}

/// Why a string is not a signing secret. The messages never quote the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("signing secret must start with `whsec_`")]
    MissingPrefix,
    #[error("signing secret is not valid base64 after `whsec_`")]
    Base64(#[source] base64::DecodeError),
    #[error("signing secret key is {len} bytes, it must be 24 to 64")]
    KeyLength { len: usize },
}

/// Why a request's signature was not accepted (`herald sink` prints it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("webhook-timestamp is not unix seconds")]
    InvalidTimestamp,
    #[error("webhook-timestamp is {age_secs}s old, past the {tolerance_secs}s tolerance")]
    TooOld { age_secs: i64, tolerance_secs: i64 },
    #[error(
        "webhook-timestamp is {ahead_secs}s in the future, past the {tolerance_secs}s tolerance"
    )]
    InTheFuture {
        ahead_secs: i64,
        tolerance_secs: i64,
    },
    #[error("webhook-signature holds no v1 signature")]
    NoSignature,
    #[error("no v1 signature in webhook-signature matches the secret")]
    Mismatch,
}

impl SigningSecret {
    /// Parses `whsec_<base64>` (standard alphabet, with or without `=` padding)
    /// whose key decodes to 24 to 64 bytes.
    pub fn parse(s: &str) -> Result<Self, SecretError> {
        let encoded = s.strip_prefix(PREFIX).ok_or(SecretError::MissingPrefix)?;
        let key = SECRET_BASE64.decode(encoded).map_err(SecretError::Base64)?;
        if !KEY_LEN.contains(&key.len()) {
            return Err(SecretError::KeyLength { len: key.len() });
        }
        Ok(Self {
            text: s.to_owned(),
            key,
        })
    }

    /// A fresh secret: `whsec_` and the base64 of 32 bytes from the OS random source.
    pub fn generate() -> Self {
        let mut key = vec![0; GENERATED_KEY_LEN];
        // A host without a working OS random source cannot mint secrets safely;
        // stopping beats handing out a guessable key.
        getrandom::fill(&mut key).expect("the OS random source is available");
        let mut text = String::from(PREFIX);
        STANDARD.encode_string(&key, &mut text);
        Self { text, key }
    }

    /// The `whsec_` text. Only for the secret endpoint and for storage.
    pub fn expose(&self) -> &str {
        &self.text
    }
}

impl fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningSecret(***)")
    }
}

/// Serializes as the `whsec_` string: this is how the secret is stored with its subscription.
impl Serialize for SigningSecret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

/// Deserializes from the `whsec_` string, validated by [`SigningSecret::parse`].
impl<'de> Deserialize<'de> for SigningSecret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Builds the `webhook-signature` header value: `v1,<base64 HMAC-SHA256 of
/// "{msg_id}.{timestamp}.{body}">`, one per secret, space-separated (during a
/// rotation both the current and the previous secret sign). Empty when `secrets` is.
pub fn sign(secrets: &[&SigningSecret], msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut digits = [0; 20];
    let timestamp = decimal(timestamp, &mut digits);
    let mut header = String::with_capacity(secrets.len() * (SIGNATURE_LEN + 1));
    for (i, secret) in secrets.iter().enumerate() {
        if i > 0 {
            header.push(' ');
        }
        let tag = keyed_mac(&secret.key, msg_id, timestamp, body)
            .finalize()
            .into_bytes();
        header.push_str(VERSION);
        header.push(',');
        STANDARD.encode_string(tag, &mut header);
    }
    header
}

/// Verifies a request signed with `secret`: the timestamp must lie within
/// `tolerance_secs` of `now` (unix seconds) either way, and one of the `v1`
/// signatures in `signature_header` must match (compared in constant time).
/// Signatures of other versions are ignored. Used by `herald sink`.
pub fn verify(
    secret: &SigningSecret,
    msg_id: &str,
    timestamp_header: &str,
    signature_header: &str,
    body: &[u8],
    now: i64,
    tolerance_secs: i64,
) -> Result<(), VerifyError> {
    let timestamp: i64 = timestamp_header
        .parse()
        .map_err(|_| VerifyError::InvalidTimestamp)?;
    // Saturating: a hostile timestamp near i64::MIN or MAX must not overflow.
    let age_secs = now.saturating_sub(timestamp);
    if age_secs > tolerance_secs {
        return Err(VerifyError::TooOld {
            age_secs,
            tolerance_secs,
        });
    }
    let ahead_secs = timestamp.saturating_sub(now);
    if ahead_secs > tolerance_secs {
        return Err(VerifyError::InTheFuture {
            ahead_secs,
            tolerance_secs,
        });
    }

    let mut candidates = signature_header
        .split(' ')
        .filter_map(|entry| entry.split_once(','))
        .filter(|(version, _)| *version == VERSION)
        .map(|(_, signature)| signature)
        .peekable();
    if candidates.peek().is_none() {
        return Err(VerifyError::NoSignature);
    }

    // Signed as the parsed number, like the Standard Webhooks libraries do.
    let mut digits = [0; 20];
    let mac = keyed_mac(&secret.key, msg_id, decimal(timestamp, &mut digits), body);
    for signature in candidates {
        // An undecodable entry is simply not a match; another entry may still be.
        let Ok(tag) = STANDARD.decode(signature) else {
            continue;
        };
        if mac.clone().verify_slice(&tag).is_ok() {
            return Ok(());
        }
    }
    Err(VerifyError::Mismatch)
}

/// An HMAC-SHA256 over `{msg_id}.{timestamp}.{body}`, fed piece by piece: bodies
/// can be large, and the signed content never needs to exist as one buffer.
fn keyed_mac(key: &[u8], msg_id: &str, timestamp: &[u8], body: &[u8]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(msg_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp);
    mac.update(b".");
    mac.update(body);
    mac
}

/// Writes `n` in decimal into the end of `buf` and returns the digits, without
/// touching the heap. 20 bytes hold every i64, `-9223372036854775808` included.
fn decimal(n: i64, buf: &mut [u8; 20]) -> &[u8] {
    let mut rest = n.unsigned_abs();
    let mut start = buf.len();
    loop {
        start -= 1;
        buf[start] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    if n < 0 {
        start -= 1;
        buf[start] = b'-';
    }
    &buf[start..]
}

#[cfg(test)]
mod tests {
    use std::time::{SystemTime, UNIX_EPOCH};

    use axum::http::{HeaderMap, HeaderValue};
    use proptest::prelude::*;
    use standardwebhooks::Webhook;

    use super::*;

    const SPEC_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const SPEC_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const SPEC_TIMESTAMP: i64 = 1_614_265_330;
    const SPEC_BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SPEC_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
    const TOLERANCE: i64 = 5 * 60;

    fn secret(text: &str) -> SigningSecret {
        SigningSecret::parse(text).expect("test secret is valid")
    }

    fn unix_now() -> i64 {
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("the clock is past 1970");
        i64::try_from(since_epoch.as_secs()).expect("unix seconds fit in i64")
    }

    /// The headers a receiver sees, for the `standardwebhooks` crate.
    fn headers(msg_id: &str, timestamp: i64, signature: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let value = |s: &str| HeaderValue::from_str(s).expect("valid header value");
        headers.insert("webhook-id", value(msg_id));
        headers.insert("webhook-timestamp", value(&timestamp.to_string()));
        headers.insert("webhook-signature", value(signature));
        headers
    }

    fn reference(secret: &SigningSecret) -> Webhook {
        Webhook::new(secret.expose()).expect("standardwebhooks accepts the secret")
    }

    #[test]
    fn the_standard_webhooks_spec_vector_signs_as_published() {
        let header = sign(&[&secret(SPEC_SECRET)], SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY);
        assert_eq!(header, SPEC_SIGNATURE);
    }

    #[test]
    fn the_spec_vector_verifies_within_the_tolerance() {
        let result = verify(
            &secret(SPEC_SECRET),
            SPEC_ID,
            &SPEC_TIMESTAMP.to_string(),
            SPEC_SIGNATURE,
            SPEC_BODY,
            SPEC_TIMESTAMP + TOLERANCE,
            TOLERANCE,
        );
        assert_eq!(result, Ok(()));
    }

    #[test]
    fn a_signature_verifies_with_the_standardwebhooks_crate() {
        let key = SigningSecret::generate();
        let now = unix_now();
        let body = br#"{"id":"e1","type":"deployment.failed","data":{"n":1}}"#;
        let header = sign(&[&key], "e1", now, body);
        reference(&key)
            .verify(body, &headers("e1", now, &header))
            .expect("standardwebhooks verifies herald's signature");
    }

    #[test]
    fn a_standardwebhooks_signature_verifies_here() {
        let key = secret(SPEC_SECRET);
        let now = unix_now();
        let header = reference(&key)
            .sign("msg_1", now, b"{}")
            .expect("standardwebhooks signs");
        let result = verify(
            &key,
            "msg_1",
            &now.to_string(),
            &header,
            b"{}",
            now,
            TOLERANCE,
        );
        assert_eq!(result, Ok(()));
    }

    #[test]
    fn both_signatures_in_a_rotation_verify() {
        let current = SigningSecret::generate();
        let previous = secret(SPEC_SECRET);
        let now = unix_now();
        let header = sign(&[&current, &previous], "msg_r", now, b"body");

        assert_eq!(header.split(' ').count(), 2);
        for key in [&current, &previous] {
            let ours = verify(
                key,
                "msg_r",
                &now.to_string(),
                &header,
                b"body",
                now,
                TOLERANCE,
            );
            assert_eq!(ours, Ok(()));
            reference(key)
                .verify(b"body", &headers("msg_r", now, &header))
                .expect("standardwebhooks verifies either secret of a rotation");
        }
    }

    #[test]
    fn no_secrets_sign_as_an_empty_header() {
        assert_eq!(sign(&[], "msg", 1, b""), "");
    }

    #[test]
    fn verify_rejects_a_changed_body_id_or_secret() {
        let key = secret(SPEC_SECRET);
        let ts = SPEC_TIMESTAMP.to_string();
        let check = |key: &SigningSecret, id: &str, body: &[u8]| {
            verify(
                key,
                id,
                &ts,
                SPEC_SIGNATURE,
                body,
                SPEC_TIMESTAMP,
                TOLERANCE,
            )
        };
        assert_eq!(
            check(&key, SPEC_ID, br#"{"test": 2432232315}"#),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            check(&key, "msg_other", SPEC_BODY),
            Err(VerifyError::Mismatch)
        );
        let other = SigningSecret::generate();
        assert_eq!(
            check(&other, SPEC_ID, SPEC_BODY),
            Err(VerifyError::Mismatch)
        );
    }

    #[test]
    fn verify_rejects_timestamps_outside_the_tolerance_either_way() {
        let key = secret(SPEC_SECRET);
        let ts = SPEC_TIMESTAMP.to_string();
        let at = |now: i64| {
            verify(
                &key,
                SPEC_ID,
                &ts,
                SPEC_SIGNATURE,
                SPEC_BODY,
                now,
                TOLERANCE,
            )
        };

        assert_eq!(at(SPEC_TIMESTAMP - TOLERANCE), Ok(()));
        assert_eq!(
            at(SPEC_TIMESTAMP + TOLERANCE + 1),
            Err(VerifyError::TooOld {
                age_secs: TOLERANCE + 1,
                tolerance_secs: TOLERANCE
            })
        );
        assert_eq!(
            at(SPEC_TIMESTAMP - TOLERANCE - 1),
            Err(VerifyError::InTheFuture {
                ahead_secs: TOLERANCE + 1,
                tolerance_secs: TOLERANCE
            })
        );
    }

    #[test]
    fn verify_survives_extreme_timestamps() {
        let key = secret(SPEC_SECRET);
        let min = i64::MIN.to_string();
        let result = verify(&key, "m", &min, SPEC_SIGNATURE, b"", i64::MAX, TOLERANCE);
        assert!(
            matches!(result, Err(VerifyError::TooOld { .. })),
            "{result:?}"
        );
        let max = i64::MAX.to_string();
        let result = verify(&key, "m", &max, SPEC_SIGNATURE, b"", i64::MIN, TOLERANCE);
        assert!(
            matches!(result, Err(VerifyError::InTheFuture { .. })),
            "{result:?}"
        );
    }

    #[test]
    fn verify_rejects_a_timestamp_that_is_not_unix_seconds() {
        let key = secret(SPEC_SECRET);
        for ts in ["", "soon", "1614265330.5", "2021-02-25T15:02:10Z"] {
            let result = verify(
                &key,
                SPEC_ID,
                ts,
                SPEC_SIGNATURE,
                SPEC_BODY,
                SPEC_TIMESTAMP,
                TOLERANCE,
            );
            assert_eq!(
                result,
                Err(VerifyError::InvalidTimestamp),
                "timestamp {ts:?}"
            );
        }
    }

    #[test]
    fn verify_finds_the_v1_signature_among_other_entries() {
        let key = secret(SPEC_SECRET);
        let ts = SPEC_TIMESTAMP.to_string();
        let check = |header: &str| {
            verify(
                &key,
                SPEC_ID,
                &ts,
                header,
                SPEC_BODY,
                SPEC_TIMESTAMP,
                TOLERANCE,
            )
        };

        let mixed = format!("v1a,abc v1,not*base64 v1,AAAA  {SPEC_SIGNATURE} v2,xyz");
        assert_eq!(check(&mixed), Ok(()));
        assert_eq!(check(""), Err(VerifyError::NoSignature));
        assert_eq!(
            check("v2,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="),
            Err(VerifyError::NoSignature)
        );
        // A prefix of the right signature is not the signature.
        assert_eq!(check(&SPEC_SIGNATURE[..20]), Err(VerifyError::Mismatch));
    }

    #[test]
    fn parse_rejects_bad_secrets() {
        let short = format!("whsec_{}", STANDARD.encode([7; 23]));
        let long = format!("whsec_{}", STANDARD.encode([7; 65]));
        let cases = [
            ("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "missing prefix"),
            (
                "WHSEC_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                "prefix in capitals",
            ),
            ("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLa!w", "not base64"),
            (
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n",
                "trailing newline",
            ),
            (
                "whsec_MfKQ9r8G_YqrTwjUPD8ILPZIo2LaLaSw",
                "url-safe alphabet",
            ),
            ("whsec_", "empty key"),
            (short.as_str(), "23-byte key"),
            (long.as_str(), "65-byte key"),
        ];
        for (text, why) in cases {
            assert!(
                SigningSecret::parse(text).is_err(),
                "{why}: {text:?} was accepted"
            );
        }
        assert_eq!(SigningSecret::parse("abc"), Err(SecretError::MissingPrefix));
        assert_eq!(
            SigningSecret::parse(&short),
            Err(SecretError::KeyLength { len: 23 })
        );
    }

    #[test]
    fn parse_accepts_keys_of_24_to_64_bytes_with_or_without_padding() {
        for len in [24, 25, 32, 64] {
            let padded = format!("whsec_{}", STANDARD.encode(vec![1; len]));
            let unpadded = padded.trim_end_matches('=');
            let a = secret(&padded);
            let b = secret(unpadded);
            assert_eq!(a.key, b.key, "{len} bytes");
            assert_eq!(a.key.len(), len);
            assert_eq!(a.expose(), padded, "the text is kept as given");
        }
    }

    #[test]
    fn generated_secrets_are_32_random_bytes_that_parse_back() {
        let a = SigningSecret::generate();
        let b = SigningSecret::generate();
        assert_ne!(a, b);
        assert_eq!(a.key.len(), 32);
        assert!(a.expose().starts_with("whsec_"));
        assert_eq!(secret(a.expose()), a);
    }

    #[test]
    fn debug_hides_the_key() {
        let key = secret(SPEC_SECRET);
        let shown = format!("{key:?} {:?}", Some(&key));
        assert_eq!(shown, "SigningSecret(***) Some(SigningSecret(***))");
        assert!(!shown.contains("MfKQ9r8G"));
    }

    #[test]
    fn errors_do_not_echo_the_secret() {
        for text in [
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLa",
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        ] {
            let err = SigningSecret::parse(text).expect_err("invalid secret");
            assert!(!err.to_string().contains("MfKQ9r8G"), "{err}");
        }
    }

    #[test]
    fn serde_round_trips_the_whsec_string_and_validates_it() {
        let key = secret(SPEC_SECRET);
        let json = serde_json::to_string(&key).expect("serializes");
        assert_eq!(json, format!("\"{SPEC_SECRET}\""));
        let back: SigningSecret = serde_json::from_str(&json).expect("deserializes");
        assert_eq!(back, key);

        let err = serde_json::from_str::<SigningSecret>("\"whsec_short\"").expect_err("too short");
        assert!(err.to_string().contains("signing secret"), "{err}");
    }

    #[test]
    fn decimal_writes_every_i64_like_display() {
        for n in [0, 7, -1, 10, 1_614_265_330, i64::MAX, i64::MIN] {
            let mut buf = [0; 20];
            assert_eq!(decimal(n, &mut buf), n.to_string().as_bytes());
        }
    }

    proptest! {
        #[test]
        fn any_id_and_body_signed_here_verifies_with_standardwebhooks(
            id in "[A-Za-z0-9._:-]{1,128}",
            body in any::<String>(),
        ) {
            let key = secret(SPEC_SECRET);
            let now = unix_now();
            let header = sign(&[&key], &id, now, body.as_bytes());
            let verified = reference(&key).verify(body.as_bytes(), &headers(&id, now, &header));
            prop_assert!(verified.is_ok(), "{verified:?}");
        }

        #[test]
        fn any_bytes_signed_here_verify_here_and_one_changed_byte_does_not(
            id in any::<String>(),
            body in any::<Vec<u8>>(),
            timestamp in any::<i64>(),
            flip in any::<usize>(),
        ) {
            let key = SigningSecret::generate();
            let header = sign(&[&key], &id, timestamp, &body);
            let ts = timestamp.to_string();
            prop_assert_eq!(verify(&key, &id, &ts, &header, &body, timestamp, TOLERANCE), Ok(()));

            let changed = if body.is_empty() {
                vec![0]
            } else {
                let mut changed = body.clone();
                changed[flip % body.len()] ^= 1;
                changed
            };
            prop_assert_eq!(
                verify(&key, &id, &ts, &header, &changed, timestamp, TOLERANCE),
                Err(VerifyError::Mismatch)
            );
        }

        #[test]
        fn decimal_matches_display_for_any_i64(n in any::<i64>()) {
            let mut buf = [0; 20];
            let display = n.to_string();
            prop_assert_eq!(decimal(n, &mut buf), display.as_bytes());
        }
    }
}
