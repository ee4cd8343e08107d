//! One TCP port check: resolve the host, refuse addresses outside the approved networks, connect
//! within the timeout, close at once with a zero linger.

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::{Instant, timeout_at};

use crate::config::values::{Cidr, Dur};

/// Why a check failed, in the words the status API, `/metrics` and the store use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The host answered with a reset: nothing listens on the port.
    Refused,
    /// No answer within the monitor's timeout.
    Timeout,
    /// The operating system knows no route to the host or its network.
    Unreachable,
    /// The host name did not resolve (or resolving it did not finish within the timeout).
    Dns,
    /// Every address of the host lies outside the approved networks; nothing was sent.
    Unapproved,
    /// This machine ran out of something a connect needs; says nothing about the target. Not a
    /// failed check: the prober's own error, counted by reason and never toward an alert.
    Local(LocalReason),
    /// Anything else (a reset during the handshake, …).
    Other,
}

/// What the probing machine ran out of, named after its errno.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LocalReason {
    /// The process's open-files limit (EMFILE).
    Emfile,
    /// The system's open-files limit (ENFILE).
    Enfile,
    /// Socket buffer space (ENOBUFS).
    Enobufs,
    /// A local address or ephemeral port (EADDRNOTAVAIL).
    Eaddrnotavail,
    /// Kernel memory (ENOMEM).
    Enomem,
}

words!(LocalReason { Emfile => "emfile", Enfile => "enfile", Enobufs => "enobufs", Eaddrnotavail => "eaddrnotavail", Enomem => "enomem" });

impl LocalReason {
    /// The local reason behind a socket or connect error, if it is one.
    pub fn of(e: &io::Error) -> Option<LocalReason> {
        match e.kind() {
            io::ErrorKind::AddrNotAvailable => return Some(LocalReason::Eaddrnotavail),
            io::ErrorKind::OutOfMemory => return Some(LocalReason::Enomem),
            _ => {}
        }
        #[cfg(target_os = "linux")]
        return match e.raw_os_error()? {
            libc::EMFILE => Some(LocalReason::Emfile),
            libc::ENFILE => Some(LocalReason::Enfile),
            libc::ENOBUFS => Some(LocalReason::Enobufs),
            libc::EADDRNOTAVAIL => Some(LocalReason::Eaddrnotavail),
            libc::ENOMEM => Some(LocalReason::Enomem),
            _ => None,
        };
        #[cfg(not(target_os = "linux"))]
        None
    }
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Refused => "refused",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Unreachable => "unreachable",
            ErrorKind::Dns => "dns",
            ErrorKind::Unapproved => "unapproved",
            ErrorKind::Local(_) => "local",
            ErrorKind::Other => "other",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed check: a stable kind and a lowercase message for people ("connection refused").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ProbeError {
    pub kind: ErrorKind,
    pub message: String,
}

impl ProbeError {
    fn new(kind: ErrorKind, message: impl Into<String>) -> ProbeError {
        ProbeError { kind, message: message.into() }
    }
}

/// What one check of one port found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub ok: bool,
    /// From the start of the check (name resolution included) to the connection or the failure.
    pub latency: Duration,
    /// Set exactly when `ok` is false.
    pub error: Option<ProbeError>,
}

/// Check that `host:port` accepts a TCP connection within `timeout`.
///
/// `host` is an IP literal (IPv6 with or without brackets) or a DNS name. Addresses outside
/// `approved` are refused before anything is sent (an empty slice means no restriction); of
/// several approved addresses each is tried in turn until one connects, all within `timeout`.
/// A connection is closed as soon as it is made, with a zero linger (a reset, not a FIN), so
/// thousands of checks leave no TIME_WAIT sockets behind.
pub async fn check(host: &str, port: u16, timeout: Duration, approved: &[Cidr]) -> Outcome {
    let start = Instant::now();
    let result = connect(host, port, start + timeout, timeout, approved).await;
    let latency = start.elapsed();
    match result {
        Ok(()) => Outcome { ok: true, latency, error: None },
        Err(error) => Outcome { ok: false, latency, error: Some(error) },
    }
}

