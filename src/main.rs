use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use aws_credential_types::Credentials;
use clap::Parser;
use codepipeline_exporter::aws::Overrides;
use codepipeline_exporter::config::{Config, ConfigError};
use codepipeline_exporter::events;
use codepipeline_exporter::shard::Shard;
use codepipeline_exporter::{exporter, logging, reload, simulator};

/// Prometheus exporter for AWS CodePipeline and AWS CodeConnections.
#[derive(Parser, Debug)]
#[command(name = "codepipeline-exporter", version, about)]
struct Cli {
    /// YAML configuration file; without one, the environment's account and region are discovered.
    #[arg(long = "config.file", value_name = "PATH")]
    config_file: Option<PathBuf>,
    /// Address to listen on for HTTP: `host:port`, or `:port` for every interface.
    #[arg(long = "web.listen-address", value_name = "ADDRESS", default_value = ":19264")]
    listen_address: String,
    /// TLS, basic authentication and headers, in the format of Prometheus's exporter-toolkit.
    #[arg(long = "web.config.file", value_name = "PATH")]
    web_config_file: Option<PathBuf>,
    /// HTTP connections served at once [default: the open-files limit less 256, from 64 to 1024]
    #[arg(long = "web.max-connections", value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    max_connections: Option<u32>,
    /// Path under which to expose metrics.
    #[arg(long = "web.telemetry-path", value_name = "PATH", default_value = "/metrics")]
    telemetry_path: String,
    /// Only log messages with the given severity or above.
    #[arg(long = "log.level", value_name = "LEVEL", default_value = "info", value_parser = ["debug", "info", "warn", "error"])]
    log_level: String,
    /// Output format of log messages.
    #[arg(long = "log.format", value_name = "FORMAT", default_value = "logfmt", value_parser = ["logfmt", "json"])]
    log_format: String,
    /// Poll a simulated AWS account inside the process instead of AWS; needs no credentials.
    #[arg(long)]
    demo: bool,
    /// Validate the configuration, print the effective configuration and exit (0 valid, 1 not).
    #[arg(long = "config.check")]
    config_check: bool,
    /// This replica's shard: a number from 0, or a name ending in -<number> such as a pod's.
    #[arg(long = "shard", value_name = "ORDINAL", env = "SHARD", default_value = "0")]
    shard: String,
    /// The number of replicas the targets are split across.
    #[arg(long = "total-shards", value_name = "N", env = "TOTAL_SHARDS", default_value_t = 1)]
    total_shards: u32,
}

fn main() -> ExitCode {
    codepipeline_exporter::memory::configure();
    let cli = Cli::parse();
    let config = match load_config(&cli) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::FAILURE;
        }
    };
    if cli.config_check {
        print!("{}", config.to_yaml());
        return ExitCode::SUCCESS;
    }
    let shard = match Shard::parse(&cli.shard, cli.total_shards) {
        Ok(shard) => shard,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::FAILURE;
        }
    };
    logging::init(&cli.log_level, cli.log_format == "json");
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli, config, shard)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = format!("{err:#}"), "exporter failed");
            ExitCode::FAILURE
        }
    }
}

/// The configuration file, the built-in defaults, or in demo mode the demo's faster settings.
fn load_config(cli: &Cli) -> Result<Config, ConfigError> {
    match &cli.config_file {
        Some(path) => Config::load(path),
        None if cli.demo => {
            let mut config =
                Config { interval: Duration::from_secs(5), discovery_interval: Duration::from_secs(30), ..Config::default() };
            config.accounts[0].name = "demo".into();
            config.accounts[0].tags = vec!["team".into()];
            config.accounts[0].collectors.codepipeline.tags = vec!["team".into()];
            // The demo shows every family, the opt-in seconds per CodeBuild phase too.
            config.accounts[0].collectors.codepipeline.build_phases = true;
            // Events mode, as a production set-up with a queue runs: a stage change shows within a
            // second. Progress (percentComplete) is not announced, so reconciling is frequent.
            config.accounts[0].events = Some(events::Settings {
                queue_url: simulator::demo::queue_url(),
                queue_region: simulator::REGION.into(),
                reconcile_interval: Duration::from_secs(30),
                role_arn: None,
                external_id: None,
            });
            Ok(config)
        }
        None => Ok(Config::default()),
    }
}

