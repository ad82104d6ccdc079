//! Fault-injecting HTTP receivers for behaviours axum will not produce: a
//! hang, a trickled body, a reset in the middle of the headers, an immediate
//! close, a huge or gzip-bomb body, bare statuses with chosen headers (429/503
//! with Retry-After, 410, redirects) and a keep-alive peer that silently drops
//! idle connections.
//!
//! Written on raw TCP with just enough HTTP/1.1: a request is its head up to
//! `\r\n\r\n` and a `Content-Length` body (no chunked requests; herald sends a
//! length). Each connection runs in its own task and, for the behaviours that
//! answer normally, serves requests in a keep-alive loop. Each request gets the
//! behaviour current when it has been read. Dropping the server closes everything.

use std::{
    fmt::Write as _,
    net::SocketAddr,
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::http::StatusCode;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    task::{JoinHandle, JoinSet},
};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// Read the request, never answer, keep the socket open until the peer leaves.
    Hang,
    /// `status` and headers declaring a 1,000,000-byte body, then one byte per `interval`.
    Trickle { status: u16, interval: Duration },
    /// Write `HTTP/1.1 200 OK\r\nContent-`, then reset (RST).
    ResetMidHeaders,
    /// Accept and close before reading anything (the kernel may send an RST
    /// if the request has already arrived).
    CloseImmediately,
    /// 200 with a `Content-Length: bytes` body of zeros, written as fast as the peer reads.
    HugeBody { bytes: u64 },
    /// 200 with `content-encoding: gzip` and a ~1 MiB gzip body that inflates
    /// to 1 GiB of zeros. A receiver's body must be taken as bytes: herald must
    /// not decode it (its reqwest has no gzip feature).
    GzipBomb,
    /// `status` with these headers and an empty body (429/503 with Retry-After,
    /// 410, 301/302/307/308 with Location...).
    Status {
        status: u16,
        headers: Vec<(String, String)>,
    },
    /// 200 with `connection: keep-alive`, then the connection is closed without
    /// notice once it has been idle for `idle`: a stale keep-alive peer.
    KeepAlive { idle: Duration },
}

impl Behaviour {
    /// A `Status` from string slices.
    pub fn status(status: u16, headers: &[(&str, &str)]) -> Self {
        Self::Status {
            status,
            headers: headers
                .iter()
                .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
                .collect(),
        }
    }
}

struct Shared {
    behaviour: Mutex<Behaviour>,
    /// (`herald-attempt`, `webhook-id`) of each request read.
    seen: Mutex<Vec<(String, String)>>,
    connections: AtomicUsize,
}

impl Shared {
    fn behaviour(&self) -> Behaviour {
        self.behaviour.lock().unwrap().clone()
    }
}

pub struct FaultServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
}

impl FaultServer {
    /// Listens on 127.0.0.1:0 and treats every request with `behaviour`.
    pub async fn start(behaviour: Behaviour) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            behaviour: Mutex::new(behaviour),
            seen: Mutex::new(Vec::new()),
            connections: AtomicUsize::new(0),
        });
        let accept = tokio::spawn(accept_loop(listener, shared.clone()));
        Self {
            addr,
            shared,
            accept,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Switches the behaviour for the requests read from now on.
    pub fn set(&self, behaviour: Behaviour) {
        *self.shared.behaviour.lock().unwrap() = behaviour;
    }

    /// Requests read in full (head and body), whatever the answer.
    pub fn requests(&self) -> usize {
        self.shared.seen.lock().unwrap().len()
    }

    /// (`herald-attempt`, `webhook-id`) of each request read, in order; "" when absent.
    pub fn attempts(&self) -> Vec<(String, String)> {
        self.shared.seen.lock().unwrap().clone()
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }
}

impl Drop for FaultServer {
    fn drop(&mut self) {
        // The accept task owns the connection tasks: aborting it aborts them all.
        self.accept.abort();
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    shared.connections.fetch_add(1, Ordering::SeqCst);
                    connections.spawn(serve(stream, shared.clone()));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
            Some(_) = connections.join_next() => {}
        }
    }
}