/// The addresses a check of `host:port` may connect to. An IP literal (IPv6 with or without
/// brackets) is taken as it is; a DNS name is resolved within `timeout`, and every address it
/// resolves to is checked. Addresses outside `approved` are left out (an empty slice means no
/// restriction); when none is left, the error is [`ErrorKind::Unapproved`] and nothing may be
/// sent. IPv4-mapped IPv6 addresses count as IPv4. The node_exporter scraper applies the same rule.
pub async fn approved_addrs(host: &str, port: u16, timeout: Duration, approved: &[Cidr]) -> Result<Vec<SocketAddr>, ProbeError> {
    let literal = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    if let Ok(ip) = literal.parse::<IpAddr>() {
        let ip = ip.to_canonical();
        if !is_approved(ip, approved) {
            return Err(ProbeError::new(ErrorKind::Unapproved, format!("{ip} is outside the approved networks")));
        }
        return Ok(vec![SocketAddr::new(ip, port)]);
    }

    let resolved: Vec<SocketAddr> = match tokio::time::timeout(timeout, tokio::net::lookup_host((host, port))).await {
        Ok(Ok(addrs)) => addrs.map(|a| SocketAddr::new(a.ip().to_canonical(), a.port())).collect(),
        Ok(Err(e)) => return Err(ProbeError::new(ErrorKind::Dns, format!("cannot resolve {host}: {}", lowercase_first(&e.to_string())))),
        Err(_) => return Err(ProbeError::new(ErrorKind::Dns, format!("resolving {host} timed out after {}", Dur(timeout)))),
    };
    if resolved.is_empty() {
        return Err(ProbeError::new(ErrorKind::Dns, format!("{host} has no addresses")));
    }
    let (allowed, refused): (Vec<SocketAddr>, Vec<SocketAddr>) = resolved.into_iter().partition(|a| is_approved(a.ip(), approved));
    if allowed.is_empty() {
        let list: Vec<String> = refused.iter().map(|a| a.ip().to_string()).collect();
        return Err(ProbeError::new(
            ErrorKind::Unapproved,
            format!("{host} resolves to {}, outside the approved networks", list.join(", ")),
        ));
    }
    Ok(allowed)
}

async fn connect(host: &str, port: u16, deadline: Instant, timeout: Duration, approved: &[Cidr]) -> Result<(), ProbeError> {
    let mut last = None;
    for addr in approved_addrs(host, port, timeout, approved).await? {
        match connect_addr(addr, deadline, timeout).await {
            Ok(()) => return Ok(()),
            Err(e) if e.kind == ErrorKind::Timeout => return Err(e), // the time is spent
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| ProbeError::new(ErrorKind::Other, "no address to connect to")))
}

async fn connect_addr(addr: SocketAddr, deadline: Instant, timeout: Duration) -> Result<(), ProbeError> {
    match timeout_at(deadline, TcpStream::connect(addr)).await {
        Ok(Ok(stream)) => {
            // Best effort: without it the close is an orderly FIN and the socket waits in TIME_WAIT.
            let _ = stream.set_zero_linger();
            drop(stream);
            Ok(())
        }
        Ok(Err(e)) => Err(classify(&e)),
        Err(_) => Err(ProbeError::new(ErrorKind::Timeout, format!("timed out after {}", Dur(timeout)))),
    }
}

fn is_approved(ip: IpAddr, approved: &[Cidr]) -> bool {
    approved.is_empty() || approved.iter().any(|net| net.contains(ip))
}

/// Map a connect error to its kind and the message the spec uses for it.
fn classify(e: &io::Error) -> ProbeError {
    let (kind, message) = match e.kind() {
        io::ErrorKind::ConnectionRefused => (ErrorKind::Refused, "connection refused".to_string()),
        io::ErrorKind::HostUnreachable => (ErrorKind::Unreachable, "no route to host".to_string()),
        io::ErrorKind::NetworkUnreachable => (ErrorKind::Unreachable, "network is unreachable".to_string()),
        io::ErrorKind::TimedOut => (ErrorKind::Timeout, "timed out (the operating system gave up)".to_string()),
        io::ErrorKind::ConnectionReset => (ErrorKind::Other, "connection reset during the handshake".to_string()),
        _ => match LocalReason::of(e) {
            Some(LocalReason::Eaddrnotavail) => {
                (ErrorKind::Local(LocalReason::Eaddrnotavail), "no local address or port available".to_string())
            }
            Some(reason) => (ErrorKind::Local(reason), lowercase_first(&e.to_string())),
            None => (ErrorKind::Other, lowercase_first(&e.to_string())),
        },
    };
    ProbeError { kind, message }
}

