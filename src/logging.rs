//! Logging in logfmt (the default of Prometheus and its exporters) or JSON.

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Installs the global subscriber. `level` is one of debug, info, warn, error; the AWS SDK's own
/// logs are kept at warn so that debug logging of the exporter stays readable.
pub fn init(level: &str, json: bool) {
    let filter = EnvFilter::new(format!("warn,codepipeline_exporter={level}"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if json {
        builder.json().flatten_event(true).with_current_span(false).init();
    } else {
        builder.event_format(Logfmt).init();
    }
}

/// `ts=… level=… msg="…" key=value …`, one event a line.
struct Logfmt;

impl<S, N> FormatEvent<S, N> for Logfmt
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, _: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        writer.write_str("ts=")?;
        SystemTime.format_time(&mut writer)?;
        write!(writer, " level={}", event.metadata().level().as_str().to_ascii_lowercase())?;
        let mut fields = Fields::default();
        event.record(&mut fields);
        if let Some(message) = fields.message {
            write!(writer, " msg={}", quoted(&message))?;
        }
        writer.write_str(&fields.rest)?;
        writer.write_char('\n')
    }
}

#[derive(Default)]
struct Fields {
    message: Option<String>,
    rest: String,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.record_str(field, &format!("{value:?}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = Some(value.to_string());
        } else {
            let _ = write!(self.rest, " {}={}", field.name(), quoted(value));
        }
    }
}

/// Quotes a value when logfmt needs it: empty, or holding a space, a quote, an equals sign or a
/// control character.
fn quoted(value: &str) -> String {
    if !value.is_empty() && !value.chars().any(|c| c == ' ' || c == '"' || c == '=' || c.is_control()) {
        return value.to_string();
    }
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn quotes_only_when_needed() {
        assert_eq!(super::quoted("plain"), "plain");
        assert_eq!(super::quoted("two words"), "\"two words\"");
        assert_eq!(super::quoted("a\"b"), "\"a\\\"b\"");
        assert_eq!(super::quoted(""), "\"\"");
    }
}