async fn serve(mut stream: TcpStream, shared: Arc<Shared>) {
    if shared.behaviour() == Behaviour::CloseImmediately {
        return;
    }
    let mut buffer = Vec::new();
    // Set after a `KeepAlive` answer: how long the connection may idle.
    let mut idle = None;
    loop {
        let request = read_request(&mut stream, &mut buffer);
        let headers = match idle {
            None => request.await,
            Some(idle) => tokio::time::timeout(idle, request).await.ok().flatten(),
        };
        let Some(headers) = headers else { return };
        let header = |name: &str| {
            let found = headers.iter().find(|(n, _)| n == name);
            found.map(|(_, v)| v.clone()).unwrap_or_default()
        };
        let seen = (header("herald-attempt"), header("webhook-id"));
        shared.seen.lock().unwrap().push(seen);

        idle = None;
        let answered = match shared.behaviour() {
            Behaviour::Hang => return hold(stream).await,
            Behaviour::CloseImmediately => return,
            Behaviour::ResetMidHeaders => {
                let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-").await;
                let _ = stream.set_zero_linger();
                return;
            }
            Behaviour::Trickle { status, interval } => {
                return trickle(stream, status, interval).await;
            }
            Behaviour::HugeBody { bytes } => huge_body(&mut stream, bytes).await,
            Behaviour::GzipBomb => {
                let bomb = gzip_bomb();
                let length = bomb.len().to_string();
                let head = head(
                    200,
                    &[
                        ("content-type", "application/json"),
                        ("content-encoding", "gzip"),
                        ("content-length", &length),
                    ],
                );
                write(&mut stream, &[&head, bomb]).await
            }
            Behaviour::Status { status, headers } => {
                let mut all: Vec<(&str, &str)> = headers
                    .iter()
                    .map(|(n, v)| (n.as_str(), v.as_str()))
                    .collect();
                let bodyless = status < 200 || status == 204 || status == 304;
                if !bodyless
                    && !headers
                        .iter()
                        .any(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                {
                    all.push(("content-length", "0"));
                }
                write(&mut stream, &[&head(status, &all)]).await
            }
            Behaviour::KeepAlive { idle: after } => {
                idle = Some(after);
                let head = head(
                    200,
                    &[("connection", "keep-alive"), ("content-length", "0")],
                );
                write(&mut stream, &[&head]).await
            }
        };
        if !answered {
            return;
        }
    }
}

/// Reads one request off `stream` (bytes beyond it stay in `buffer`); its
/// headers with lowercase names, or None when the peer is gone or the head is
/// not HTTP enough.
async fn read_request(
    stream: &mut TcpStream,
    buffer: &mut Vec<u8>,
) -> Option<Vec<(String, String)>> {
    const MAX_HEAD: usize = 64 * 1024;
    let head_end = loop {
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        if buffer.len() > MAX_HEAD || !fill(stream, buffer).await {
            return None;
        }
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]);
    let headers: Vec<(String, String)> = head
        .split("\r\n")
        .skip(1)
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let length = match headers.iter().find(|(name, _)| name == "content-length") {
        Some((_, value)) => value.parse::<usize>().ok()?,
        None => 0,
    };
    while buffer.len() < head_end + length {
        if !fill(stream, buffer).await {
            return None;
        }
    }
    buffer.drain(..head_end + length);
    Some(headers)
}

