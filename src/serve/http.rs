//! serve's HTTP listener: its own accept loop, with caps on open connections (in all and per
//! client address) enforced right after `accept`, timeouts for request heads, bodies and idle
//! keep-alive, and a backoff when `accept` itself fails (out of file descriptors).
//!
//! A connection over a cap is reset at once — no byte of it is read — and counted; the log says
//! so once per [`REFUSED_LOG_INTERVAL`], not once per connection, so a flood costs neither file
//! descriptors nor log volume. Each admitted connection is served by hyper's HTTP/1 machinery,
//! with its clock kept here: [`Phase`] says which timeout applies to it now.

use std::collections::HashMap;
use std::convert::Infallible;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker, ready};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::ConnectInfo;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::JoinSet;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;
use tower_service::Service;

use crate::config::values::Dur;
use crate::metrics::{LogThrottle, Metrics};
use crate::probe::LocalReason;

/// How often at most the log says that connections were refused, or that `accept` failed.
pub const REFUSED_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// The longest pause between two `accept` attempts after it failed for a local reason.
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// How long connections may finish what they are doing once serve is asked to stop.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The HTTP listener's limits (serve's `--max-connections`, `--header-timeout`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// From accept, or from the first byte after an idle spell, until the request head is complete.
    pub header_timeout: Duration,
    /// From the end of a request head until the end of its body.
    pub body_timeout: Duration,
    /// A kept-alive connection with no request in it.
    pub idle_timeout: Duration,
    /// Open connections in all.
    pub max_connections: usize,
    /// Open connections from one client address.
    pub max_connections_per_client: usize,
}

impl Default for HttpLimits {
    fn default() -> HttpLimits {
        HttpLimits {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_connections: 1024,
            max_connections_per_client: 128,
        }
    }
}

/// Which cap refused a connection: the words of `watchkeeper_http_connections_refused_total`'s
/// `limit` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cap {
    /// Open connections in all.
    Total,
    /// Open connections from the client's address.
    PerClient,
}

words!(Cap { Total => "total", PerClient => "per_client" });

/// The timeouts that close a connection: the words of `watchkeeper_http_timeouts_total`'s
/// `timeout` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timeout {
    Header,
    Body,
    Idle,
}

words!(Timeout { Header => "header", Body => "body", Idle => "idle" });

/// Connections the kernel queues until they are accepted (at most `net.core.somaxconn`). A
/// burst of connects (a flood, many agents at once) waits here instead of having its SYNs
/// dropped and retried a second later; std's listeners ask for 128.
const LISTEN_BACKLOG: u32 = 4096;

