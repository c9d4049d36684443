//! The server's connection slots, and which connection gives up its slot when they run out.
//!
//! The limit is there for memory: each open connection holds buffers and a task. It must not
//! decide who is served, though. A slot held by a connection that is not in the middle of a
//! request (its request headers or TLS handshake are still incomplete, or it waits between
//! keep-alive requests) is worth nothing to anyone, so when every slot is taken, an idle connection
//! is closed and the new one takes its place, instead of the new one waiting in the kernel's
//! backlog until a timeout frees a slot. Only when every slot is answering a request does a new
//! connection wait.
//!
//! Which idle connection: first the keep-alive connection that has waited longest for its next
//! request, since it loses nothing (HTTP clients, Prometheus's among them, send an idempotent
//! request again on a new connection when an idle one was closed); only when there is none, the
//! connection that has waited longest for its first request to complete, and only while the
//! server waits on that client, past a grace counted from its acceptance and from the server's
//! last handshake message. A scraper's new connection completes its handshake and request within
//! milliseconds of the server's replies, and no time the server itself takes (a busy machine's TLS
//! handshakes) counts against it, so a flood of idle, slow or stalled connections, however fast it
//! reconnects, cannot close it before it is answered.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;

use crate::telemetry::Telemetry;

/// File descriptors left for everything but HTTP connections: the AWS clients' connection pools,
/// the listener, logs and procfs reads.
const RESERVED_FDS: u64 = 256;
/// The most connections served at once by default, whatever the file-descriptor limit: an idle
/// keep-alive connection holds about 16 KiB, 24 KiB with TLS (`cargo bench --bench connections`),
/// so this bounds them to about 25 MiB.
const DEFAULT_MAX: usize = 1024;
/// The fewest connections served at once by default, even under a tight file-descriptor limit.
const DEFAULT_MIN: usize = 64;

/// How long a new connection has to send its first request before it may be closed to make
/// room, so that under a flood of new connections one that is about to send its request is not
/// closed by the next arrivals: they wait in the backlog for a moment instead. A scraper's
/// handshake and request take a few milliseconds, tens under a flood of TLS handshakes. The
/// grace is short because while every open connection is within it, arrivals queue: `limit`
/// slots turn over at most `limit / GRACE` times a second, 320 times for the 64 of the tests.
const GRACE: Duration = Duration::from_millis(200);

/// The default connection limit: the file-descriptor limit less a reserve, within
/// [`DEFAULT_MIN`]..=[`DEFAULT_MAX`].
pub fn default_limit(open_files: Option<u64>) -> usize {
    let available = open_files.map_or(DEFAULT_MAX as u64, |limit| limit.saturating_sub(RESERVED_FDS));
    (available as usize).clamp(DEFAULT_MIN, DEFAULT_MAX)
}

/// The connections open now, by an ID of the server's own.
pub struct Slots {
    limit: usize,
    open: Mutex<Open>,
    /// Woken when a slot frees, for an accept waiting on a full house of busy connections.
    freed: Notify,
    telemetry: Arc<Telemetry>,
}

#[derive(Default)]
struct Open {
    next_id: u64,
    connections: HashMap<u64, Connection>,
}

struct Connection {
    /// Since when the connection has not been in the middle of a request: when it was accepted,
    /// or when its last response was sent. `None` while it answers a request.
    idle_since: Option<Instant>,
    /// When the first bytes of its next request arrived, while they are not a complete request.
    receiving_since: Option<Instant>,
    /// Whether it has been answered at least once: a keep-alive connection, rather than one
    /// whose first request (or TLS handshake) is not complete yet.
    answered: bool,
    /// Whether the server last asked the socket for bytes and found none: the connection waits on
    /// its client. Until then the next move is the server's (it has not read the connection yet,
    /// or is working through what it read, such as a TLS ClientHello), and however long that
    /// takes on a busy machine is no fault of the client's.
    waiting_on_client: bool,
    /// When the server last sent bytes: a TLS client answers the server's handshake messages,
    /// so its wait runs from them.
    last_write: Option<Instant>,
    close: Arc<Notify>,
}

/// How long a connection may take over what, before the server closes it.
#[derive(Debug, Clone, Copy)]
pub struct Deadlines {
    /// To send a complete request: from being accepted (handshake included) for the first
    /// request, from its first byte for the next ones.
    pub header: Duration,
    /// To start its next request, for a keep-alive connection.
    pub idle: Duration,
}