/// OS messages start with a capital ("Too many open files (os error 24)"); ours do not.
fn lowercase_first(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::net::Ipv4Addr;

    use tokio::net::{TcpListener, TcpSocket};

    const SECOND: Duration = Duration::from_secs(1);

    fn nets(list: &[&str]) -> Vec<Cidr> {
        list.iter().map(|s| Cidr::parse(s).unwrap()).collect()
    }

    /// A port on 127.0.0.1 that nothing listens on (bound once, then released).
    async fn closed_port() -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap().port()
    }

    #[test]
    fn error_kinds_have_their_api_names() {
        let all = [
            (ErrorKind::Refused, "refused"),
            (ErrorKind::Timeout, "timeout"),
            (ErrorKind::Unreachable, "unreachable"),
            (ErrorKind::Dns, "dns"),
            (ErrorKind::Unapproved, "unapproved"),
            (ErrorKind::Other, "other"),
        ];
        for (kind, name) in all {
            assert_eq!(kind.as_str(), name);
            assert_eq!(kind.to_string(), name);
        }
    }

    #[test]
    fn os_errors_map_to_kinds_and_messages() {
        let cases = [
            (io::ErrorKind::ConnectionRefused, ErrorKind::Refused, "connection refused"),
            (io::ErrorKind::HostUnreachable, ErrorKind::Unreachable, "no route to host"),
            (io::ErrorKind::NetworkUnreachable, ErrorKind::Unreachable, "network is unreachable"),
            (io::ErrorKind::TimedOut, ErrorKind::Timeout, "timed out (the operating system gave up)"),
        ];
        for (io_kind, kind, message) in cases {
            let e = classify(&io::Error::from(io_kind));
            assert_eq!((e.kind, e.message.as_str()), (kind, message));
        }
        let other = classify(&io::Error::other("Something odd"));
        assert_eq!((other.kind, other.message.as_str()), (ErrorKind::Other, "something odd"));
    }

    #[test]
    fn running_out_of_local_resources_is_a_local_error_not_the_targets() {
        let cases = [
            (libc::EMFILE, LocalReason::Emfile, "too many open files"),
            (libc::ENFILE, LocalReason::Enfile, "too many open files in system"),
            (libc::ENOBUFS, LocalReason::Enobufs, "no buffer space available"),
            (libc::EADDRNOTAVAIL, LocalReason::Eaddrnotavail, "no local address or port available"),
            (libc::ENOMEM, LocalReason::Enomem, "cannot allocate memory"),
        ];
        for (errno, reason, message) in cases {
            let e = classify(&io::Error::from_raw_os_error(errno));
            assert_eq!(e.kind, ErrorKind::Local(reason), "errno {errno}");
            assert_eq!(e.kind.as_str(), "local");
            assert!(e.message.starts_with(message), "errno {errno}: {}", e.message);
        }
        assert_eq!(LocalReason::of(&io::Error::from(io::ErrorKind::ConnectionRefused)), None);
    }

    #[tokio::test]
    async fn open_port_is_ok_with_a_latency() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let outcome = check("127.0.0.1", port, 5 * SECOND, &[]).await;
        assert!(outcome.ok, "{outcome:?}");
        assert_eq!(outcome.error, None);
        assert!(outcome.latency > Duration::ZERO && outcome.latency < 5 * SECOND, "{outcome:?}");
        // The connection really reached the listener.
        let accepted = tokio::time::timeout(SECOND, listener.accept()).await;
        assert!(matches!(accepted, Ok(Ok(_))), "the listener saw no connection");
    }

    #[tokio::test]
    async fn zero_linger_close_resets_instead_of_lingering() {
        use tokio::io::AsyncReadExt;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        assert!(check("127.0.0.1", port, 5 * SECOND, &[]).await.ok);
        let (mut peer, _) = listener.accept().await.unwrap();
        // An orderly close would read as end-of-file; a zero-linger close is a reset.
        let mut buf = [0u8; 1];
        let read = tokio::time::timeout(SECOND, peer.read(&mut buf)).await.expect("the probe closed the connection");
        assert_eq!(read.map_err(|e| e.kind()), Err(io::ErrorKind::ConnectionReset));
    }

    #[tokio::test]
    async fn closed_port_is_refused() {
        let port = closed_port().await;
        let outcome = check("127.0.0.1", port, 5 * SECOND, &[]).await;
        assert!(!outcome.ok);
        let error = outcome.error.unwrap();
        assert_eq!(error.kind, ErrorKind::Refused);
        assert_eq!(error.message, "connection refused");
    }

    /// A listener with a backlog of 0 whose accept queue is filled and never drained: the
    /// kernel drops further SYNs, so the next connect hangs until the caller's timeout.
    #[tokio::test]
    async fn full_accept_queue_times_out() {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind((Ipv4Addr::LOCALHOST, 0).into()).unwrap();
        let listener = socket.listen(0).unwrap();
        let addr = listener.local_addr().unwrap();
        let mut fillers = Vec::new();
        let mut hangs = false;
        for _ in 0..16 {
            match tokio::time::timeout(Duration::from_millis(200), TcpStream::connect(addr)).await {
                Ok(Ok(stream)) => fillers.push(stream),
                Ok(Err(e)) => panic!("filling the accept queue failed: {e}"),
                Err(_) => {
                    hangs = true;
                    break;
                }
            }
        }
        assert!(hangs, "connects to a full accept queue kept succeeding");
        let outcome = check("127.0.0.1", addr.port(), Duration::from_millis(300), &[]).await;
        let error = outcome.error.clone().unwrap();
        assert_eq!(error.kind, ErrorKind::Timeout, "{outcome:?}");
        assert_eq!(error.message, "timed out after 300ms");
        assert!(outcome.latency >= Duration::from_millis(300) && outcome.latency < 3 * SECOND, "{outcome:?}");
        drop(fillers);
    }

    #[tokio::test]
    async fn unresolvable_name_is_a_dns_error() {
        // `.invalid` never resolves (RFC 6761); a resolver that hangs is cut off by the timeout.
        let outcome = check("watchkeeper-probe-test.invalid", 80, 5 * SECOND, &[]).await;
        let error = outcome.error.unwrap();
        assert_eq!(error.kind, ErrorKind::Dns, "{error:?}");
        assert!(error.message.contains("watchkeeper-probe-test.invalid"), "{}", error.message);
    }

    #[tokio::test]
    async fn localhost_name_resolves_and_connects() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        // `localhost` may resolve to ::1 first; that refusal falls through to 127.0.0.1.
        let outcome = check("localhost", port, 5 * SECOND, &nets(&["127.0.0.0/8"])).await;
        assert!(outcome.ok, "{outcome:?}");
    }

    #[tokio::test]
    async fn unapproved_address_is_refused_without_connecting() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let outcome = check("127.0.0.1", port, 5 * SECOND, &nets(&["10.0.0.0/8", "203.0.113.0/24"])).await;
        let error = outcome.error.unwrap();
        assert_eq!(error.kind, ErrorKind::Unapproved);
        assert_eq!(error.message, "127.0.0.1 is outside the approved networks");
        // A connect would have completed the handshake and be waiting in the accept queue.
        let accepted = tokio::time::timeout(Duration::from_millis(200), listener.accept()).await;
        assert!(accepted.is_err(), "the listener saw a connection: {accepted:?}");

        let named = check("localhost", port, 5 * SECOND, &nets(&["10.0.0.0/8"])).await.error.unwrap();
        assert_eq!(named.kind, ErrorKind::Unapproved);
        assert!(named.message.starts_with("localhost resolves to ") && named.message.contains("127.0.0.1"), "{}", named.message);
        assert!(tokio::time::timeout(Duration::from_millis(200), listener.accept()).await.is_err());

        // Inside an approved range the same check connects; IPv4-mapped IPv6 counts as IPv4.
        assert!(check("127.0.0.1", port, 5 * SECOND, &nets(&["127.0.0.0/8"])).await.ok);
        assert!(check("::ffff:127.0.0.1", port, 5 * SECOND, &nets(&["127.0.0.0/8"])).await.ok);
    }
}