/// Listen on `address` (`HOST:PORT`; the first of its addresses that can be bound).
pub async fn bind(address: &str) -> io::Result<TcpListener> {
    let mut failed = None;
    for address in tokio::net::lookup_host(address).await? {
        let socket = if address.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
        socket.set_reuseaddr(true)?;
        match socket.bind(address).and_then(|()| socket.listen(LISTEN_BACKLOG)) {
            Ok(listener) => return Ok(listener),
            Err(e) => failed = Some(e),
        }
    }
    Err(failed.unwrap_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the address resolves to nothing")))
}

/// Accept connections on `listener` and serve `app` on them within `limits` until `cancel`; then
/// stop accepting, let open connections finish (for up to [`SHUTDOWN_GRACE`]) and return.
pub async fn serve(listener: TcpListener, app: Router, limits: HttpLimits, metrics: Arc<Metrics>, cancel: CancellationToken) {
    let admission = Arc::new(Admission::new(limits, Arc::clone(&metrics)));
    let refused_total = LogThrottle::new(REFUSED_LOG_INTERVAL);
    let refused_per_client = LogThrottle::new(REFUSED_LOG_INTERVAL);
    let accept_failed = LogThrottle::new(REFUSED_LOG_INTERVAL);
    let mut connections = JoinSet::new();
    let mut backoff = Duration::ZERO;
    loop {
        let accepted = tokio::select! {
            _ = cancel.cancelled() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => {
                backoff = Duration::ZERO;
                accepted
            }
            // The client gave up before we took its connection: nothing is wrong here.
            Err(e) if matches!(e.kind(), io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset) => continue,
            Err(e) => {
                // Out of file descriptors (or buffers, memory): the pending connection stays in
                // the backlog, so retrying at once would spin. Wait, longer each time.
                let reason = LocalReason::of(&e).map_or("other", LocalReason::as_str);
                metrics.http_accept_error(reason);
                if let Some(n) = accept_failed.hit() {
                    tracing::warn!(error = %e, failures = n, "cannot accept HTTP connections ({n} failures); retrying with a backoff");
                }
                backoff = (backoff * 2).clamp(Duration::from_millis(10), MAX_ACCEPT_BACKOFF);
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tokio::time::sleep(backoff) => continue,
                }
            }
        };
        match admission.admit(peer.ip()) {
            Ok(admitted) => {
                connections.spawn(connection(stream, peer, app.clone(), limits, admitted, cancel.clone()));
            }
            Err(cap) => {
                // A reset rather than a close: no FIN handshake, no TIME_WAIT left behind.
                let _ = stream.set_zero_linger();
                drop(stream);
                metrics.http_refused(cap.as_str());
                let throttle = match cap {
                    Cap::Total => &refused_total,
                    Cap::PerClient => &refused_per_client,
                };
                if let Some(n) = throttle.hit() {
                    let why = match cap {
                        Cap::Total => format!("{} connections were open, the most serve keeps", limits.max_connections),
                        Cap::PerClient => {
                            format!("their address had {} open connections, the most for one address", limits.max_connections_per_client)
                        }
                    };
                    tracing::warn!(refused = n, limit = cap.as_str(), client = %peer.ip(), "refused {n} connections: {why} (the last from {})", peer.ip());
                }
            }
        }
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
}

/// Open connections, in all and per client address.
struct Admission {
    limits: HttpLimits,
    metrics: Arc<Metrics>,
    open: Mutex<Open>,
}

#[derive(Default)]
struct Open {
    total: usize,
    per_client: HashMap<IpAddr, usize>,
    /// The most open at once since memory was last handed back (see [`release_freed_memory`]).
    peak: usize,
}

/// A spike of at least this many connections hands its memory back once it has mostly gone
/// (down to a quarter of its peak).
const TRIM_AFTER_PEAK: usize = 128;

impl Admission {
    fn new(limits: HttpLimits, metrics: Arc<Metrics>) -> Admission {
        Admission { limits, metrics, open: Mutex::new(Open::default()) }
    }

    /// Count a connection from `ip` in, or say which cap it is over.
    fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Admitted, Cap> {
        // An IPv4 client of a dual-stack listener is one address, however it is written.
        let ip = ip.to_canonical();
        let mut open = self.open.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if open.total >= self.limits.max_connections {
            return Err(Cap::Total);
        }
        let from_client = open.per_client.entry(ip).or_insert(0);
        if *from_client >= self.limits.max_connections_per_client {
            return Err(Cap::PerClient);
        }
        *from_client += 1;
        open.total += 1;
        open.peak = open.peak.max(open.total);
        self.metrics.set_http_connections(open.total);
        Ok(Admitted { admission: Arc::clone(self), ip })
    }
}

/// One admitted connection; counted out when dropped.
struct Admitted {
    admission: Arc<Admission>,
    ip: IpAddr,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut open = self.admission.open.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        open.total -= 1;
        if let Some(n) = open.per_client.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.per_client.remove(&self.ip);
            }
        }
        self.admission.metrics.set_http_connections(open.total);
        let spike_over = open.peak >= TRIM_AFTER_PEAK && open.total <= open.peak / 4;
        if spike_over {
            open.peak = open.total;
            drop(open);
            release_freed_memory();
        }
    }
}

/// Hand memory the allocator keeps but no longer uses back to the system. glibc keeps what
/// thousands of connections' buffers freed in its per-thread arenas: without this, serve stays
/// as large as it was at the height of a spike (300 MB after 20 000 connections, measured).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn release_freed_memory() {
    // It walks every arena: off the runtime's threads when there is a runtime.
    let trim = || {
        // SAFETY: malloc_trim only releases free memory; it has no preconditions.
        unsafe { libc::malloc_trim(0) };
    };
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => drop(runtime.spawn_blocking(trim)),
        Err(_) => trim(),
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn release_freed_memory() {}

/// Where a connection is between requests, which decides the timeout that applies.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Waiting for a request head, since this instant (accept, or the first byte after idling).
    Head(Instant),
    /// A request is being answered: its body has its own deadline, the handler none.
    Busy,
    /// Kept alive after a response, since this instant.
    Idle(Instant),
}

/// A connection's phase and the timeout that closed it, shared by its socket, its requests'
/// bodies and its responses'.
struct Cycle {
    phase: Phase,
    timed_out: Option<Timeout>,
    /// The connection's task, as the socket last saw it while busy: hyper does not read again on
    /// its own when a response ends, so the end wakes it to start the idle clock.
    reader: Option<Waker>,
}

type SharedCycle = Arc<Mutex<Cycle>>;

fn lock(cycle: &SharedCycle) -> std::sync::MutexGuard<'_, Cycle> {
    cycle.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn connection(stream: TcpStream, peer: SocketAddr, app: Router, limits: HttpLimits, admitted: Admitted, cancel: CancellationToken) {
    let cycle: SharedCycle = Arc::new(Mutex::new(Cycle { phase: Phase::Head(Instant::now()), timed_out: None, reader: None }));
    let io =
        TokioIo::new(Watched { stream, cycle: Arc::clone(&cycle), limits, sleep: Box::pin(tokio::time::sleep(limits.header_timeout)) });
    let requests = Arc::clone(&cycle);
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        lock(&requests).phase = Phase::Busy;
        request.extensions_mut().insert(ConnectInfo(peer));
        let (timeout, deadline) = (limits.body_timeout, Instant::now() + limits.body_timeout);
        let cycle = Arc::clone(&requests);
        let request = request.map(|body| Body::new(DeadlineBody { body, timeout, deadline, sleep: None, cycle: Arc::clone(&cycle) }));
        let answered = app.clone().call(request);
        async move {
            let response = answered.await.unwrap_or_else(|never: Infallible| match never {});
            Ok::<_, Infallible>(response.map(|body| Body::new(ResponseBody { body, cycle })))
        }
    });
    let connection = hyper::server::conn::http1::Builder::new().serve_connection(io, service);
    tokio::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => {}
        _ = cancel.cancelled() => {
            connection.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(SHUTDOWN_GRACE, connection).await;
        }
    }
    if let Some(timeout) = lock(&cycle).timed_out {
        admitted.admission.metrics.http_timeout(timeout.as_str());
    }
}

