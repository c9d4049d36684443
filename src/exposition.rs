//! The Prometheus exposition formats, written by hand.
//!
//! The store keeps each target's sample lines pre-rendered and only writes family headers when it
//! assembles a scrape body, so the two formats a scraper may ask for share every sample line:
//! OpenMetrics 1.0 (what Prometheus asks for first) and the text format 0.0.4 (what `curl`,
//! `promtool check metrics` and older scrapers read). The formats differ only in the `# TYPE` line
//! of counters and in the `# EOF` trailer.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use regex::Regex;

/// The type of a metric family, as written in its `# TYPE` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Gauge,
    Counter,
    Histogram,
}

/// A metric family: the unit of HELP and TYPE metadata.
///
/// Counter names carry their `_total` suffix here so that the name in the source is the name a user
/// greps for; the OpenMetrics header drops it, as that format requires.
#[derive(Debug)]
pub struct Family {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: Kind,
}

/// The wire format of one scrape, picked from the request's `Accept` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    OpenMetrics,
    Text,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Text => "text/plain; version=0.0.4; charset=utf-8",
        }
    }

    /// OpenMetrics when the client lists it with a non-zero quality, the text format otherwise,
    /// as Prometheus's own client libraries negotiate.
    pub fn negotiate(accept: Option<&str>) -> Format {
        if offers(accept, |media| media.eq_ignore_ascii_case("application/openmetrics-text")) {
            Format::OpenMetrics
        } else {
            Format::Text
        }
    }
}

/// Whether an `Accept` or `Accept-Encoding` header lists a value `wanted` takes with a quality
/// above zero (no `q` parameter means 1), as RFC 9110 weighs them.
pub fn offers(header: Option<&str>, wanted: impl Fn(&str) -> bool) -> bool {
    header.is_some_and(|header| {
        header.split(',').any(|item| {
            let mut params = item.split(';').map(str::trim);
            let value = params.next().unwrap_or_default();
            let quality = params.filter_map(|p| p.strip_prefix("q=")).find_map(|q| q.trim().parse::<f32>().ok()).unwrap_or(1.0);
            wanted(value) && quality > 0.0
        })
    })
}

/// Seconds since the epoch, as every `_timestamp_seconds` value and health series is written.
pub fn unix_seconds(time: SystemTime) -> f64 {
    time.duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

impl Family {
    /// Writes the `# HELP` and `# TYPE` lines of this family in `format`.
    pub fn write_header(&self, out: &mut Vec<u8>, format: Format) {
        let (name, kind) = match (self.kind, format) {
            (Kind::Counter, Format::OpenMetrics) => (self.name.strip_suffix("_total").unwrap_or(self.name), "counter"),
            (Kind::Counter, Format::Text) => (self.name, "counter"),
            (Kind::Gauge, _) => (self.name, "gauge"),
            (Kind::Histogram, _) => (self.name, "histogram"),
        };
        out.extend_from_slice(b"# HELP ");
        out.extend_from_slice(name.as_bytes());
        out.push(b' ');
        out.extend_from_slice(self.help.as_bytes());
        out.extend_from_slice(b"\n# TYPE ");
        out.extend_from_slice(name.as_bytes());
        out.push(b' ');
        out.extend_from_slice(kind.as_bytes());
        out.push(b'\n');
    }
}

/// Appends one sample line: `name{label="value",...} value`, with `labels` followed by `extra`.
pub fn write_sample(out: &mut Vec<u8>, name: &str, labels: &[(&str, &str)], extra: &[(&str, &str)], value: f64) {
    out.extend_from_slice(name.as_bytes());
    if !labels.is_empty() || !extra.is_empty() {
        out.push(b'{');
        for (i, (label, value)) in labels.iter().chain(extra).enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(label.as_bytes());
            out.extend_from_slice(b"=\"");
            write_escaped(out, value);
            out.push(b'"');
        }
        out.push(b'}');
    }
    out.push(b' ');
    write_value(out, value);
    out.push(b'\n');
}

/// Label values are arbitrary strings from AWS: backslash, double quote and line feed are the
/// three characters both formats require escaped.
fn write_escaped(out: &mut Vec<u8>, value: &str) {
    for byte in value.bytes() {
        match byte {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'"' => out.extend_from_slice(b"\\\""),
            b'\n' => out.extend_from_slice(b"\\n"),
            other => out.push(other),
        }
    }
}

