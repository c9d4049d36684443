//! A bounded queue of what is to be exported, and the task that sends it in batches over OTLP/HTTP.
//!
//! Nothing here knows what the items describe: a run's spans, or one export interval's data points.
//! [`Outbox::send`] never waits, so that a receiver that is down or slow never holds up polling or
//! scrapes. The queue is bounded in the signal's units (spans, data points); past the bound an
//! item is dropped whole, counted, and logged once. Batches that the receiver cannot take now
//! (429, 502, 503, 504, no answer) are sent again after a backoff, or after the Retry-After it
//! gave; batches it refuses are dropped and counted.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::client::{Answer, Client};
use crate::telemetry::{Signal, Telemetry};

/// Backoff after a failed export: doubling from the first to the last, with jitter.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(500), Duration::from_secs(10));
/// At shutdown the deadline, not the backoff, bounds the retries: they come this often at most.
const CLOSING_RETRY: Duration = Duration::from_millis(200);

/// What is queued: a unit of export that is never split, of some size in the signal's units.
pub trait Item: Send + 'static {
    fn size(&self) -> usize;
}

/// How a signal's items are batched and written.
pub struct Batching<T> {
    /// Items of this total size at most go in one request (one larger item goes alone).
    pub max: usize,
    /// How long a batch waits for more once the first item arrived.
    pub delay: Duration,
    /// The export request holding a batch.
    pub encode: fn(&[T]) -> Vec<u8>,
}

struct Queue<T> {
    items: VecDeque<T>,
    size: usize,
    /// Set by shutdown: send what is queued, then stop.
    closing: bool,
    /// Whether a full queue was logged since the queue last had room, so that it is logged once.
    full_logged: bool,
}

struct Shared<T> {
    queue: Mutex<Queue<T>>,
    arrived: Notify,
    capacity: usize,
    signal: Signal,
    telemetry: Arc<Telemetry>,
}

impl<T> Shared<T> {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue<T>> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Where items are handed for export. Cloning it is cheap.
pub struct Outbox<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Clone for Outbox<T> {
    fn clone(&self) -> Self {
        Outbox { shared: self.shared.clone() }
    }
}

impl<T> std::fmt::Debug for Outbox<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox").field("signal", &self.shared.signal).field("capacity", &self.shared.capacity).finish()
    }
}

/// The task delivering an outbox's items.
pub struct Delivery<T> {
    outbox: Outbox<T>,
    task: JoinHandle<()>,
}

impl<T: Item> Outbox<T> {
    /// Starts delivering to `client` what is sent to the outbox, which holds `capacity` at most.
    pub fn start(
        client: Client,
        capacity: usize,
        batching: Batching<T>,
        signal: Signal,
        telemetry: Arc<Telemetry>,
    ) -> Delivery<T> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue { items: VecDeque::new(), size: 0, closing: false, full_logged: false }),
            arrived: Notify::new(),
            capacity: capacity.max(1),
            signal,
            telemetry,
        });
        let task = tokio::spawn(deliver(shared.clone(), client, batching));
        Delivery { outbox: Outbox { shared }, task }
    }

    /// Queues one item, or drops it whole when the queue has no room for it.
    pub fn send(&self, item: T) {
        let size = item.size();
        if size == 0 {
            return;
        }
        let shared = &self.shared;
        let mut queue = shared.lock();
        if queue.size + size > shared.capacity {
            if !std::mem::replace(&mut queue.full_logged, true) {
                tracing::warn!(
                    signal = ?shared.signal,
                    queued = queue.size,
                    capacity = shared.capacity,
                    "the OTLP queue is full: what comes is dropped until the receiver takes some again"
                );
            }
            drop(queue);
            shared.telemetry.export_dropped(shared.signal, "queue_full", size as u64);
            return;
        }
        queue.size += size;
        queue.items.push_back(item);
        shared.telemetry.set_export_queue(shared.signal, queue.size);
        drop(queue);
        shared.arrived.notify_one();
    }
}

impl<T: Item> Delivery<T> {
    pub fn outbox(&self) -> Outbox<T> {
        self.outbox.clone()
    }