/// Reads more into `buffer`; false at EOF or an error.
async fn fill(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> bool {
    buffer.reserve(16 * 1024);
    matches!(stream.read_buf(buffer).await, Ok(n) if n > 0)
}

/// A response head: status line, headers, blank line.
fn head(status: u16, headers: &[(&str, &str)]) -> Vec<u8> {
    let reason = StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Whatever");
    let mut head = format!("HTTP/1.1 {status} {reason}\r\n");
    for (name, value) in headers {
        let _ = write!(head, "{name}: {value}\r\n");
    }
    head.push_str("\r\n");
    head.into_bytes()
}

/// Writes `parts` in order; false when the peer is gone.
async fn write(stream: &mut TcpStream, parts: &[&[u8]]) -> bool {
    for part in parts {
        if stream.write_all(part).await.is_err() {
            return false;
        }
    }
    true
}

/// Keeps the connection open, answering nothing, until the peer closes it.
async fn hold(mut stream: TcpStream) {
    let mut sink = [0; 4096];
    while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
}

async fn trickle(mut stream: TcpStream, status: u16, interval: Duration) {
    let head = head(
        status,
        &[
            ("content-type", "text/plain"),
            ("content-length", "1000000"),
        ],
    );
    if !write(&mut stream, &[&head]).await {
        return;
    }
    for _ in 0..1_000_000 {
        tokio::time::sleep(interval).await;
        if !write(&mut stream, &[b"."]).await {
            return;
        }
    }
}

async fn huge_body(stream: &mut TcpStream, bytes: u64) -> bool {
    let length = bytes.to_string();
    let head = head(
        200,
        &[
            ("content-type", "application/octet-stream"),
            ("content-length", &length),
        ],
    );
    if !write(stream, &[&head]).await {
        return false;
    }
    let zeros = [0; 64 * 1024];
    let mut left = bytes;
    while left > 0 {
        let n = usize::try_from(left).map_or(zeros.len(), |left| left.min(zeros.len()));
        if !write(stream, &[&zeros[..n]]).await {
            return false;
        }
        left -= n as u64;
    }
    true
}

/// What the gzip bomb inflates to: 1 GiB of zeros.
const BOMB_INFLATED: usize = 1 << 30;
/// CRC-32 of `BOMB_INFLATED` zero bytes (zlib.crc32 of them).
const BOMB_CRC: u32 = 0x5b64_c2b0;

/// A gzip member holding one dynamic-Huffman DEFLATE block: the literal 0,
/// then "copy 258 bytes from distance 1" (2 bits each) until `BOMB_INFLATED`.
fn gzip_bomb() -> &'static [u8] {
    static BOMB: OnceLock<Vec<u8>> = OnceLock::new();
    BOMB.get_or_init(|| {
        let mut bits = Bits::default();
        bits.push(1, 1); // BFINAL
        bits.push(2, 2); // BTYPE = dynamic Huffman
        bits.push(286 - 257, 5); // HLIT: literal/length codes 0..=285
        bits.push(0, 5); // HDIST: one distance code
        bits.push(18 - 4, 4); // HCLEN: code length codes up to symbol 1 in the order below
        // Code length code lengths, in the order 16 17 18 0 8 7 9 6 10 5 11 4 12 3 13 2 14 1:
        // 18 -> "0", 1 -> "10", 2 -> "11".
        for length in [0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 2] {
            bits.push(length, 3);
        }
        // Literal/length code lengths: 0 -> 2, 1..=255 -> 0, 256 -> 2, 257..=284 -> 0,
        // 285 -> 1; then the distance code 0 -> 1.
        bits.code(0b11, 2); // 2
        bits.code(0b0, 1); // 18: 138 zeros
        bits.push(138 - 11, 7);
        bits.code(0b0, 1); // 18: 117 zeros
        bits.push(117 - 11, 7);
        bits.code(0b11, 2); // 2
        bits.code(0b0, 1); // 18: 28 zeros
        bits.push(28 - 11, 7);
        bits.code(0b10, 2); // 1
        bits.code(0b10, 2); // 1
        // Canonical codes: 285 -> "0", literal 0 -> "10", end of block -> "11"; distance 0 -> "0".
        bits.code(0b10, 2);
        let repeats = (BOMB_INFLATED - 1) / 258;
        bits.zeros(2 * repeats);
        for _ in 0..(BOMB_INFLATED - 1) % 258 {
            bits.code(0b10, 2);
        }
        bits.code(0b11, 2);

        let mut gzip = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
        gzip.extend_from_slice(&bits.bytes);
        gzip.extend_from_slice(&BOMB_CRC.to_le_bytes());
        gzip.extend_from_slice(&(BOMB_INFLATED as u32).to_le_bytes());
        gzip
    })
}

/// DEFLATE's bit order: values least significant bit first, Huffman codes most significant first.
#[derive(Default)]
struct Bits {
    bytes: Vec<u8>,
    len: usize,
}

impl Bits {
    fn push(&mut self, value: u32, count: usize) {
        for i in 0..count {
            if self.bytes.len() == self.len / 8 {
                self.bytes.push(0);
            }
            if value >> i & 1 == 1 {
                self.bytes[self.len / 8] |= 1 << (self.len % 8);
            }
            self.len += 1;
        }
    }

    fn code(&mut self, code: u32, count: usize) {
        for i in (0..count).rev() {
            self.push(code >> i & 1, 1);
        }
    }

