//! The `/metrics` body: the exposition the store keeps ready, followed by the exporter's own
//! metrics, gzip-compressed when the client takes it.
//!
//! The store's part is sent as it is kept. The own part is rendered from [`Telemetry`] and kept
//! for the scrapes that follow, until telemetry records something, the store publishes a new
//! exposition, or [`OWN_PART_MAX_AGE`] passes. Rendering it reads procfs and deflates a few
//! kilobytes, which cost as much CPU as sending a megabyte of body, so sharing it is what lets
//! many concurrent scrapers cost about what one does. Only the process figures (CPU, memory, file
//! descriptors), the budgets' gauges and the HTTP server's figures, which change without telemetry
//! counting it as a change, can be that much older than the scrape.

use std::convert::Infallible;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use flate2::Decompress;
use http_body_util::BodyExt as _;
use http_body_util::combinators::BoxBody;
use hyper::Response;
use hyper::body::Frame;
use hyper::header::{ACCEPT, ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_TYPE, HeaderMap, HeaderValue, VARY};

use crate::exposition::{self, Format};
use crate::store::{Exposition, Store};
use crate::telemetry::Telemetry;

/// How long an own part may be reused while nothing recorded in telemetry changes.
pub const OWN_PART_MAX_AGE: Duration = Duration::from_millis(100);

pub type Body = BoxBody<Bytes, Infallible>;

/// Answers scrapes from the store and telemetry.
pub struct Scrapes {
    store: Arc<Store>,
    telemetry: Arc<Telemetry>,
    /// [`OWN_PART_MAX_AGE`], but for tests.
    max_age: Duration,
    openmetrics: Mutex<Option<Arc<OwnPart>>>,
    text: Mutex<Option<Arc<OwnPart>>>,
}

/// The exporter's own metrics in one format, as rendered for one exposition.
struct OwnPart {
    rendered_at: Instant,
    generation: u64,
    /// A weak reference keeps the address from being reused, so the comparison cannot be fooled,
    /// without keeping an old exposition's buffers alive.
    exposition: Weak<Exposition>,
    text: Bytes,
    /// The gzip body's end after that exposition, made by the first gzip scrape that needs it.
    gzip_end: OnceLock<Bytes>,
}

impl Scrapes {
    pub fn new(store: Arc<Store>, telemetry: Arc<Telemetry>) -> Scrapes {
        Scrapes { store, telemetry, max_age: OWN_PART_MAX_AGE, openmetrics: Mutex::default(), text: Mutex::default() }
    }

    /// The store the scrapes are answered from.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The response to a scrape with these request headers.
    pub fn respond(&self, headers: &HeaderMap) -> Response<Body> {
        let format = Format::negotiate(headers.get(ACCEPT).and_then(|v| v.to_str().ok()));
        let gzip = accepts_gzip(headers.get(ACCEPT_ENCODING).and_then(|v| v.to_str().ok()));
        let exposition = self.store.exposition();
        let own = self.own_part(format, &exposition);
        let prefix = exposition.deflated(format);
        let body = if gzip {
            let end = own.gzip_end.get_or_init(|| prefix.gzip_end(&own.text)).clone();
            Chunks(prefix.gzip(end).into()).boxed()
        } else {
            let remaining = prefix.text_len() + own.text.len() as u64;
            Inflating::new(exposition, format, own.text.clone(), remaining).boxed()
        };
        let mut response = Response::new(body);
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(format.content_type()));
        headers.insert(VARY, HeaderValue::from_static("Accept, Accept-Encoding"));
        if gzip {
            headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
        response
    }

    /// The kept own part if it is still current, or a new one. Scrapes that arrive while one is
    /// rendered wait for it rather than render their own.
    fn own_part(&self, format: Format, exposition: &Arc<Exposition>) -> Arc<OwnPart> {
        let slot = match format {
            Format::OpenMetrics => &self.openmetrics,
            Format::Text => &self.text,
        };
        let mut slot = slot.lock().unwrap_or_else(|e| e.into_inner());
        // Read before rendering: a change recorded meanwhile then makes the next scrape render.
        let generation = self.telemetry.generation();
        if let Some(part) = slot.as_ref()
            && part.generation == generation
            && part.exposition.as_ptr() == Arc::as_ptr(exposition)
            && part.rendered_at.elapsed() < self.max_age
        {
            return part.clone();
        }
        let mut text = Vec::with_capacity(8 * 1024);
        self.telemetry.render(&mut text, format);
        if format == Format::OpenMetrics {
            text.extend_from_slice(b"# EOF\n");
        }
        let part = Arc::new(OwnPart {
            rendered_at: Instant::now(),
            generation,
            exposition: Arc::downgrade(exposition),
            text: Bytes::from(text),
            gzip_end: OnceLock::new(),
        });
        *slot = Some(part.clone());
        part
    }
}