impl Connection {
    /// Why the connection is past a deadline at `now`, if it is.
    fn expired(&self, now: Instant, deadlines: Deadlines) -> Option<&'static str> {
        let since = |at: Instant| now.saturating_duration_since(at);
        let idle_since = self.idle_since?;
        match (self.answered, self.receiving_since) {
            (false, _) if since(idle_since) > deadlines.header => Some("header_timeout"),
            (true, Some(receiving)) if since(receiving) > deadlines.header => Some("header_timeout"),
            (true, None) if since(idle_since) > deadlines.idle => Some("idle"),
            _ => None,
        }
    }
}

/// One connection's slot, released when dropped.
pub struct Slot {
    slots: Arc<Slots>,
    id: u64,
    /// Notified when the server closes the connection to make room, or for idling too long.
    pub close: Arc<Notify>,
}

impl Slots {
    pub fn new(limit: usize, telemetry: Arc<Telemetry>) -> Arc<Slots> {
        telemetry.record_http_connections(0, limit);
        Arc::new(Slots { limit, open: Mutex::default(), freed: Notify::new(), telemetry })
    }

    /// A slot for a connection just accepted: a free one, or the slot of an idle connection,
    /// which is closed: the keep-alive connection idle longest, else the connection that has
    /// waited longest, at least [`GRACE`], for its first request. `None` when there is none; the
    /// caller tries again when a slot frees or a connection becomes idle.
    pub fn take(self: &Arc<Self>) -> Option<Slot> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if open.connections.len() >= self.limit {
            let now = Instant::now();
            // A connection that has not been answered yet gives way only while it waits on its
            // client, and only once its client has had GRACE since the connection was accepted
            // and since the server last wrote to it: a scraper whose TLS handshake waits for the
            // server's CPU keeps its slot, a client that stalls or dribbles does not.
            let waited_enough = |c: &Connection| {
                c.waiting_on_client
                    && c.idle_since.is_some_and(|since| {
                        let from = c.last_write.map_or(since, |written| written.max(since));
                        now.saturating_duration_since(from) >= GRACE
                    })
            };
            let oldest = open
                .connections
                .iter()
                .filter(|(_, c)| c.answered || waited_enough(c))
                .filter_map(|(id, c)| c.idle_since.map(|since| (!c.answered, since, *id)))
                .min()
                .map(|(_, _, id)| id)?;
            if let Some(evicted) = open.connections.remove(&oldest) {
                evicted.close.notify_one();
                self.telemetry.record_http_eviction("limit");
            }
        }
        open.next_id += 1;
        let id = open.next_id;
        let close = Arc::new(Notify::new());
        let connection = Connection {
            idle_since: Some(Instant::now()),
            receiving_since: None,
            answered: false,
            waiting_on_client: false,
            last_write: None,
            close: close.clone(),
        };
        open.connections.insert(id, connection);
        self.telemetry.record_http_connections(open.connections.len(), self.limit);
        Some(Slot { slots: self.clone(), id, close })
    }

    /// Waits until a slot may be free: one was released or a connection became idle, or a
    /// tenth of a second passed, in which a new connection may have outlived its [`GRACE`].
    pub async fn freed(&self) {
        let _ = tokio::time::timeout(Duration::from_millis(100), self.freed.notified()).await;
    }

    /// Closes the connections past one of their `deadlines`, counting each by its reason.
    pub fn close_expired(&self, deadlines: Deadlines) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let expired: Vec<(u64, &'static str)> =
            open.connections.iter().filter_map(|(id, c)| c.expired(now, deadlines).map(|reason| (*id, reason))).collect();
        if expired.is_empty() {
            return;
        }
        for (id, reason) in expired {
            if let Some(connection) = open.connections.remove(&id) {
                connection.close.notify_one();
                self.telemetry.record_http_eviction(reason);
            }
        }
        self.telemetry.record_http_connections(open.connections.len(), self.limit);
        drop(open);
        self.freed.notify_one();
    }

    fn set(&self, id: u64, idle: bool) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(connection) = open.connections.get_mut(&id) {
            connection.idle_since = idle.then(Instant::now);
            connection.receiving_since = None;
            connection.answered |= idle;
        }
        drop(open);
        if idle {
            // A keep-alive connection may give way to one waiting to be accepted.
            self.freed.notify_one();
        }
    }

    /// The server asked for bytes and found none (`true`), or found some (`false`).
    fn waiting_on_client(&self, id: u64, waiting: bool) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(connection) = open.connections.get_mut(&id) {
            connection.waiting_on_client = waiting;
        }
    }

    /// Whether the connection has been answered at least once.
    fn answered(&self, id: u64) -> bool {
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.connections.get(&id).is_none_or(|c| c.answered)
    }

    /// The server sent bytes: a client that has not been answered yet gets its grace anew.
    fn wrote(&self, id: u64) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(connection) = open.connections.get_mut(&id)
            && !connection.answered
        {
            connection.last_write = Some(Instant::now());
        }
    }

    /// Bytes arrived: while idle, they start the next request, whose deadline runs from now.
    fn received(&self, id: u64) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(connection) = open.connections.get_mut(&id)
            && connection.idle_since.is_some()
            && connection.receiving_since.is_none()
        {
            connection.receiving_since = Some(Instant::now());
        }
    }
}

