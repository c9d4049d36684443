//! The `codepipeline` section of an account: which pipelines are polled, and what of them.

use serde::{Deserialize, Serialize};

use crate::yaml::{Context, Invalid, Located, Pattern, non_empty, patterns};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Settings {
    pub discover: bool,
    /// ListPipelineExecutions for execution outcomes, durations and delivery metrics.
    pub executions: bool,
    /// Seconds per CodeBuild phase of each build action (`aws_codepipeline_action_phase_seconds_total`):
    /// opt-in, as it is 10 series per build action (one per phase that ends).
    pub build_phases: bool,
    pub include: Vec<Pattern>,
    pub exclude: Vec<Pattern>,
    pub pipelines: Vec<String>,
    /// The pipeline tags exported as labels of `aws_codepipeline_pipeline_tags`: the account's
    /// `tags`, which the collector is given here; none are read when empty.
    #[serde(skip)]
    pub tags: Vec<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            discover: true,
            executions: true,
            build_phases: false,
            include: Vec::new(),
            exclude: Vec::new(),
            pipelines: Vec::new(),
            tags: Vec::new(),
        }
    }
}

impl Settings {
    /// Whether a discovered pipeline is polled: it matches an include pattern (or there are none)
    /// and no exclude pattern.
    pub fn selects(&self, pipeline: &str) -> bool {
        (self.include.is_empty() || self.include.iter().any(|p| p.0.is_match(pipeline)))
            && !self.exclude.iter().any(|p| p.0.is_match(pipeline))
    }
}

/// The section as the file writes it.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawCodePipeline {
    discover: Option<bool>,
    executions: Option<bool>,
    build_phases: Option<bool>,
    #[serde(default)]
    include: Vec<Located<String>>,
    #[serde(default)]
    exclude: Vec<Located<String>>,
    #[serde(default)]
    pipelines: Vec<Located<String>>,
}

impl RawCodePipeline {
    /// The settings, given the account's `tags`.
    pub fn validate(self, context: &Context) -> Result<Settings, Invalid> {
        let defaults = Settings::default();
        let mut pipelines = Vec::with_capacity(self.pipelines.len());
        for pipeline in self.pipelines {
            let name = non_empty(pipeline, "pipeline name")?;
            if !pipelines.contains(&name) {
                pipelines.push(name);
            }
        }
        Ok(Settings {
            discover: self.discover.unwrap_or(defaults.discover),
            executions: self.executions.unwrap_or(defaults.executions),
            build_phases: self.build_phases.unwrap_or(defaults.build_phases),
            include: patterns(self.include)?,
            exclude: patterns(self.exclude)?,
            pipelines,
            tags: context.tags.to_vec(),
        })
    }
}
