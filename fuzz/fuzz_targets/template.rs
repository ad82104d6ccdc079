//! Subscription templates (`subscriptions::template`): MiniJinja source a user saves through the
//! API, rendered on every delivery. The input is the template, used as the body and as a
//! header value, rendered against a fixed sample event. Compiling never panics; rendering
//! always finishes (fuel; libFuzzer's `-timeout` flags a render that does not), a body
//! stays within `MAX_BODY_BYTES`, a header within `MAX_LINE_BYTES`, output never outgrows
//! memory (`-rss_limit_mb`), and no error message carries a credential's value.
#![no_main]

use std::sync::{Arc, LazyLock};

use herald::subscriptions::credentials::Credentials;
use herald::subscriptions::template::{
    Context, MAX_BODY_BYTES, MAX_LINE_BYTES, RenderError, Templates, is_template,
};
use herald::event::{Event, decode};
use herald::subscriptions::model::Subscription;
use libfuzzer_sys::fuzz_target;

/// What `credential('TOKEN')` resolves to; it must never show up in an error.
const SECRET: &str = "hunter2-fuzz-credential-value";
const HEADER: &str = "x-fuzz";

struct Fixture {
    subscription: Subscription,
    event: Event,
    credentials: Arc<Credentials>,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    // A file credential (a mounted Secret): the fuzz process sets no environment variables.
    let dir = std::env::temp_dir().join("herald-fuzz-credentials");
    std::fs::create_dir_all(&dir).expect("temp dir is writable");
    std::fs::write(dir.join("TOKEN"), format!("{SECRET}\n")).expect("temp dir is writable");

    let subscription = Subscription::from_json(
        &serde_json::json!({
            "name": "fuzz",
            "description": "the fuzz target's subscription",
            "url": "https://hooks.example.com/fuzz",
            "events": ["*"],
            "format": "template",
            "template": "{{ event | tojson }}",
        }),
        None,
    )
    .expect("the sample subscription is valid");
    let event = decode(
        br#"{"id":"evt-1","type":"deployment.failed","source":"ci","time":"2026-01-02T03:04:05Z",
            "labels":{"env":"prod","team":"platform"},
            "data":{"service":"api","replicas":[1,2,3],"message":"it \"broke\"","nested":{"ok":false,"n":null}}}"#,
    )
    .expect("the sample event is valid")
    .event;
    Fixture {
        subscription,
        event,
        credentials: Arc::new(Credentials::new(dir)),
    }
});

fuzz_target!(|data: &[u8]| {
    let Ok(source) = std::str::from_utf8(data) else {
        return;
    };
    let fixture = &*FIXTURE;
    let mut subscription = fixture.subscription.clone();
    subscription.template = Some(source.to_owned());
    subscription
        .headers
        .insert(HEADER.to_owned(), source.to_owned());

    let compiled = Templates::compile(&subscription, Some(Arc::clone(&fixture.credentials)));
    let Ok(Some(templates)) = compiled else {
        return;
    };
    let ctx = Context::new(&subscription, &fixture.event, 3);

    let body = templates.body(&ctx);
    match &body {
        Ok(text) => assert!(text.len() <= MAX_BODY_BYTES, "body of {} bytes", text.len()),
        Err(err) => no_secret_in(err, source),
    }

    let header = templates.header(HEADER, &ctx);
    match &header {
        Ok(Some(text)) => assert!(
            text.len() <= MAX_LINE_BYTES,
            "header of {} bytes",
            text.len()
        ),
        Ok(None) => assert!(!is_template(source), "a templated header was not rendered"),
        Err(err) => no_secret_in(err, source),
    }
});

fn no_secret_in(err: &RenderError, source: &str) {
    if source.contains(SECRET) {
        return;
    }
    let message = err.to_string();
    assert!(
        !message.contains(SECRET),
        "a render error shows the credential: {message}"
    );
}
