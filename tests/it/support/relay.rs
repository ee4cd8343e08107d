//! A TCP relay on 127.0.0.1 in front of another local port, which a test can cut: every relayed
//! connection is closed and new ones are refused (nothing listens on the port) until it is
//! restored on the same port. It puts one process's path to a server (a replica's to
//! PostgreSQL) out of reach while every other process keeps its own.

use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Handle;
use tokio::task::JoinHandle;

pub struct Relay {
    /// The port clients connect to.
    pub port: u16,
    target: u16,
    runtime: Handle,
    /// The accept loop (absent while cut) and every relayed connection's task.
    accept: Option<JoinHandle<()>>,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Relay {
    /// Relay 127.0.0.1:`port` (a free port) to 127.0.0.1:`target`, on `runtime`'s tasks.
    pub fn start(runtime: &Handle, port: u16, target: u16) -> Relay {
        let mut relay = Relay { port, target, runtime: runtime.clone(), accept: None, conns: Arc::default() };
        relay.restore();
        relay
    }

    /// Close every relayed connection and stop listening: connections are refused.
    pub fn cut(&mut self) {
        if let Some(accept) = self.accept.take() {
            accept.abort();
        }
        for conn in self.conns.lock().unwrap().drain(..) {
            conn.abort(); // drops both sockets: each side sees its connection closed
        }
        // Wait until the listener is gone, so a connect right after this is refused.
        let port = self.port;
        self.runtime.block_on(async move {
            while TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        });
    }

    /// Listen again on the same port and relay new connections.
    pub fn restore(&mut self) {
        let (port, target, conns) = (self.port, self.target, Arc::clone(&self.conns));
        let listener = self.runtime.block_on(TcpListener::bind(("127.0.0.1", port))).expect("bind the relay's port");
        let runtime = self.runtime.clone();
        self.accept = Some(self.runtime.spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let conn = runtime.spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(("127.0.0.1", target)).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                let mut conns = conns.lock().unwrap();
                conns.retain(|c| !c.is_finished());
                conns.push(conn);
            }
        }));
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if let Some(accept) = self.accept.take() {
            accept.abort();
        }
        self.conns.lock().unwrap().drain(..).for_each(|c| c.abort());
    }
}