fn write_value(out: &mut Vec<u8>, value: f64) {
    if value.is_nan() {
        out.extend_from_slice(b"NaN");
    } else if value == f64::INFINITY {
        out.extend_from_slice(b"+Inf");
    } else if value == f64::NEG_INFINITY {
        out.extend_from_slice(b"-Inf");
    } else {
        let mut s = String::with_capacity(24);
        let _ = write!(s, "{value}");
        out.extend_from_slice(s.as_bytes());
    }
}

/// Formats a histogram bucket bound for the `le` label (`+Inf` for the last bucket).
pub fn bound_label(bound: f64) -> String {
    let mut out = Vec::new();
    write_value(&mut out, bound);
    String::from_utf8(out).unwrap_or_default()
}

/// Which families are exported, and how state sets are written: the `metrics` section of the
/// configuration, which trims what a user's Prometheus has to hold.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Family names a family must match one of, when there are any; anchored regexes.
    pub include: Vec<Regex>,
    /// Family names excluded; anchored regexes.
    pub exclude: Vec<Regex>,
    /// State sets carry only the current status's series, at 1, instead of every status.
    pub sparse: bool,
}

/// The prefix of the families that are exported only when an `include` pattern names them: the
/// OpenTelemetry CI/CD metrics, which repeat what the `aws_codepipeline_*` families say under the
/// names an OTLP path gives them, for a dashboard that serves both.
pub const OPT_IN_PREFIX: &str = "cicd_";

impl Selection {
    /// Whether `family` is exported.
    pub fn admits(&self, family: &str) -> bool {
        let included = self.include.iter().any(|r| r.is_match(family));
        let opted_in = !family.starts_with(OPT_IN_PREFIX) || included;
        opted_in && (self.include.is_empty() || included) && !self.exclude.iter().any(|r| r.is_match(family))
    }
}

impl PartialEq for Selection {
    fn eq(&self, other: &Self) -> bool {
        let sources = |r: &[Regex]| r.iter().map(|r| r.as_str().to_string()).collect::<Vec<_>>();
        sources(&self.include) == sources(&other.include)
            && sources(&self.exclude) == sources(&other.exclude)
            && self.sparse == other.sparse
    }
}

/// The sample lines of one target, grouped by family, ready to be stored.
#[derive(Debug, Default)]
pub struct Rendered {
    /// Each family, whether the selection admits it (an excluded family's samples are never
    /// written), and its lines.
    families: Vec<RenderedFamily>,
    selection: Option<Arc<Selection>>,
}

#[derive(Debug)]
struct RenderedFamily {
    family: &'static Family,
    admitted: bool,
    lines: Vec<u8>,
    /// The lines as OpenMetrics writes them, once a sample carries an exemplar, which the text
    /// format has no place for.
    openmetrics: Option<Vec<u8>>,
}

/// The lines of one family of a target: the same in both formats, or, when samples carry
/// exemplars, the OpenMetrics lines beside the text ones.
#[derive(Debug)]
pub struct FamilyLines {
    pub family: &'static Family,
    pub lines: Vec<u8>,
    pub openmetrics: Option<Vec<u8>>,
}

/// A trace that one observation of a histogram came from, as OpenMetrics links them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Exemplar {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub value: f64,
    /// When it was observed, in seconds since the epoch.
    pub timestamp: f64,
}

impl Exemplar {
    /// ` # {trace_id="…",span_id="…"} value timestamp`, after a sample's value.
    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b" # {trace_id=\"");
        for byte in self.trace_id {
            let _ = write!(Hex(out), "{byte:02x}");
        }
        out.extend_from_slice(b"\",span_id=\"");
        for byte in self.span_id {
            let _ = write!(Hex(out), "{byte:02x}");
        }
        out.extend_from_slice(b"\"} ");
        write_value(out, self.value);
        out.push(b' ');
        write_value(out, self.timestamp);
    }
}

/// A `fmt::Write` into a byte buffer, for the hex digits of IDs.
struct Hex<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for Hex<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

impl Rendered {
    /// Lines for the store, written as `selection` says: excluded families are skipped as they
    /// are added, so they cost no formatting, and state sets may be sparse.
    pub fn selected(selection: &Arc<Selection>) -> Rendered {
        Rendered { families: Vec::new(), selection: Some(selection.clone()) }
    }