impl Slot {
    /// What the connection's requests report through: busy from a request's arrival until its
    /// response is sent.
    pub fn activity(&self) -> Activity {
        Activity { slots: self.slots.clone(), id: self.id }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.slots.open.lock().unwrap_or_else(|e| e.into_inner());
        open.connections.remove(&self.id);
        self.slots.telemetry.record_http_connections(open.connections.len(), self.slots.limit);
        drop(open);
        self.slots.freed.notify_one();
    }
}

/// Marks a connection busy while it answers a request.
#[derive(Clone)]
pub struct Activity {
    slots: Arc<Slots>,
    id: u64,
}

impl Activity {
    /// A request arrived: the connection is not idle until [`Busy`] is dropped, which the
    /// response body does once it has been sent.
    pub fn busy(&self) -> Busy {
        self.slots.set(self.id, false);
        Busy(self.clone())
    }
}

/// A connection's socket, which tells its slot when the bytes of a request start to arrive,
/// when the server waits on the client, and, until the first answer, when the server wrote.
pub struct Observed<S> {
    inner: S,
    activity: Activity,
    /// What the slot was last told of waiting on the client, so that it is told only of changes.
    waiting: bool,
    /// Whether the first response started: writes then no longer concern the slot.
    answering: bool,
}

impl<S> Observed<S> {
    pub fn new(inner: S, activity: Activity) -> Observed<S> {
        Observed { inner, activity, waiting: false, answering: false }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Observed<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        // The exporter's requests have no body: the bytes read are request heads, a few reads
        // per request, so telling the slot of each costs next to nothing.
        let waiting = match &polled {
            Poll::Ready(Ok(())) if buf.filled().len() > before => {
                self.activity.slots.received(self.activity.id);
                false
            }
            Poll::Pending => true,
            Poll::Ready(_) => self.waiting,
        };
        if waiting != self.waiting {
            self.waiting = waiting;
            self.activity.slots.waiting_on_client(self.activity.id, waiting);
        }
        polled
    }
}

