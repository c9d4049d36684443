//! Reload requests: how `/-/reload` and SIGHUP reach the task that owns the scheduler.
//!
//! A module of its own so that the HTTP server, which sends requests, and the exporter, which
//! serves them, both depend on it rather than on each other.

use tokio::sync::{mpsc, oneshot};

/// A request to re-read the configuration, and where to send the outcome.
pub type ReloadRequest = oneshot::Sender<Result<(), String>>;

/// Asks the running exporter to re-read its configuration file.
#[derive(Clone)]
pub struct Reloader(mpsc::Sender<ReloadRequest>);

impl Reloader {
    /// A reloader and the queue its requests arrive on, holding at most `capacity`.
    pub fn channel(capacity: usize) -> (Reloader, mpsc::Receiver<ReloadRequest>) {
        let (requests, queue) = mpsc::channel(capacity);
        (Reloader(requests), queue)
    }

    /// Re-reads the configuration and applies it; on error the running configuration stays.
    pub async fn reload(&self) -> Result<(), String> {
        let (reply, outcome) = oneshot::channel();
        self.0.send(reply).await.map_err(|_| "the exporter is shutting down".to_string())?;
        outcome.await.map_err(|_| "the exporter is shutting down".to_string())?
    }
}
