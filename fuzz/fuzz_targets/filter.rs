//! Payload filters (`subscriptions::filter::Filter`), saved through the API and evaluated on
//! every event. Any string: no panic, and nothing past `MAX_LEN` or `MAX_DEPTH` parses. A
//! parsed filter evaluates without panicking against an event whose `data` is the JSON after
//! a NUL byte in the input (a fixed payload when there is none or it is not JSON), and
//! `not (filter)` comes out as its negation, unknown staying unknown.
#![no_main]

use herald::event::{Event, decode};
use herald::subscriptions::filter::{Filter, FilterError, MAX_LEN, Subject};
use libfuzzer_sys::fuzz_target;

const PAYLOAD: &str = r#"{"status": "failed", "duration_ms": 1500, "ratio": 0.5, "ok": false,
    "none": null, "commit": {"branch": "main"}, "tags": ["a", "b"], "items": [{"name": "x"}]}"#;

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    let (source, payload) = input.split_once('\0').unwrap_or((input, PAYLOAD));
    let filter = match Filter::parse(source) {
        Ok(filter) => filter,
        Err(FilterError::TooLong { .. }) => {
            assert!(source.len() > MAX_LEN);
            return;
        }
        Err(_) => return,
    };
    assert!(source.len() <= MAX_LEN);
    let event = event(payload);
    let subject = Subject::new(&event);
    let verdict = filter.evaluate(&subject);
    assert_eq!(
        filter.evaluate(&subject),
        verdict,
        "{source:?} is not deterministic"
    );
    if let Ok(negated) = Filter::parse(&format!("not ({source})")) {
        assert_eq!(
            negated.evaluate(&subject),
            verdict.map(|v| !v),
            "{source:?}"
        );
    }
});

fn event(payload: &str) -> Event {
    let body = |data: &str| {
        format!(
            r#"{{"id": "evt-1", "type": "deployment.failed", "source": "ci",
                "time": "2026-01-02T03:04:05Z", "labels": {{"env": "prod", "test-type": "e2e"}},
                "data": {data}}}"#
        )
    };
    decode(body(payload).as_bytes())
        .or_else(|_| decode(body(PAYLOAD).as_bytes()))
        .expect("the fixed payload decodes")
        .event
}
