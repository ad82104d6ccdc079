//! A real HTTP receiver for tests: an axum server on 127.0.0.1:0 that answers
//! from a script of replies (then 200) and records every request it gets.

use std::{
    collections::VecDeque,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    Router,
    body::Bytes,
    http::{HeaderMap, HeaderValue, Method, StatusCode, Uri},
    response::{IntoResponse, Response},
};
use tokio::sync::mpsc;

/// One scripted answer.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub delay: Duration,
}

impl Reply {
    pub fn ok() -> Self {
        Self::status(200)
    }
    pub fn status(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            delay: Duration::ZERO,
        }
    }
    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.headers.push(("retry-after", seconds.to_string()));
        self
    }
    pub fn header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.push((name, value.to_owned()));
        self
    }
    pub fn after(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

#[derive(Clone, Debug)]
pub struct Recorded {
    /// The status this receiver answered with.
    pub status: u16,
    pub method: Method,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub received_at: Instant,
    /// Wall-clock arrival, for latency against a send time carried in the event.
    pub received_unix: std::time::SystemTime,
}

impl Recorded {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("the body is JSON")
    }
    /// Verifies the Standard Webhooks signature with the reference crate, not herald's code.
    pub fn verify(&self, secret: &str) -> bool {
        standardwebhooks::Webhook::new(secret)
            .expect("a whsec_ secret")
            .verify(&self.body, &self.headers)
            .is_ok()
    }
}

struct State {
    in_flight: std::sync::atomic::AtomicUsize,
    max_in_flight: std::sync::atomic::AtomicUsize,
    script: Mutex<VecDeque<Reply>>,
    fallback: Mutex<Reply>,
    log: Mutex<Vec<Recorded>>,
    tx: mpsc::UnboundedSender<Recorded>,
}

pub struct Receiver {
    addr: SocketAddr,
    state: Arc<State>,
    rx: tokio::sync::Mutex<mpsc::UnboundedReceiver<Recorded>>,
    server: tokio::task::JoinHandle<()>,
}

impl Receiver {
    /// Answers `script` in order, then 200 to everything.
    pub async fn start(script: impl IntoIterator<Item = Reply>) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let state = Arc::new(State {
            in_flight: Default::default(),
            max_in_flight: Default::default(),
            script: Mutex::new(script.into_iter().collect()),
            fallback: Mutex::new(Reply::ok()),
            log: Mutex::new(Vec::new()),
            tx,
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let handler_state = state.clone();
        let app = Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let state = handler_state.clone();
                async move { answer(&state, method, uri, headers, body).await }
            },
        );
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            addr,
            state,
            rx: tokio::sync::Mutex::new(rx),
            server,
        }
    }

    /// Answers every request with `reply`, after any script.
    pub fn always(&self, reply: Reply) {
        *self.state.fallback.lock().unwrap() = reply;
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// The next request, or a panic naming the wait.
    pub async fn next_request(&self, within: Duration) -> Recorded {
        let mut rx = self.rx.lock().await;
        tokio::time::timeout(within, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no request reached {} within {within:?}", self.url()))
            .expect("the receiver lives as long as the test")
    }

    /// The next requests carry these `herald-attempt` numbers, in order.
    pub async fn expect_attempts(&self, attempts: &[u32]) {
        for attempt in attempts {
            let request = self.next_request(Duration::from_secs(10)).await;
            assert_eq!(request.header("herald-attempt"), attempt.to_string());
        }
    }

    /// Waits `window` and asserts nothing arrived meanwhile.
    pub async fn assert_quiet(&self, window: Duration) {
        let mut rx = self.rx.lock().await;
        if let Ok(Some(r)) = tokio::time::timeout(window, rx.recv()).await {
            panic!(
                "expected no request within {window:?}, got {} {} attempt {}",
                r.header("herald-event-type"),
                r.header("webhook-id"),
                r.header("herald-attempt")
            );
        }
    }

    /// The most requests this receiver held at once.
    pub fn max_in_flight(&self) -> usize {
        self.state
            .max_in_flight
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The requests answered so far (`next_request` sees them on arrival).
    pub fn requests(&self) -> Vec<Recorded> {
        self.state.log.lock().unwrap().clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn answer(
    state: &State,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let _guard = InFlight::enter(state);
    let reply = state.script.lock().unwrap().pop_front();
    let reply = reply.unwrap_or_else(|| state.fallback.lock().unwrap().clone());
    let recorded = Recorded {
        status: reply.status,
        method,
        path: uri.path().to_owned(),
        headers,
        body,
        received_at: Instant::now(),
        received_unix: std::time::SystemTime::now(),
    };
    let _ = state.tx.send(recorded.clone());
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    // Logged once answered: a request herald gave up on (the handler is
    // dropped with the connection) never counts as delivered.
    state.log.lock().unwrap().push(recorded);
    let mut response = StatusCode::from_u16(reply.status).unwrap().into_response();
    for (name, value) in reply.headers {
        response
            .headers_mut()
            .insert(name, HeaderValue::from_str(&value).unwrap());
    }
    response
}

/// Counts a request as held from arrival until answered or dropped.
struct InFlight<'a>(&'a State);

impl<'a> InFlight<'a> {
    fn enter(state: &'a State) -> Self {
        use std::sync::atomic::Ordering::Relaxed;
        let now = state.in_flight.fetch_add(1, Relaxed) + 1;
        state.max_in_flight.fetch_max(now, Relaxed);
        Self(state)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0
            .in_flight
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}
