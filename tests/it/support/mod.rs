//! Real servers and programs for the integration tests: an SMTP server (aiosmtpd, writing a
//! Maildir; plain or TLS with AUTH), a private CA for TLS (openssl), a recording HTTP server
//! (axum) that can fail on purpose or serve a page, Debian's node_exporter, the serve binary and
//! a stand-in collector. No mocks.

// Not every test module uses every helper.
#![allow(dead_code)]

pub mod agent;
pub mod browser;
pub mod collector;
pub mod exporter;
pub mod http;
pub mod serve;
pub mod smtp;
pub mod tls;

use std::net::TcpListener;
use std::process::Child;
use std::sync::Once;

/// Install rustls' ring provider, as serve does at startup; reqwest panics without one.
pub fn install_crypto() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// A port on 127.0.0.1 that nothing listens on right now.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}

/// Ask a child process to stop, as an operator or systemd would: SIGTERM.
pub fn sigterm(child: &Child) {
    // SAFETY: kill(2) on our own child, which is not reaped yet.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
}
