//! A TCP fault proxy for chaos tests: it sits between herald and RabbitMQ,
//! Redis or an HTTP receiver and, switched at runtime, passes bytes, delays
//! them, stalls (a hung peer), blackholes (a partition: no RST, no FIN),
//! resets connections after N bytes or refuses new ones.
//!
//! `FaultProxy::start(upstream)` listens on 127.0.0.1:0; point herald at
//! `proxy.addr()` instead of the service. `set` applies to live and new
//! connections alike. A stall reads nothing, so bytes wait in the kernel's
//! buffers (the senders feel backpressure) and going back to `Pass` delivers
//! them: a stall never loses data. Dropping the proxy closes everything.

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{
        TcpListener, TcpStream,
        tcp::{ReadHalf, WriteHalf},
    },
    sync::watch,
    task::{JoinHandle, JoinSet},
};
use tokio_util::sync::CancellationToken;

/// What the proxy does to the bytes, for every connection from the moment it is set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Forward everything as it comes.
    Pass,
    /// Forward, holding each chunk back this long first.
    Latency(Duration),
    /// Forward nothing either way and keep the sockets open: a hung peer.
    Stall,
    /// `Stall`, and new connections are accepted but not dialled upstream until
    /// the mode changes (a healed partition then connects them).
    Blackhole,
    /// Each connection forwards this many more bytes (both directions together),
    /// then is reset (RST both ways). It counts from when the mode is set.
    ResetAfter(usize),
    /// New connections are reset at once; setting it resets the live ones.
    Refuse,
}

impl Mode {
    fn holds(self) -> bool {
        matches!(self, Mode::Stall | Mode::Blackhole)
    }
}

/// The mode and a serial number, so every `set` starts fresh `ResetAfter` budgets.
#[derive(Clone, Copy)]
struct Setting {
    mode: Mode,
    serial: u64,
}

struct Shared {
    upstream: SocketAddr,
    setting: watch::Sender<Setting>,
    /// Cancelled and replaced by `reset_all`; each connection holds a child of
    /// the one current when it was accepted.
    epoch: Mutex<CancellationToken>,
    live: AtomicUsize,
}

pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
}

impl FaultProxy {
    /// Listens on 127.0.0.1:0 and forwards every connection to `upstream`, in `Mode::Pass`.
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            upstream,
            setting: watch::Sender::new(Setting {
                mode: Mode::Pass,
                serial: 0,
            }),
            epoch: Mutex::new(CancellationToken::new()),
            live: AtomicUsize::new(0),
        });
        let accept = tokio::spawn(accept_loop(listener, shared.clone()));
        Self {
            addr,
            shared,
            accept,
        }
    }

    /// Where herald should connect instead of the upstream.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn set(&self, mode: Mode) {
        self.shared.setting.send_modify(|setting| {
            setting.mode = mode;
            setting.serial += 1;
        });
        if mode == Mode::Refuse {
            self.reset_all();
        }
    }

    pub fn mode(&self) -> Mode {
        self.shared.setting.borrow().mode
    }

    /// Resets (RST) every live connection, both sides, now.
    pub fn reset_all(&self) {
        let mut epoch = self.shared.epoch.lock().unwrap();
        epoch.cancel();
        *epoch = CancellationToken::new();
    }

    /// Connections accepted and not yet closed (blackholed ones included).
    pub fn connections(&self) -> usize {
        self.shared.live.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
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
                Ok((client, _)) => {
                    connections.spawn(serve(client, shared.clone()));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
            Some(_) = connections.join_next() => {}
        }
    }
}

/// Counts a connection as live for as long as its task runs.
struct Live(Arc<Shared>);

