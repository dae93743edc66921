//! Operators watching: HTTP clients reloading the console and scraping
//! `/metrics` in a loop while the runner drains a backlog, against the
//! runner's real endpoints (`runner::http::serve`). What they cost the
//! pipeline shows as the drain time and the pool's waits, beside a quiet run.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// Requests answered while the clients ran.
pub struct Load {
    pub requests: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Starts `clients` loops against `addr`, half on `/`, half on `/metrics`.
pub fn start(addr: std::net::SocketAddr, clients: usize) -> Load {
    let (requests, stop) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicBool::new(false)));
    let tasks = (0..clients)
        .map(|i| {
            let (requests, stop) = (requests.clone(), stop.clone());
            let path = if i % 2 == 0 { "/" } else { "/metrics" };
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    if get(addr, path).await.is_ok() {
                        requests.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    Load { requests, stop, tasks }
}

impl Load {
    /// Stops the clients; returns how many requests they made.
    pub async fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            let _ = task.await;
        }
        self.requests.load(Ordering::Relaxed)
    }
}

async fn get(addr: std::net::SocketAddr, path: &str) -> std::io::Result<()> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes()).await?;
    let mut sink = Vec::new();
    stream.read_to_end(&mut sink).await?;
    Ok(())
}