impl<S> Observed<S> {
    /// Tells the slot of bytes written before the first response: TLS handshake messages.
    fn wrote(&mut self, polled: &Poll<std::io::Result<usize>>) {
        if !self.answering && matches!(polled, Poll::Ready(Ok(n)) if *n > 0) {
            self.activity.slots.wrote(self.activity.id);
            // Once answered, the slot ignores writes; this stops telling it.
            self.answering = self.activity.slots.answered(self.activity.id);
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Observed<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.wrote(&polled);
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.wrote(&polled);
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Held by a response body until it has been sent.
pub struct Busy(Activity);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.slots.set(self.0.id, true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slots(limit: usize) -> Arc<Slots> {
        Slots::new(limit, Arc::new(Telemetry::new(0, 1)))
    }

    #[test]
    fn the_default_limit_follows_the_file_descriptor_limit() {
        assert_eq!(default_limit(Some(1024)), 768);
        assert_eq!(default_limit(Some(1_048_576)), DEFAULT_MAX);
        assert_eq!(default_limit(Some(200)), DEFAULT_MIN);
        assert_eq!(default_limit(None), DEFAULT_MAX);
    }

    #[test]
    fn a_full_house_closes_the_connection_idle_longest_but_never_a_busy_one() {
        let slots = slots(3);
        let first = slots.take().unwrap();
        let second = slots.take().unwrap();
        let third = slots.take().unwrap();
        // The first is answering a request; the second was answered and waits for another.
        let _busy = first.activity().busy();
        drop(second.activity().busy());
        std::thread::sleep(Duration::from_millis(5));
        // Newer than the second's last answer: the third has been idle a shorter time.
        slots.set(third.id, true);
        let fourth = slots.take().unwrap();
        assert_eq!(slots.open.lock().unwrap().connections.len(), 3);
        let closed = |slot: &Slot| !slots.open.lock().unwrap().connections.contains_key(&slot.id);
        assert!(closed(&second), "the connection idle longest made room");
        assert!(!closed(&first) && !closed(&third) && !closed(&fourth));

        // A keep-alive connection gives way before one still waiting for its first request, even
        // one that has waited longer.
        std::thread::sleep(Duration::from_millis(5));
        drop(third.activity().busy());
        let fifth = slots.take().unwrap();
        assert!(closed(&third) && !closed(&fourth), "the answered connection made room, not the older unanswered one");
        drop(fifth);
        let third = slots.take().unwrap();

        // With every slot answering a request, nobody is closed and the new connection waits.
        let _busy = (third.activity().busy(), fourth.activity().busy());
        assert!(slots.take().is_none());
        drop(first);
        drop(_busy);
        assert!(slots.take().is_some(), "a slot freed by a closed connection is taken");
    }

    #[test]
    fn a_new_connection_has_a_moment_to_send_its_request_before_it_may_give_way() {
        let slots = slots(1);
        let new = slots.take().unwrap();
        slots.waiting_on_client(new.id, true);
        assert!(slots.take().is_none(), "within its grace, the new connection keeps its slot");
        std::thread::sleep(GRACE + Duration::from_millis(10));
        let next = slots.take().expect("past its grace, it gives way");
        let open = slots.open.lock().unwrap();
        assert!(!open.connections.contains_key(&new.id) && open.connections.contains_key(&next.id));
    }

    #[test]
    fn a_connection_waiting_on_the_server_keeps_its_slot_and_a_handshake_reply_restarts_its_grace() {
        let slots = slots(1);
        let new = slots.take().unwrap();
        // Accepted, not read yet, or its ClientHello is being worked on: the server's move.
        std::thread::sleep(GRACE + Duration::from_millis(10));
        assert!(slots.take().is_none(), "a client is not evicted for the server's slowness");
        // The server answered the handshake and waits for the client's next flight.
        slots.wrote(new.id);
        slots.waiting_on_client(new.id, true);
        assert!(slots.take().is_none(), "the client has GRACE from the server's last write");
        std::thread::sleep(GRACE + Duration::from_millis(10));
        let next = slots.take().expect("a client that does not answer in GRACE gives way");
        let open = slots.open.lock().unwrap();
        assert!(!open.connections.contains_key(&new.id) && open.connections.contains_key(&next.id));
    }

    #[test]
    fn deadlines_close_slow_requests_and_long_idle_keep_alive_connections() {
        let slots = slots(8);
        let deadlines = Deadlines { header: Duration::from_millis(40), idle: Duration::from_millis(120) };
        let first = slots.take().unwrap();
        let keep_alive = slots.take().unwrap();
        let next_request = slots.take().unwrap();
        let answering = slots.take().unwrap();
        for slot in [&keep_alive, &next_request] {
            drop(slot.activity().busy());
        }
        let _busy = answering.activity().busy();
        let open = |slot: &Slot| slots.open.lock().unwrap().connections.contains_key(&slot.id);
        std::thread::sleep(Duration::from_millis(20));
        slots.received(next_request.id);
        std::thread::sleep(Duration::from_millis(30));
        slots.close_expired(deadlines);
        assert!(!open(&first), "a first request incomplete past the header deadline is closed");
        assert!(open(&keep_alive) && open(&next_request), "keep-alive connections may idle longer");
        std::thread::sleep(Duration::from_millis(30));
        slots.close_expired(deadlines);
        assert!(!open(&next_request), "a next request incomplete 40 ms after its first byte is closed");
        assert!(open(&keep_alive));
        std::thread::sleep(Duration::from_millis(80));
        slots.close_expired(deadlines);
        assert!(!open(&keep_alive), "idle past the keep-alive deadline");
        assert!(open(&answering), "a connection answering a request is never closed");
        let telemetry = &slots.telemetry;
        let mut body = Vec::new();
        telemetry.render(&mut body, crate::exposition::Format::Text);
        let body = String::from_utf8(body).unwrap();
        for (reason, count) in [("header_timeout", 2), ("idle", 1), ("limit", 0)] {
            let line = format!("codepipeline_exporter_http_connections_evicted_total{{reason=\"{reason}\"}} {count}\n");
            assert!(body.contains(&line), "{line}");
        }
    }
}