impl Drop for Live {
    fn drop(&mut self) {
        self.0.live.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The connection ended with a reset (by the mode, `reset_all` or an I/O error).
struct Reset;

async fn serve(mut client: TcpStream, shared: Arc<Shared>) {
    shared.live.fetch_add(1, Ordering::SeqCst);
    let _live = Live(shared.clone());
    let kill = shared.epoch.lock().unwrap().child_token();
    let mut setting = shared.setting.subscribe();

    // A partition: the client is connected (to us), nothing goes upstream until it heals.
    let healed = tokio::select! {
        setting = setting.wait_for(|s| s.mode != Mode::Blackhole) => setting.map(|s| s.mode),
        () = kill.cancelled() => return reset(client),
    };
    if !matches!(healed, Ok(mode) if mode != Mode::Refuse) {
        return reset(client);
    }
    let Ok(mut server) = TcpStream::connect(shared.upstream).await else {
        return reset(client);
    };

    let budget = Budget::default();
    let forwarded = {
        let (mut client_read, mut client_write) = client.split();
        let (mut server_read, mut server_write) = server.split();
        let up = pump(
            &mut client_read,
            &mut server_write,
            setting.clone(),
            &budget,
        );
        let down = pump(&mut server_read, &mut client_write, setting, &budget);
        tokio::select! {
            () = kill.cancelled() => Err(Reset),
            both = async { tokio::try_join!(up, down) } => both.map(|_| ()),
        }
    };
    if forwarded.is_err() {
        reset(client);
        reset(server);
    }
}

/// Drops `stream` with an RST instead of a FIN.
fn reset(stream: TcpStream) {
    let _ = stream.set_zero_linger();
}

/// Copies `from` to `to` as the mode allows; Ok at a clean EOF (passed on as a FIN).
async fn pump(
    from: &mut ReadHalf<'_>,
    to: &mut WriteHalf<'_>,
    mut setting: watch::Receiver<Setting>,
    budget: &Budget,
) -> Result<(), Reset> {
    let mut buf = vec![0; 16 * 1024];
    loop {
        // While stalled, read nothing: bytes wait in the kernel buffers.
        settled(&mut setting).await;
        let n = tokio::select! {
            read = from.read(&mut buf) => read.map_err(|_| Reset)?,
            _ = setting.changed() => continue,
        };
        if n == 0 {
            return to.shutdown().await.map_err(|_| Reset);
        }
        let mode = setting.borrow().mode;
        if let Mode::Latency(delay) = mode {
            tokio::time::sleep(delay).await;
        }
        // A chunk read just before a stall waits it out, then goes on.
        let current = settled(&mut setting).await;
        let (allowed, exhausted) = match current.mode {
            Mode::ResetAfter(limit) => budget.take(current.serial, limit, n),
            Mode::Refuse => return Err(Reset),
            _ => (n, false),
        };
        to.write_all(&buf[..allowed]).await.map_err(|_| Reset)?;
        if exhausted {
            return Err(Reset);
        }
    }
}

/// Waits out `Stall` and `Blackhole`; the setting that ended the wait.
async fn settled(setting: &mut watch::Receiver<Setting>) -> Setting {
    *setting
        .wait_for(|s| !s.mode.holds())
        .await
        .expect("the proxy's state outlives its connections")
}

/// A connection's `ResetAfter` allowance: (the setting's serial, bytes left).
#[derive(Default)]
struct Budget(Mutex<Option<(u64, usize)>>);

impl Budget {
    /// How many of `n` bytes may pass, and whether the connection is reset after them.
    fn take(&self, serial: u64, limit: usize, n: usize) -> (usize, bool) {
        let mut state = self.0.lock().unwrap();
        let left = match *state {
            Some((seen, left)) if seen == serial => left,
            _ => limit,
        };
        let allowed = n.min(left);
        *state = Some((serial, left - allowed));
        (allowed, allowed == left)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use tokio::time::timeout;

    use super::*;

    /// An echo server: what it reads, it writes back.
    async fn echo() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut read, mut write) = stream.split();
                    let _ = tokio::io::copy(&mut read, &mut write).await;
                });
            }
        });
        addr
    }

    async fn exchange(stream: &mut TcpStream, message: &[u8]) -> Vec<u8> {
        stream.write_all(message).await.unwrap();
        let mut back = vec![0; message.len()];
        timeout(Duration::from_secs(5), stream.read_exact(&mut back))
            .await
            .expect("the echo comes back")
            .unwrap();
        back
    }

    /// Reads until EOF or a reset; the bytes read. Panics if the stream stays open.
    async fn closed(stream: &mut TcpStream) -> usize {
        let mut total = 0;
        let mut buf = [0; 4096];
        loop {
            match timeout(Duration::from_secs(5), stream.read(&mut buf)).await {
                Err(_) => panic!("the stream is still open after {total} bytes"),
                Ok(Ok(0) | Err(_)) => return total,
                Ok(Ok(n)) => total += n,
            }
        }
    }

    async fn wait_connections(proxy: &FaultProxy, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while proxy.connections() != n {
            assert!(
                Instant::now() < deadline,
                "{} connections, not {n}",
                proxy.connections()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn pass_forwards_both_ways_and_latency_delays() {
        let proxy = FaultProxy::start(echo().await).await;
        let mut client = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(exchange(&mut client, b"hello").await, b"hello");
        assert_eq!(proxy.connections(), 1);

        proxy.set(Mode::Latency(Duration::from_millis(150)));
        let started = Instant::now();
        assert_eq!(exchange(&mut client, b"slow").await, b"slow");
        assert!(
            started.elapsed() >= Duration::from_millis(300),
            "a delay each way"
        );

        drop(client);
        wait_connections(&proxy, 0).await;
    }

    #[tokio::test]
    async fn stall_holds_bytes_then_delivers_them_intact() {
        let proxy = FaultProxy::start(echo().await).await;
        let client = TcpStream::connect(proxy.addr()).await.unwrap();
        let (mut read, mut write) = client.into_split();
        proxy.set(Mode::Stall);
        let sent: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
        let payload = sent.clone();
        let writer = tokio::spawn(async move { write.write_all(&payload).await.map(|()| write) });

        let mut first = [0; 1];
        let stalled = timeout(Duration::from_millis(300), read.read_exact(&mut first)).await;
        assert!(stalled.is_err(), "nothing passes a stall");
        assert_eq!(proxy.connections(), 1, "the connection stays open");

        proxy.set(Mode::Pass);
        let mut got = vec![0; sent.len()];
        timeout(Duration::from_secs(10), read.read_exact(&mut got))
            .await
            .expect("the held bytes arrive")
            .unwrap();
        assert!(got == sent, "the bytes come back intact, in order");
        let _write = writer.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn blackhole_never_dials_upstream_until_it_heals() {
        let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy = FaultProxy::start(upstream.local_addr().unwrap()).await;
        proxy.set(Mode::Blackhole);
        let mut client = TcpStream::connect(proxy.addr()).await.unwrap();
        client.write_all(b"knock").await.unwrap();
        assert!(
            timeout(Duration::from_millis(300), upstream.accept())
                .await
                .is_err()
        );
        assert_eq!(proxy.connections(), 1);

        proxy.set(Mode::Pass);
        let (mut server, _) = timeout(Duration::from_secs(5), upstream.accept())
            .await
            .unwrap()
            .unwrap();
        let mut got = [0; 5];
        server.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"knock");
    }

    #[tokio::test]
    async fn reset_after_passes_exactly_n_bytes_then_resets() {
        let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy = FaultProxy::start(upstream.local_addr().unwrap()).await;
        let mut client = TcpStream::connect(proxy.addr()).await.unwrap();
        let (mut server, _) = upstream.accept().await.unwrap();
        proxy.set(Mode::ResetAfter(10));
        client.write_all(&[7; 100]).await.unwrap();

        assert_eq!(
            closed(&mut server).await,
            10,
            "upstream gets 10 bytes, then the end"
        );
        assert_eq!(
            closed(&mut client).await,
            0,
            "the client gets a reset, not an answer"
        );
        wait_connections(&proxy, 0).await;
    }

    #[tokio::test]
    async fn refuse_resets_live_and_new_connections_until_pass() {
        let proxy = FaultProxy::start(echo().await).await;
        let mut live = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(exchange(&mut live, b"hi").await, b"hi");

        proxy.set(Mode::Refuse);
        assert_eq!(closed(&mut live).await, 0);
        // The kernel completes the handshake; the proxy resets it at once.
        if let Ok(mut refused) = TcpStream::connect(proxy.addr()).await {
            let _ = refused.write_all(b"anyone?").await;
            assert_eq!(closed(&mut refused).await, 0);
        }
        wait_connections(&proxy, 0).await;

        proxy.set(Mode::Pass);
        let mut again = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(exchange(&mut again, b"back").await, b"back");
    }

    #[tokio::test]
    async fn reset_all_resets_every_live_connection() {
        let proxy = FaultProxy::start(echo().await).await;
        let mut a = TcpStream::connect(proxy.addr()).await.unwrap();
        let mut b = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(exchange(&mut a, b"a").await, b"a");
        assert_eq!(exchange(&mut b, b"b").await, b"b");
        assert_eq!(proxy.mode(), Mode::Pass);

        proxy.reset_all();
        assert_eq!(closed(&mut a).await, 0);
        assert_eq!(closed(&mut b).await, 0);
        wait_connections(&proxy, 0).await;
        let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(exchange(&mut c, b"c").await, b"c");
    }
}