/// Whether the client takes gzip: listed (or `*`) with a quality above zero.
fn accepts_gzip(accept_encoding: Option<&str>) -> bool {
    exposition::offers(accept_encoding, |coding| coding.eq_ignore_ascii_case("gzip") || coding == "*")
}

/// A body of buffers sent one after the other, so that the stored exposition is sent as it is
/// rather than copied into a new buffer with the exporter's own metrics.
struct Chunks(std::collections::VecDeque<Bytes>);

impl hyper::body::Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let chunks = &mut self.0;
        while chunks.front().is_some_and(Bytes::is_empty) {
            chunks.pop_front();
        }
        std::task::Poll::Ready(chunks.pop_front().map(|chunk| Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.0.iter().all(Bytes::is_empty)
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact(self.0.iter().map(|c| c.len() as u64).sum())
    }
}

/// The most an uncompressed scrape inflates into one buffer: under the allocator's mapping
/// threshold (see [`crate::compression::Prefix::inflate_pieces`]).
const INFLATED_PIECE: usize = 128 * 1024;

/// An uncompressed body: the kept deflated segments, inflated a segment at a time as the client
/// reads, so that an uncompressed scrape holds about one segment in memory rather than the whole
/// body. It is inflated in the connection's own task: a thread per scrape would let many clients
/// that do not take gzip start as many threads.
struct Inflating {
    exposition: Arc<Exposition>,
    format: Format,
    next: usize,
    decompress: Decompress,
    /// The inflated pieces of the segment being sent.
    pieces: std::collections::VecDeque<Bytes>,
    /// The scrape's own part, sent after the segments.
    tail: Option<Bytes>,
    remaining: u64,
}

impl Inflating {
    fn new(exposition: Arc<Exposition>, format: Format, tail: Bytes, remaining: u64) -> Inflating {
        let (decompress, pieces) = (Decompress::new(false), std::collections::VecDeque::new());
        Inflating { exposition, format, next: 0, decompress, pieces, tail: Some(tail), remaining }
    }
}

impl hyper::body::Body for Inflating {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = &mut *self;
        loop {
            if let Some(piece) = this.pieces.pop_front() {
                this.remaining = this.remaining.saturating_sub(piece.len() as u64);
                return std::task::Poll::Ready(Some(Ok(Frame::data(piece))));
            }
            let prefix = this.exposition.deflated(this.format);
            if this.next < prefix.segments() {
                let pieces = &mut this.pieces;
                prefix.inflate_pieces(this.next, &mut this.decompress, INFLATED_PIECE, |piece| {
                    pieces.push_back(piece);
                    true
                });
                this.next += 1;
                continue;
            }
            return std::task::Poll::Ready(this.tail.take().map(|tail| {
                this.remaining = this.remaining.saturating_sub(tail.len() as u64);
                Ok(Frame::data(tail))
            }));
        }
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact(self.remaining)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use http_body_util::BodyExt as _;
    use hyper::header::HeaderName;

    use super::*;
    use crate::exposition::Rendered;
    use crate::exposition::{Family, Kind};
    use crate::target::TargetKey;

    static UP: Family = Family { name: "t_up", help: "Up.", kind: Kind::Gauge };

    /// Scrapes whose own part does not age, unless `max_age` says otherwise, so that tests on a
    /// busy machine compare the same rendering.
    fn scrapes_aged(max_age: Duration) -> (Arc<Store>, Arc<Telemetry>, Scrapes) {
        let (store, telemetry) = (Store::new(), Arc::new(Telemetry::new(0, 1)));
        (store.clone(), telemetry.clone(), Scrapes { max_age, ..Scrapes::new(store, telemetry) })
    }

    fn scrapes() -> (Arc<Store>, Arc<Telemetry>, Scrapes) {
        scrapes_aged(Duration::from_secs(3600))
    }

    fn publish(store: &Store, up: f64) {
        let mut rendered = Rendered::default();
        rendered.sample(&UP, &[("pipeline", "p")], up);
        let key = TargetKey { account: "a".into(), region: "r".into(), kind: "pipeline", service: "s", name: "p".into() };
        store.update(&key, rendered);
        store.assemble();
    }

