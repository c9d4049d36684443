//! The Prometheus exposition formats, written by hand.
//!
//! The store keeps each target's sample lines pre-rendered and only writes family headers when it
//! assembles a scrape body, so the two formats a scraper may ask for share every sample line:
//! OpenMetrics 1.0 (what Prometheus asks for first) and the text format 0.0.4 (what `curl`,
//! `promtool check metrics` and older scrapers read). The formats differ only in the `# TYPE` line
//! of counters and in the `# EOF` trailer.

use std::fmt::Write as _;

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
        let Some(accept) = accept else {
            return Format::Text;
        };
        let offers_openmetrics = accept.split(',').any(|range| {
            let mut params = range.split(';').map(str::trim);
            let media = params.next().unwrap_or_default();
            let quality = params.filter_map(|p| p.strip_prefix("q=")).find_map(|q| q.trim().parse::<f32>().ok()).unwrap_or(1.0);
            media.eq_ignore_ascii_case("application/openmetrics-text") && quality > 0.0
        });
        if offers_openmetrics { Format::OpenMetrics } else { Format::Text }
    }
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

/// Appends one sample line: `name{label="value",...} value`.
pub fn write_sample(out: &mut Vec<u8>, name: &str, labels: &[(&str, &str)], value: f64) {
    out.extend_from_slice(name.as_bytes());
    if !labels.is_empty() {
        out.push(b'{');
        for (i, (label, value)) in labels.iter().enumerate() {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_label_values() {
        let mut out = Vec::new();
        write_sample(&mut out, "m", &[("a", "x\"y\\z\nw"), ("b", "")], 1.5);
        assert_eq!(String::from_utf8(out).unwrap(), "m{a=\"x\\\"y\\\\z\\nw\",b=\"\"} 1.5\n");
    }

    #[test]
    fn writes_special_values() {
        let mut out = Vec::new();
        write_sample(&mut out, "m", &[], f64::INFINITY);
        write_sample(&mut out, "m", &[], 1_700_000_000.0);
        write_sample(&mut out, "m", &[], f64::NAN);
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
