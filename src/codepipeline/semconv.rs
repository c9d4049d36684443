//! CodePipeline's runs as the CI/CD metrics of OpenTelemetry's semantic conventions (release 1.44.0,
//! where they are release candidates): what the OTLP push sends, and what `/metrics` serves under
//! the names Prometheus's OTLP translation gives them, so that one dashboard reads either path.
//!
//! - `cicd.pipeline.run.duration`: two observations per run that ended, `pending` (its total
//!   wait, from [`super::timeline`]) and `executing` (the rest), with its result, and on a failure
//!   the failing action's error code as `error.type` (`_OTHER` without one).
//! - `cicd.pipeline.run.active`: runs now `pending` (waiting at an inbound transition) or
//!   `executing` (the other runs in progress).
//! - `cicd.pipeline.run.errors`: failed runs, by `error.type`.
//! - `cicd.system.errors`: action executions that failed because of CodePipeline or the action's
//!   own AWS service rather than the run's work ([`SYSTEM_ERROR_CODES`]), by the action's
//!   provider as `cicd.system.component`. Each pipeline counts its own, so its series carry
//!   `cicd.pipeline.name` too, which keeps them apart.
//!
//! `cicd.worker.count` is left out: CodePipeline has no workers a user sees or sizes, and
//! CodeBuild's hosts are not counted by any API (its fleets' capacity is configured, not
//! observed), so any figure would be made up.

use super::timeline::{ActionRun, Run};
use super::trace;
use crate::exposition::{Exemplar, Family, Histogram, Kind, Rendered};
use crate::metrics_push::Series;
use crate::metrics_push::otlp::{self, Instrument, Metric, Value};
use crate::vecmap::VecMap;

pub static RUN_DURATION: Metric = Metric {
    name: "cicd.pipeline.run.duration",
    description: "Duration of a pipeline run grouped by pipeline, state and result.",
    unit: "s",
    instrument: Instrument::Histogram,
};
pub static RUN_ACTIVE: Metric = Metric {
    name: "cicd.pipeline.run.active",
    description: "The number of pipeline runs currently active in the system by state.",
    unit: "{run}",
    instrument: Instrument::UpDownCounter,
};
pub static RUN_ERRORS: Metric = Metric {
    name: "cicd.pipeline.run.errors",
    description: "The number of errors encountered in pipeline runs (eg. compile, test failures).",
    unit: "{error}",
    instrument: Instrument::Counter,
};
pub static SYSTEM_ERRORS: Metric = Metric {
    name: "cicd.system.errors",
    description: "The number of errors in a component of the CI/CD system (eg. controller, scheduler, agent).",
    unit: "{error}",
    instrument: Instrument::Counter,
};

pub static RUN_DURATION_FAMILY: Family = Family {
    name: "cicd_pipeline_run_duration_seconds",
    help: "OpenTelemetry's cicd.pipeline.run.duration: two observations per run that ended since the exporter started, pending (its total wait) and executing (the rest), by result and, on failure, the failing action's error code; only with metrics.include naming it.",
    kind: Kind::Histogram,
};
pub static RUN_ACTIVE_FAMILY: Family = Family {
    name: "cicd_pipeline_run_active",
    help: "OpenTelemetry's cicd.pipeline.run.active: runs now pending (waiting at an inbound transition) or executing; only with metrics.include naming it.",
    kind: Kind::Gauge,
};
pub static RUN_ERRORS_FAMILY: Family = Family {
    name: "cicd_pipeline_run_errors_total",
    help: "OpenTelemetry's cicd.pipeline.run.errors: failed runs since the exporter started, by the failing action's error code (_OTHER without one); only with metrics.include naming it.",
    kind: Kind::Counter,
};
pub static SYSTEM_ERRORS_FAMILY: Family = Family {
    name: "cicd_system_errors_total",
    help: "OpenTelemetry's cicd.system.errors: action executions that failed on an AWS-side error (InternalError, SystemUnavailable), by the action's provider, in the pipeline's runs; only with metrics.include naming it.",
    kind: Kind::Counter,
};

/// The OpenTelemetry SDK's default bucket bounds of an explicit-bucket histogram: the semantic
/// conventions advise none for run durations, and an SDK-instrumented CI system would use these.
pub const BUCKETS: [f64; 15] =
    [0.0, 5.0, 10.0, 25.0, 50.0, 75.0, 100.0, 250.0, 500.0, 750.0, 1000.0, 2500.0, 5000.0, 7500.0, 10000.0];

/// Error codes of a failed action execution that say CodePipeline or the action's service failed,
/// not the run's work: counted as `cicd.system.errors`.
pub const SYSTEM_ERROR_CODES: [&str; 2] = ["InternalError", "SystemUnavailable"];

/// `error.type` of a failure without an error code, as the semantic conventions name it.
pub const OTHER: &str = "_OTHER";

/// The run states a run's duration is split into.
pub const PENDING: &str = "pending";
pub const EXECUTING: &str = "executing";

/// Runs in progress now, by state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Active {
    pub pending: u64,
    pub executing: u64,
}

/// One pipeline's CI/CD figures since the exporter started.
#[derive(Debug, Default)]
pub struct Semconv {
    /// By state, result and error type.
    durations: VecMap<(&'static str, &'static str, String), Histogram>,
    run_errors: VecMap<String, u64>,
    /// By component and error type.
    system_errors: VecMap<(String, String), u64>,
}