    /// Adds a sample whose name is the family's name.
    pub fn sample(&mut self, family: &'static Family, labels: &[(&str, &str)], value: f64) {
        self.sample_named(family, family.name, labels, &[], value);
    }

    /// Adds a sample whose labels are a target's common ones followed by its own, such as a
    /// `status`: the one way collectors extend a label set, without copying it.
    pub fn sample_with(&mut self, family: &'static Family, labels: &[(&str, &str)], extra: &[(&str, &str)], value: f64) {
        self.sample_named(family, family.name, labels, extra, value);
    }

    /// Adds a sample with its own name, for the `_bucket`, `_sum` and `_count` of a histogram.
    fn sample_named(&mut self, family: &'static Family, name: &str, labels: &[(&str, &str)], extra: &[(&str, &str)], value: f64) {
        self.sample_exemplar(family, name, labels, extra, value, None);
    }

    /// Adds a sample that may carry an exemplar: the OpenMetrics lines then part from the text
    /// ones, which cannot carry it.
    fn sample_exemplar(
        &mut self,
        family: &'static Family,
        name: &str,
        labels: &[(&str, &str)],
        extra: &[(&str, &str)],
        value: f64,
        exemplar: Option<&Exemplar>,
    ) {
        let position = match self.families.iter().position(|f| std::ptr::eq(f.family, family)) {
            Some(position) => position,
            None => {
                let admitted = self.selection.as_ref().is_none_or(|s| s.admits(family.name));
                self.families.push(RenderedFamily { family, admitted, lines: Vec::new(), openmetrics: None });
                self.families.len() - 1
            }
        };
        let rendered = &mut self.families[position];
        if !rendered.admitted {
            return;
        }
        let start = rendered.lines.len();
        write_sample(&mut rendered.lines, name, labels, extra, value);
        if exemplar.is_some() && rendered.openmetrics.is_none() {
            rendered.openmetrics = Some(rendered.lines[..start].to_vec());
        }
        if let Some(openmetrics) = &mut rendered.openmetrics {
            let line = &rendered.lines[start..];
            match exemplar {
                Some(exemplar) => {
                    openmetrics.extend_from_slice(&line[..line.len() - 1]);
                    exemplar.write(openmetrics);
                    openmetrics.push(b'\n');
                }
                None => openmetrics.extend_from_slice(line),
            }
        }
    }

    /// Adds a state set, as kube-state-metrics renders them: one series per status the SDK
    /// knows, plus the current status if AWS returned one the SDK does not know yet, under a
    /// `status` label; the current one is 1, the others 0, and all are 0 when there is none.
    /// With a sparse selection, only the current status's series is written, and none when
    /// there is no current status.
    pub fn state_set(&mut self, family: &'static Family, labels: &[(&str, &str)], known: &[&str], current: Option<&str>) {
        if self.selection.as_ref().is_some_and(|s| s.sparse) {
            if let Some(current) = current {
                self.sample_with(family, labels, &[("status", current)], 1.0);
            }
            return;
        }
        for status in known.iter().copied().chain(current.filter(|c| !known.contains(c))) {
            self.sample_with(family, labels, &[("status", status)], if current == Some(status) { 1.0 } else { 0.0 });
        }
    }

    /// Each admitted family with its sample lines, for the store to keep.
    pub fn into_families(self) -> Vec<FamilyLines> {
        self.families
            .into_iter()
            .filter(|f| f.admitted && !f.lines.is_empty())
            .map(|f| FamilyLines { family: f.family, lines: f.lines, openmetrics: f.openmetrics })
            .collect()
    }

    /// Writes every family with its header, for metrics rendered at scrape time.
    pub fn write(&self, out: &mut Vec<u8>, format: Format) {
        for rendered in &self.families {
            rendered.family.write_header(out, format);
            match (&rendered.openmetrics, format) {
                (Some(openmetrics), Format::OpenMetrics) => out.extend_from_slice(openmetrics),
                _ => out.extend_from_slice(&rendered.lines),
            }
        }
    }
}

/// A histogram's cumulative bucket counts, count and sum, and the exemplar of the latest
/// observation of each bucket once one came with a trace.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    bounds: &'static [f64],
    buckets: Vec<u64>,
    count: u64,
    sum: f64,
    /// One per bucket and one for `+Inf`: each holds an observation that falls in that bucket
    /// alone, as OpenMetrics requires of a bucket's exemplar.
    exemplars: Option<Box<[Option<Exemplar>]>>,
}

