//! Envelope decoding (`event::decode`), the first thing herald does with bytes a
//! producer sent. Any input: no panic. A decoded event's canonical JSON decodes again to
//! the same event, and is a fixed point: encoding that second decode gives the same bytes.
#![no_main]

use herald::event::{Event, decode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(decoded) = decode(data) else {
        return;
    };
    let event = decoded.event;
    let json = event.to_json();

    let again = decode(&json)
        .unwrap_or_else(|err| panic!("canonical JSON does not decode: {err}\n{}", show(&json)))
        .event;
    assert_eq!(again.id, event.id);
    assert_eq!(again.event_type, event.event_type);
    assert_eq!(again.source, event.source);
    assert_eq!(again.time, event.time);
    assert_eq!(again.labels, event.labels);
    assert_eq!(raw(&again), raw(&event));
    assert_eq!(again.to_json(), json, "canonical JSON is not a fixed point");

    // Delivery tasks carry the canonical JSON and read it back with `from_json`.
    let read = Event::from_json(&json)
        .unwrap_or_else(|err| panic!("from_json refuses to_json: {err}\n{}", show(&json)));
    assert_eq!(read.id, event.id);
    assert_eq!(read.event_type, event.event_type);
    assert_eq!(read.time_rfc3339(), event.time_rfc3339());
});

fn raw(event: &Event) -> Option<&str> {
    event.data.as_deref().map(|data| data.get())
}

fn show(json: &[u8]) -> String {
    String::from_utf8_lossy(json).into_owned()
}