impl Semconv {
    /// Takes a run that ended: its `pending` and `executing` seconds, and the action executions of
    /// this read of it, whose failures say why it failed. `exemplar` links an observation to the
    /// run's trace when traces are on.
    pub fn observe_run(
        &mut self,
        run: &Run,
        actions: &[ActionRun],
        (pending, executing): (f64, f64),
        exemplar: impl Fn(f64) -> Option<Exemplar>,
    ) {
        let result = trace::pipeline_result(&run.status);
        let failed = actions.iter().filter(|a| a.status == "Failed");
        let error = (result == "failure").then(|| {
            failed
                .clone()
                .max_by(|a, b| a.end.total_cmp(&b.end))
                .and_then(|a| a.error_code.clone())
                .unwrap_or_else(|| OTHER.into())
        });
        for (state, seconds) in [(PENDING, pending), (EXECUTING, executing)] {
            let key = (state, result, error.clone().unwrap_or_default());
            self.durations.get_or_insert_with(key, || Histogram::new(&BUCKETS)).observe_with(seconds, exemplar(seconds));
        }
        if let Some(error) = error {
            *self.run_errors.get_or_insert_with(error, || 0) += 1;
        }
        for action in failed {
            if let Some(code) = action.error_code.as_deref().filter(|c| SYSTEM_ERROR_CODES.contains(c)) {
                *self.system_errors.get_or_insert_with((action.provider.clone(), code.to_string()), || 0) += 1;
            }
        }
    }

    /// The `/metrics` families; `base` holds account, region and pipeline.
    pub fn render(&self, rendered: &mut Rendered, base: &[(&str, &str); 3], active: Active) {
        let pipeline = [base[0], base[1], ("cicd_pipeline_name", base[2].1)];
        for (state, runs) in [(PENDING, active.pending), (EXECUTING, active.executing)] {
            rendered.sample_with(&RUN_ACTIVE_FAMILY, &pipeline, &[("cicd_pipeline_run_state", state)], runs as f64);
        }
        for ((state, result, error), histogram) in &self.durations {
            let mut labels =
                vec![pipeline[0], pipeline[1], pipeline[2], ("cicd_pipeline_run_state", state), ("cicd_pipeline_result", result)];
            if !error.is_empty() {
                labels.push(("error_type", error));
            }
            histogram.render(rendered, &RUN_DURATION_FAMILY, &labels);
        }
        for (error, count) in &self.run_errors {
            rendered.sample_with(&RUN_ERRORS_FAMILY, &pipeline, &[("error_type", error)], *count as f64);
        }
        for ((component, error), count) in &self.system_errors {
            let labels = [("cicd_system_component", component.as_str()), ("error_type", error.as_str())];
            rendered.sample_with(&SYSTEM_ERRORS_FAMILY, &pipeline, &labels, *count as f64);
        }
    }

    /// The figures the OTLP push sends for `pipeline`.
    pub fn series(&self, pipeline: &str, active: Active) -> Vec<Series> {
        let name = || ("cicd.pipeline.name", pipeline.into());
        let mut series = Vec::with_capacity(2 + self.durations.len() + self.run_errors.len() + self.system_errors.len());
        for (state, runs) in [(PENDING, active.pending), (EXECUTING, active.executing)] {
            series.push(Series {
                metric: &RUN_ACTIVE,
                attributes: vec![name(), ("cicd.pipeline.run.state", state.into())],
                value: Value::Int(runs as i64),
            });
        }
        for ((state, result, error), histogram) in &self.durations {
            let mut attributes =
                vec![name(), ("cicd.pipeline.run.state", (*state).into()), ("cicd.pipeline.result", (*result).into())];
            if !error.is_empty() {
                attributes.push(("error.type", error.as_str().into()));
            }
            series.push(Series { metric: &RUN_DURATION, attributes, value: Value::Histogram(otlp_histogram(histogram)) });
        }
        for (error, count) in &self.run_errors {
            series.push(Series {
                metric: &RUN_ERRORS,
                attributes: vec![name(), ("error.type", error.as_str().into())],
                value: Value::Int(*count as i64),
            });
        }
        for ((component, error), count) in &self.system_errors {
            series.push(Series {
                metric: &SYSTEM_ERRORS,
                attributes: vec![
                    name(),
                    ("cicd.system.component", component.as_str().into()),
                    ("error.type", error.as_str().into()),
                ],
                value: Value::Int(*count as i64),
            });
        }
        series
    }
}

/// A histogram as OTLP counts it: per bucket, with one more above the last bound.
fn otlp_histogram(histogram: &Histogram) -> otlp::Histogram {
    let cumulative = histogram.cumulative_counts();
    let mut counts = Vec::with_capacity(cumulative.len() + 1);
    let mut below = 0;
    for at_or_below in cumulative.iter().chain([histogram.count()].iter()) {
        counts.push(at_or_below - below);
        below = *at_or_below;
    }
    otlp::Histogram {
        bounds: histogram.bounds(),
        counts,
        sum: histogram.sum(),
        count: histogram.count(),
        exemplars: histogram
            .exemplars()
            .map(|e| otlp::Exemplar {
                trace_id: e.trace_id,
                span_id: e.span_id,
                value: e.value,
                time_unix_nanos: (e.timestamp * 1e9).round().max(0.0) as u64,
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn otlp_buckets_are_per_bucket_with_one_above_the_last_bound() {
        let mut histogram = Histogram::new(&BUCKETS);
        for value in [0.0, 3.0, 7.0, 20_000.0] {
            histogram.observe(value);
        }
        let otlp = otlp_histogram(&histogram);
        assert_eq!(otlp.counts, [1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!((otlp.count, otlp.sum), (4, 20_010.0));
    }
}