impl Histogram {
    /// An empty histogram with the given upper bounds (`+Inf` is implied).
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram { bounds, buckets: vec![0; bounds.len()], count: 0, sum: 0.0, exemplars: None }
    }

    pub fn observe(&mut self, value: f64) {
        self.count += 1;
        self.sum += value;
        for (bucket, bound) in self.buckets.iter_mut().zip(self.bounds) {
            if value <= *bound {
                *bucket += 1;
            }
        }
    }

    /// Observes a value that came from a trace: it becomes the exemplar of its bucket.
    pub fn observe_with(&mut self, value: f64, exemplar: Option<Exemplar>) {
        self.observe(value);
        if let Some(exemplar) = exemplar {
            let bucket = self.bounds.iter().position(|bound| value <= *bound).unwrap_or(self.bounds.len());
            let exemplars = self.exemplars.get_or_insert_with(|| vec![None; self.bounds.len() + 1].into_boxed_slice());
            exemplars[bucket] = Some(exemplar);
        }
    }

    pub fn bounds(&self) -> &'static [f64] {
        self.bounds
    }

    /// The observations at or below each bound, cumulative as Prometheus counts them.
    pub fn cumulative_counts(&self) -> &[u64] {
        &self.buckets
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn sum(&self) -> f64 {
        self.sum
    }

    /// The exemplars it holds, one per bucket at most.
    pub fn exemplars(&self) -> impl Iterator<Item = &Exemplar> {
        self.exemplars.iter().flat_map(|e| e.iter().flatten())
    }

    /// Writes the `_bucket`, `_sum` and `_count` samples of this histogram.
    pub fn render(&self, rendered: &mut Rendered, family: &'static Family, labels: &[(&str, &str)]) {
        let bucket_name = format!("{}_bucket", family.name);
        let bounds: Vec<String> = self.bounds.iter().map(|b| bound_label(*b)).collect();
        let exemplar = |i: usize| self.exemplars.as_ref().and_then(|e| e[i].as_ref());
        for (i, (le, count)) in bounds.iter().zip(&self.buckets).enumerate() {
            rendered.sample_exemplar(family, &bucket_name, labels, &[("le", le)], *count as f64, exemplar(i));
        }
        let inf = self.bounds.len();
        rendered.sample_exemplar(family, &bucket_name, labels, &[("le", "+Inf")], self.count as f64, exemplar(inf));
        rendered.sample_named(family, &format!("{}_sum", family.name), labels, &[], self.sum);
        rendered.sample_named(family, &format!("{}_count", family.name), labels, &[], self.count as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_label_values() {
        let mut out = Vec::new();
        write_sample(&mut out, "m", &[("a", "x\"y\\z\nw")], &[("b", "")], 1.5);
        assert_eq!(String::from_utf8(out).unwrap(), "m{a=\"x\\\"y\\\\z\\nw\",b=\"\"} 1.5\n");
    }

    #[test]
    fn writes_special_values() {
        let mut out = Vec::new();
        write_sample(&mut out, "m", &[], &[], f64::INFINITY);
        write_sample(&mut out, "m", &[], &[], 1_700_000_000.0);
        write_sample(&mut out, "m", &[], &[], f64::NAN);
        assert_eq!(String::from_utf8(out).unwrap(), "m +Inf\nm 1700000000\nm NaN\n");
    }

    #[test]
    fn counter_headers_differ_by_format() {
        let family = Family { name: "x_total", help: "X.", kind: Kind::Counter };
        let mut om = Vec::new();
        family.write_header(&mut om, Format::OpenMetrics);
        let mut text = Vec::new();
        family.write_header(&mut text, Format::Text);
        assert_eq!(String::from_utf8(om).unwrap(), "# HELP x X.\n# TYPE x counter\n");
        assert_eq!(String::from_utf8(text).unwrap(), "# HELP x_total X.\n# TYPE x_total counter\n");
    }

    #[test]
    fn negotiates_like_prometheus() {
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(Format::negotiate(Some(prometheus)), Format::OpenMetrics);
        assert_eq!(Format::negotiate(Some("*/*")), Format::Text);
        assert_eq!(Format::negotiate(None), Format::Text);
        assert_eq!(Format::negotiate(Some("application/openmetrics-text; q=0")), Format::Text);
        assert_eq!(Format::negotiate(Some("text/plain;version=0.0.4")), Format::Text);
    }
}
