//! Real servers and programs for the integration tests: an SMTP server (aiosmtpd, writing a
//! Maildir; plain or TLS with AUTH), a private CA for TLS (openssl), a recording HTTP server
//! (axum) that can fail on purpose or serve a page, Debian's node_exporter, the serve binary and
//! a stand-in collector, and a TCP relay a test can cut. No mocks.

// Not every test module uses every helper.
#![allow(dead_code)]

pub mod agent;
pub mod browser;
pub mod collector;
pub mod exporter;
pub mod http;
pub mod relay;
pub mod serve;
pub mod smtp;
pub mod tls;

use std::net::TcpListener;
use std::process::Child;
use std::sync::Once;
use std::sync::atomic::{AtomicU32, Ordering};

/// Install rustls' ring provider, as serve does at startup; reqwest panics without one.
pub fn install_crypto() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// A port on 127.0.0.1 that nothing listens on right now, and that no other caller in this test
/// process is handed while the suite runs.
///
/// Ports come from below the kernel's ephemeral range, one after another from a point chosen by the
/// process id: a port the kernel picks for `bind(0)` or for an outgoing connection (thousands of
/// them in the flood tests) could be taken by another test between the moment this returns and the
/// moment a child process (serve, aiosmtpd, chromedriver) binds it.
pub fn free_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let (first, end) = test_port_range();
    let span = end - first;
    let start = std::process::id().wrapping_mul(7919) % span;
    for _ in 0..span {
        let port = (first + (start + NEXT.fetch_add(1, Ordering::Relaxed)) % span) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port on 127.0.0.1 between {first} and {end}");
}

/// The ports [`free_port`] hands out: from 10 000 up to the start of the kernel's ephemeral range
/// (or above its end when it starts low).
fn test_port_range() -> (u32, u32) {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap_or_default();
    let mut bounds = range.split_whitespace().map(|n| n.parse::<u32>().ok());
    let (low, high) = (bounds.next().flatten().unwrap_or(32768), bounds.next().flatten().unwrap_or(60999));
    match (low, high) {
        (low, _) if low >= 12_000 => (10_000, low),
        (_, high) if high <= 63_000 => (high + 1, 65_536),
        // The whole range is ephemeral: the old Linux default's lower half, as good as any.
        _ => (10_000, 32_768),
    }
}

/// Ask a child process to stop, as an operator or systemd would: SIGTERM.
pub fn sigterm(child: &Child) {
    // SAFETY: kill(2) on our own child, which is not reaped yet.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
}