    /// The body of a text-format scrape, decompressed if it came gzipped.
    async fn scrape(scrapes: &Scrapes, gzip: bool) -> String {
        let mut headers = HeaderMap::new();
        if gzip {
            headers.insert(HeaderName::from_static("accept-encoding"), HeaderValue::from_static("gzip"));
        }
        let response = scrapes.respond(&headers);
        assert_eq!(response.headers().contains_key(CONTENT_ENCODING), gzip);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let mut text = String::new();
        if gzip {
            flate2::read::GzDecoder::new(&body[..]).read_to_string(&mut text).unwrap();
        } else {
            text = String::from_utf8(body.to_vec()).unwrap();
        }
        text
    }

    fn line<'a>(body: &'a str, name: &str) -> Option<&'a str> {
        body.lines().find(|l| l.starts_with(name))
    }

    #[tokio::test]
    async fn scrapes_share_the_own_part_until_telemetry_records_a_change() {
        let (store, telemetry, scrapes) = scrapes();
        publish(&store, 1.0);
        let first = scrape(&scrapes, true).await;
        assert!(first.starts_with("# HELP t_up Up.\n# TYPE t_up gauge\nt_up{pipeline=\"p\"} 1\n"), "{first}");
        let shared = scrapes.own_part(Format::Text, &store.exposition());
        assert!(Arc::ptr_eq(&shared, &scrapes.own_part(Format::Text, &store.exposition())));
        assert_eq!(scrape(&scrapes, false).await, first);

        // A counter recorded right after a scrape is in the very next one.
        telemetry.observe("codepipeline", "GetPipelineState", Duration::from_millis(30), Some("ThrottlingException"));
        let second = scrape(&scrapes, true).await;
        assert_eq!(
            line(&second, "codepipeline_exporter_aws_requests_total"),
            Some("codepipeline_exporter_aws_requests_total{service=\"codepipeline\",operation=\"GetPipelineState\"} 1")
        );
        assert_eq!(scrape(&scrapes, false).await, second);
        telemetry.record_reload(false);
        assert_eq!(
            line(&scrape(&scrapes, false).await, "codepipeline_exporter_config_last_reload_successful"),
            Some("codepipeline_exporter_config_last_reload_successful 0")
        );
        assert!(!Arc::ptr_eq(&shared, &scrapes.own_part(Format::Text, &store.exposition())));
    }

    #[tokio::test]
    async fn a_new_exposition_gets_a_gzip_end_of_its_own() {
        let (store, _, scrapes) = scrapes();
        publish(&store, 1.0);
        let before = scrapes.own_part(Format::Text, &store.exposition());
        scrape(&scrapes, true).await;
        publish(&store, 0.0);
        // Its checksum and length cover the new exposition: the body reads back whole.
        let body = scrape(&scrapes, true).await;
        assert!(body.starts_with("# HELP t_up Up.\n# TYPE t_up gauge\nt_up{pipeline=\"p\"} 0\n"), "{body}");
        assert_eq!(scrape(&scrapes, false).await, body);
        assert!(!Arc::ptr_eq(&before, &scrapes.own_part(Format::Text, &store.exposition())));
    }

    #[tokio::test]
    async fn the_own_part_is_rendered_again_once_it_is_too_old() {
        let (store, _, scrapes) = scrapes_aged(Duration::from_millis(20));
        publish(&store, 1.0);
        let exposition = store.exposition();
        let first = scrapes.own_part(Format::OpenMetrics, &exposition);
        assert!(first.text.ends_with(b"# EOF\n"));
        assert!(!Arc::ptr_eq(&first, &scrapes.own_part(Format::Text, &exposition)), "each format has its own");
        std::thread::sleep(Duration::from_millis(20));
        assert!(!Arc::ptr_eq(&first, &scrapes.own_part(Format::OpenMetrics, &exposition)));
    }

    #[test]
    fn gzip_is_taken_when_offered() {
        assert!(super::accepts_gzip(Some("gzip")));
        assert!(super::accepts_gzip(Some("deflate, gzip;q=0.5")));
        assert!(super::accepts_gzip(Some("*")));
        assert!(!super::accepts_gzip(Some("gzip;q=0")));
        assert!(!super::accepts_gzip(Some("identity")));
        assert!(!super::accepts_gzip(None));
    }
}
