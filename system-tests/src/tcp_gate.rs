//! [`TcpGate`]: a TCP forwarder to take a server down and bring it back.

use std::sync::{Arc, Mutex};

/// A TCP forwarder that can be closed and reopened on the same port: to a client, the server
/// behind it goes down (connections reset, new ones refused) and comes back.
#[derive(Debug)]
pub struct TcpGate {
    /// The port clients connect to.
    pub port: u16,
    target: std::net::SocketAddr,
    tasks: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl TcpGate {
    /// A closed gate to `target` on a free port.
    pub fn new(target: std::net::SocketAddr) -> Self {
        Self {
            port: test_utils::free_port(),
            target,
            tasks: Arc::default(),
        }
    }

    /// Starts accepting and forwarding.
    pub async fn open(&self) {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.port))
            .await
            .unwrap();
        let (target, tasks) = (self.target, self.tasks.clone());
        let accept = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    break;
                };
                let handle = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                tasks.lock().unwrap().push(handle);
            }
        });
        self.tasks.lock().unwrap().push(accept);
    }

    /// Stops accepting and cuts every forwarded connection.
    pub fn close(&self) {
        for task in self.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
    }
}