    /// Sends what is queued for at most `deadline`, then stops; what is left is counted as
    /// dropped at shutdown.
    pub async fn shutdown(mut self, deadline: Duration) {
        let shared = self.outbox.shared.clone();
        shared.lock().closing = true;
        shared.arrived.notify_one();
        if tokio::time::timeout(deadline, &mut self.task).await.is_err() {
            self.task.abort();
        }
        let mut queue = shared.lock();
        let left = std::mem::take(&mut queue.size);
        queue.items.clear();
        drop(queue);
        if left > 0 {
            tracing::warn!(signal = ?shared.signal, items = left, "not sent before the shutdown deadline");
            shared.telemetry.export_dropped(shared.signal, "shutdown", left as u64);
            shared.telemetry.set_export_queue(shared.signal, 0);
        }
    }
}

impl<T> Drop for Delivery<T> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Takes items from the front of the queue until a batch is full; an item is never split.
fn take_batch<T: Item>(queue: &mut Queue<T>, max: usize) -> (Vec<T>, usize) {
    let mut batch = Vec::new();
    let mut size = 0;
    while let Some(item) = queue.items.front() {
        if size > 0 && size + item.size() > max {
            break;
        }
        size += item.size();
        batch.extend(queue.items.pop_front());
    }
    (batch, size)
}

/// Sends batches for as long as the exporter runs, and until the queue is empty once it closes.
async fn deliver<T: Item>(shared: Arc<Shared<T>>, client: Client, batching: Batching<T>) {
    let mut backoff = BACKOFF.0;
    let (signal, telemetry) = (shared.signal, &shared.telemetry);
    loop {
        let (waiting, closing) = {
            let queue = shared.lock();
            (queue.size, queue.closing)
        };
        if waiting == 0 {
            if closing {
                return;
            }
            shared.arrived.notified().await;
            continue;
        }
        if waiting < batching.max && !closing {
            // Gather what arrives together into one request.
            let _ = tokio::time::timeout(batching.delay, shared.arrived.notified()).await;
        }
        let (batch, size) = take_batch(&mut shared.lock(), batching.max);
        let retry = match client.export((batching.encode)(&batch)).await {
            Answer::Accepted { rejected, message } => {
                let rejected = rejected.min(size as u64);
                telemetry.exported(signal, size as u64 - rejected);
                if rejected > 0 || !message.is_empty() {
                    tracing::warn!(?signal, rejected, message = %message, "the OTLP receiver rejected part of a batch");
                    telemetry.export_dropped(signal, "rejected", rejected);
                }
                backoff = BACKOFF.0;
                None
            }
            Answer::Refused { reason } => {
                tracing::warn!(?signal, reason = %reason, size, "the OTLP receiver refused a batch; it is dropped");
                telemetry.export_failed(signal, &reason);
                telemetry.export_dropped(signal, "refused", size as u64);
                None
            }
            Answer::Retry { after, reason } => {
                tracing::debug!(?signal, reason = %reason, size, "an OTLP export failed; it is retried");
                telemetry.export_failed(signal, &reason);
                Some(after.unwrap_or(backoff))
            }
        };
        let closing = {
            let mut queue = shared.lock();
            match retry {
                Some(_) => {
                    for item in batch.into_iter().rev() {
                        queue.items.push_front(item);
                    }
                }
                None => {
                    queue.size -= size;
                    if queue.size + batching.max <= shared.capacity {
                        queue.full_logged = false;
                    }
                }
            }
            telemetry.set_export_queue(signal, queue.size);
            queue.closing
        };
        if let Some(wait) = retry {
            backoff = (backoff * 2).min(BACKOFF.1);
            let wait = wait.mul_f64(rand::random_range(0.8..1.2));
            tokio::time::sleep(if closing { wait.min(CLOSING_RETRY) } else { wait }).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Sized(usize);

    impl Item for Sized {
        fn size(&self) -> usize {
            self.0
        }
    }

    #[test]
    fn a_batch_takes_whole_items_up_to_its_size() {
        let mut queue =
            Queue { items: [Sized(300), Sized(300), Sized(600)].into(), size: 1200, closing: false, full_logged: false };
        assert_eq!(take_batch(&mut queue, 512).1, 300);
        assert_eq!(take_batch(&mut queue, 512).1, 300);
        assert_eq!(take_batch(&mut queue, 512).1, 600, "an item larger than a batch goes alone");
        assert!(queue.items.is_empty());
    }
}