/// The socket of a connection: where the head and idle timeouts are kept, since hyper reads from
/// it exactly when it waits for a request head.
struct Watched {
    stream: TcpStream,
    cycle: SharedCycle,
    limits: HttpLimits,
    sleep: Pin<Box<Sleep>>,
}

impl AsyncRead for Watched {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let read = Pin::new(&mut this.stream).poll_read(cx, buf);
        let mut cycle = lock(&this.cycle);
        if read.is_ready() {
            if buf.filled().len() > before
                && let Phase::Idle(_) = cycle.phase
            {
                cycle.phase = Phase::Head(Instant::now());
            }
            return read;
        }
        let (deadline, timeout) = match cycle.phase {
            Phase::Head(since) => (since + this.limits.header_timeout, Timeout::Header),
            Phase::Idle(since) => (since + this.limits.idle_timeout, Timeout::Idle),
            Phase::Busy => {
                if !cycle.reader.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    cycle.reader = Some(cx.waker().clone());
                }
                return Poll::Pending;
            }
        };
        if this.sleep.deadline() != deadline {
            this.sleep.as_mut().reset(deadline);
        }
        if this.sleep.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        cycle.timed_out = Some(timeout);
        Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, format!("no complete request within the {timeout} timeout"))))
    }
}

impl AsyncWrite for Watched {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(mut self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// A request body that must arrive by `deadline`; after it, reading fails (the handler answers
/// 400 and the connection closes, as with any body that cannot be read).
struct DeadlineBody {
    body: Incoming,
    timeout: Duration,
    deadline: Instant,
    /// Made the first time the body is not ready: most bodies never need it.
    sleep: Option<Pin<Box<Sleep>>>,
    cycle: SharedCycle,
}

/// The error of a body that did not arrive in time.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {0} (the body timeout)")]
struct BodyTimedOut(Dur);

impl HttpBody for DeadlineBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.body).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        let deadline = this.deadline;
        let sleep = this.sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        ready!(sleep.as_mut().poll(cx));
        lock(&this.cycle).timed_out = Some(Timeout::Body);
        Poll::Ready(Some(Err(BodyTimedOut(Dur(this.timeout)).into())))
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A response body; once hyper is done with it, the connection idles until the next request.
struct ResponseBody {
    body: Body,
    cycle: SharedCycle,
}

impl HttpBody for ResponseBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        let mut cycle = lock(&self.cycle);
        if let Phase::Busy = cycle.phase {
            cycle.phase = Phase::Idle(Instant::now());
            if let Some(reader) = cycle.reader.take() {
                reader.wake();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admission(max_connections: usize, max_connections_per_client: usize) -> Arc<Admission> {
        let limits = HttpLimits { max_connections, max_connections_per_client, ..HttpLimits::default() };
        Arc::new(Admission::new(limits, Arc::new(Metrics::new())))
    }

    #[test]
    fn a_client_over_its_cap_is_refused_while_others_still_get_in_and_a_closed_connection_frees_its_place() {
        let admission = admission(10, 2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let first = admission.admit(a).unwrap();
        let _second = admission.admit(a).unwrap();
        assert_eq!(admission.admit(a).err(), Some(Cap::PerClient));
        let _other = admission.admit(b).unwrap();
        drop(first);
        let _again = admission.admit(a).unwrap();
        assert_eq!(admission.admit(a).err(), Some(Cap::PerClient));
    }

    #[test]
    fn the_total_cap_holds_across_addresses_and_an_ipv4_client_is_one_address_however_written() {
        let admission = admission(3, 2);
        let v4: IpAddr = "192.0.2.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        let _one = admission.admit(v4).unwrap();
        let _two = admission.admit(mapped).unwrap();
        assert_eq!(admission.admit(v4).err(), Some(Cap::PerClient));
        let three = admission.admit("192.0.2.9".parse().unwrap()).unwrap();
        assert_eq!(admission.admit("192.0.2.10".parse().unwrap()).err(), Some(Cap::Total));
        drop(three);
        assert!(
            !admission.open.lock().unwrap().per_client.contains_key(&"192.0.2.9".parse::<IpAddr>().unwrap()),
            "no entry is kept for a gone client"
        );
    }
}