    fn zeros(&mut self, count: usize) {
        self.len += count;
        self.bytes.resize(self.len.div_ceil(8), 0);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use reqwest::{Client, StatusCode as Status, redirect::Policy};

    use super::*;

    fn client() -> Client {
        crate::support::init();
        Client::builder().redirect(Policy::none()).build().unwrap()
    }

    async fn post(
        client: &Client,
        server: &FaultServer,
        attempt: u32,
    ) -> reqwest::Result<reqwest::Response> {
        client
            .post(server.url())
            .header("herald-attempt", attempt.to_string())
            .header("webhook-id", "msg_1")
            .body(r#"{"hello":"world"}"#)
            .send()
            .await
    }

    #[tokio::test]
    async fn status_answers_with_its_headers_and_keeps_the_connection() {
        let client = client();
        let server = FaultServer::start(Behaviour::status(503, &[("retry-after", "7")])).await;
        let response = post(&client, &server, 1).await.unwrap();
        assert_eq!(response.status(), Status::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()["retry-after"], "7");
        assert!(response.bytes().await.unwrap().is_empty());

        server.set(Behaviour::status(
            308,
            &[("location", "http://127.0.0.1:1/elsewhere")],
        ));
        let response = post(&client, &server, 2).await.unwrap();
        assert_eq!(response.status(), Status::PERMANENT_REDIRECT);
        assert_eq!(
            response.headers()["location"],
            "http://127.0.0.1:1/elsewhere"
        );
        response.bytes().await.unwrap();

        let seen = [
            ("1".to_owned(), "msg_1".to_owned()),
            ("2".to_owned(), "msg_1".to_owned()),
        ];
        assert_eq!(server.attempts(), seen);
        assert_eq!(server.requests(), 2);
        assert_eq!(server.connections(), 1, "one keep-alive connection");
    }

    #[tokio::test]
    async fn hang_reads_the_request_and_never_answers() {
        let server = FaultServer::start(Behaviour::Hang).await;
        let started = Instant::now();
        let request = client()
            .post(server.url())
            .body("x")
            .timeout(Duration::from_millis(300));
        let err = request.send().await.unwrap_err();
        assert!(err.is_timeout(), "{err:?}");
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert_eq!(server.requests(), 1);

        // On a raw socket: no answer, no close.
        let mut raw = TcpStream::connect(server.addr()).await.unwrap();
        raw.write_all(b"POST /hook HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{}")
            .await
            .unwrap();
        let mut byte = [0; 1];
        let read = tokio::time::timeout(Duration::from_millis(300), raw.read(&mut byte)).await;
        assert!(read.is_err(), "the socket stays open and silent: {read:?}");
        assert_eq!(server.requests(), 2);
    }

    #[tokio::test]
    async fn huge_body_streams_all_its_bytes() {
        let bytes = 16 * 1024 * 1024;
        let server = FaultServer::start(Behaviour::HugeBody { bytes }).await;
        let mut response = post(&client(), &server, 1).await.unwrap();
        assert_eq!(response.content_length(), Some(bytes));
        let mut total = 0;
        while let Some(chunk) = response.chunk().await.unwrap() {
            assert!(chunk.iter().all(|b| *b == 0));
            total += chunk.len() as u64;
        }
        assert_eq!(total, bytes);
    }

    #[tokio::test]
    async fn reset_mid_headers_and_close_immediately_fail_the_request() {
        let client = client();
        let server = FaultServer::start(Behaviour::ResetMidHeaders).await;
        let err = post(&client, &server, 1).await.unwrap_err();
        assert!(!err.is_timeout(), "{err:?}");
        assert_eq!(
            server.requests(),
            1,
            "the request was read before the reset"
        );

        server.set(Behaviour::CloseImmediately);
        let err = post(&client, &server, 2).await.unwrap_err();
        assert!(!err.is_timeout(), "{err:?}");
        assert_eq!(server.requests(), 1, "nothing read before the close");
        assert!(server.connections() >= 2);
    }

    #[tokio::test]
    async fn trickle_sends_the_head_then_a_byte_per_interval() {
        let interval = Duration::from_millis(50);
        let server = FaultServer::start(Behaviour::Trickle {
            status: 200,
            interval,
        })
        .await;
        let mut response = post(&client(), &server, 1).await.unwrap();
        assert_eq!(response.status(), Status::OK);
        assert_eq!(response.content_length(), Some(1_000_000));
        let mut got = 0;
        let _ = tokio::time::timeout(Duration::from_millis(500), async {
            while let Some(chunk) = response.chunk().await.unwrap() {
                got += chunk.len();
            }
        })
        .await;
        assert!((1..=11).contains(&got), "{got} bytes in 500ms");
    }

    #[tokio::test]
    async fn gzip_bomb_is_a_small_gzip_body() {
        let server = FaultServer::start(Behaviour::GzipBomb).await;
        let response = post(&client(), &server, 1).await.unwrap();
        assert_eq!(response.headers()["content-encoding"], "gzip");
        let body = response.bytes().await.unwrap();
        assert_eq!(body[..3], [0x1f, 0x8b, 8]);
        assert!(body.len() < 2 * 1024 * 1024, "{} bytes", body.len());
        assert_eq!(body[body.len() - 4..], (BOMB_INFLATED as u32).to_le_bytes());
    }

    #[tokio::test]
    async fn keep_alive_drops_the_idle_connection_silently() {
        let client = client();
        let idle = Duration::from_millis(200);
        let server = FaultServer::start(Behaviour::KeepAlive { idle }).await;
        for attempt in 1..=2 {
            let response = post(&client, &server, attempt).await.unwrap();
            assert_eq!(response.status(), Status::OK);
            assert_eq!(response.headers()["connection"], "keep-alive");
        }
        assert_eq!(server.connections(), 1);
        tokio::time::sleep(idle * 3).await;
        let response = post(&client, &server, 3).await.unwrap();
        assert_eq!(response.status(), Status::OK);
        assert_eq!(server.connections(), 2, "the idle connection was closed");
    }
}
