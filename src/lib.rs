//! A Prometheus exporter for AWS CodePipeline and AWS CodeConnections.
//!
//! Data flows one way, and the modules follow it: [`config`] → [`aws`] clients → [`scheduler`],
//! which runs the collectors that [`registry`] names ([`codepipeline`], [`codeconnections`]) on
//! the generic loop of [`collector`] → rendered series of each [`target`] → [`store`] →
//! [`scrape`] → [`http`]. No module imports one that comes after it: the collectors know the
//! [`target`] and [`collector`] contracts but not the scheduler, and the scheduler, store, scrape
//! and HTTP modules name no service. Each collector and feature reads its own section of the
//! configuration with [`yaml`]; [`config`] composes them, the collectors' through [`registry`], and
//! names no collector. The [`simulator`] is a fake AWS endpoint speaking the SDK's wire protocols,
//! for the demo and the tests.

pub mod aws;
pub mod budget;
pub mod codeconnections;
pub mod codepipeline;
pub mod collector;
pub mod compression;
pub mod config;
pub mod credentials;
pub mod events;
pub mod exporter;
pub mod exposition;
pub mod http;
pub mod intern;
pub mod logging;
pub mod memory;
pub mod metrics_push;
pub mod organization;
pub mod otlp;
pub mod readiness;
pub mod registry;
pub mod reload;
pub mod report;
pub mod runbook;
pub mod scheduler;
pub mod scrape;
pub mod shard;
pub mod signal;
pub mod simulator;
pub mod status;
pub mod store;
pub mod target;
pub mod telemetry;
pub mod traces;
pub mod vecmap;
pub mod webconfig;
pub mod yaml;