async fn run(cli: Cli, config: Config, shard: Shard) -> anyhow::Result<()> {
    // Installed first: SIGHUP's default action ends the process, so a reload asked for during
    // start-up would otherwise kill it; SIGTERM's likewise.
    let hangups = hangup_signals();
    let shutdown = shutdown_signal();
    let mut overrides = Overrides::default();
    let _simulator = if cli.demo {
        let simulator = simulator::demo::start().await.context("cannot start the simulated AWS account")?;
        overrides.endpoint_url = Some(simulator.endpoint_url());
        overrides.credentials = Some(Credentials::new("AKIDDEMO", "demo-secret", None, None, "demo"));
        tracing::info!(endpoint = %simulator.endpoint_url(), "demo mode: polling a simulated AWS account");
        Some(simulator)
    } else {
        None
    };
    let addr = listen_address(&cli.listen_address)?;
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
    if shard.total > 1 {
        tracing::info!(shard = %shard, "polling this replica's share of the targets");
    }
    let options = exporter::Options {
        config_path: cli.config_file.clone(),
        overrides,
        telemetry_path: cli.telemetry_path.clone(),
        shard,
        web_config_path: cli.web_config_file.clone(),
        max_connections: cli.max_connections.map(|n| n as usize),
    };
    let running = exporter::start(&config, options, listener).await?;
    let shown = if addr.ip().is_unspecified() { SocketAddr::from(([127, 0, 0, 1], running.addr.port())) } else { running.addr };
    tracing::info!(address = %running.addr, "listening");
    println!("codepipeline-exporter {} serving metrics at http://{shown}{}", env!("CARGO_PKG_VERSION"), cli.telemetry_path);
    tokio::spawn(reload_on_sighup(hangups, running.reloader.clone()));
    shutdown.await;
    tracing::info!("shutting down");
    running.shutdown().await;
    Ok(())
}

/// Accepts `host:port` and `:port` (every interface), as Prometheus's exporters do.
fn listen_address(text: &str) -> anyhow::Result<SocketAddr> {
    let full = if text.starts_with(':') { format!("0.0.0.0{text}") } else { text.to_string() };
    full.parse().with_context(|| format!("invalid --web.listen-address {text:?}: use host:port or :port"))
}

#[cfg(unix)]
type Hangups = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangups = Option<()>;

fn hangup_signals() -> Hangups {
    #[cfg(unix)]
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(signal) => Some(signal),
        Err(err) => {
            tracing::warn!(error = %err, "cannot listen for SIGHUP; reload with POST /-/reload");
            None
        }
    }
    #[cfg(not(unix))]
    None
}

/// SIGHUP re-reads the configuration file, as it does for Prometheus.
async fn reload_on_sighup(hangups: Hangups, reloader: reload::Reloader) {
    #[cfg(unix)]
    if let Some(mut hangups) = hangups {
        while hangups.recv().await.is_some() {
            // The outcome is logged and exported by the reload itself.
            let _ = reloader.reload().await;
        }
    }
    #[cfg(not(unix))]
    let _ = (hangups, reloader);
}

/// SIGTERM or SIGINT, whichever comes first. The handlers are installed when this is called, not
/// when it is awaited: a SIGTERM that arrives while the exporter starts (a rollout that replaces
/// a pod still starting) must stop it cleanly, not by the signal's default action.
#[cfg(unix)]
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let installed = |kind: SignalKind, name: &str| match signal(kind) {
        Ok(signal) => Some(signal),
        Err(err) => {
            tracing::warn!(error = %err, signal = name, "cannot listen for this signal; the other stops the exporter");
            None
        }
    };
    let (terminate, interrupt) = (installed(SignalKind::terminate(), "SIGTERM"), installed(SignalKind::interrupt(), "SIGINT"));
    async move {
        let received = |signal: Option<tokio::signal::unix::Signal>| async move {
            match signal {
                Some(mut signal) => {
                    signal.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            () = received(terminate) => {}
            () = received(interrupt) => {}
        }
    }
}

#[cfg(not(unix))]
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}
