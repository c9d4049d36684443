//! Wires the pieces together in the order data flows: configuration, AWS clients, scheduler,
//! store, HTTP. `main` and the integration tests start the exporter through here, and reloads of
//! the configuration come back through here.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::aws::Overrides;
use crate::config::Config;
use crate::http;
use crate::memory;
use crate::metrics_push;
use crate::readiness::Readiness;
use crate::reload::{ReloadRequest, Reloader};
use crate::scheduler::{Parts, Scheduler};
use crate::scrape::Scrapes;
use crate::shard::Shard;
use crate::store::Store;
use crate::target::Statuses;
use crate::telemetry::{self, Telemetry};
use crate::traces;
use crate::webconfig::WebConfig;

/// How often the store may re-assemble the scrape body while poll results keep arriving.
const ASSEMBLY_PAUSE: Duration = Duration::from_millis(100);
/// Reload requests queued at most; further requesters wait for a place.
const RELOAD_QUEUE: usize = 4;
/// How long a shutdown waits for queued spans, and for the last data points, to reach the OTLP
/// receiver.
const TRACES_FLUSH: Duration = Duration::from_secs(5);

/// A running exporter. Dropping it stops polling; [`Running::shutdown`] also drains HTTP.
pub struct Running {
    pub addr: SocketAddr,
    pub store: Arc<Store>,
    pub telemetry: Arc<Telemetry>,
    pub readiness: Arc<Readiness>,
    pub reloader: Reloader,
    scheduler: JoinHandle<()>,
    assembler: JoinHandle<()>,
    /// Returns freed memory to the operating system now and then.
    trimmer: JoinHandle<()>,
    stop_http: Option<oneshot::Sender<()>>,
    server: JoinHandle<()>,
    traces: Option<traces::Exporter>,
    metrics_push: Option<metrics_push::Pusher>,
}

/// How the exporter runs, besides its configuration file.
#[derive(Debug, Clone)]
pub struct Options {
    /// The file reloads re-read; without one, a reload has nothing to do.
    pub config_path: Option<PathBuf>,
    pub overrides: Overrides,
    pub telemetry_path: String,
    pub shard: Shard,
    /// `--web.config.file`: TLS, basic authentication, headers. Re-read on reload.
    pub web_config_path: Option<PathBuf>,
    /// `--web.max-connections`; by default derived from the file-descriptor limit.
    pub max_connections: Option<usize>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            config_path: None,
            overrides: Overrides::default(),
            telemetry_path: "/metrics".into(),
            shard: Shard::default(),
            web_config_path: None,
            max_connections: None,
        }
    }
}

/// Starts polling as `config` says and serves HTTP on `listener`.
pub async fn start(config: &Config, options: Options, listener: TcpListener) -> anyhow::Result<Running> {
    let Options { config_path, overrides, telemetry_path, shard, web_config_path, max_connections } = options;
    let max_connections = max_connections.unwrap_or_else(|| http::connections::default_limit(telemetry::open_files_limit()));
    let web = load_web_config(web_config_path.as_deref())?;
    let store = Store::new();
    let telemetry = Arc::new(Telemetry::new(shard.ordinal, shard.total));
    let readiness = Arc::new(Readiness::new(store.clone()));
    let statuses = Arc::new(Statuses::default());
    // Traces are set when the exporter starts: a reload does not change where they go.
    let traces = match traces::Settings::resolve(config.traces.as_ref(), |name| std::env::var(name).ok())? {
        Some(settings) => Some(traces::Exporter::start(&settings, telemetry.clone())?),
        None => None,
    };
    // Likewise the push of the CI/CD metrics.
    let metrics_push = match metrics_push::Settings::resolve(config.metrics_push.as_ref(), |name| std::env::var(name).ok())? {
        Some(settings) => Some(metrics_push::Pusher::start(&settings, telemetry.clone())?),
        None => None,
    };
    let parts = Parts {
        store: store.clone(),
        statuses: statuses.clone(),
        telemetry: telemetry.clone(),
        readiness: readiness.clone(),
        traces: traces.as_ref().map(traces::Exporter::sink),
        metrics: metrics_push.as_ref().map(metrics_push::Pusher::recorder),
    };
    let scheduler = Scheduler::start(config, &overrides, shard, parts).await?;
    let (reloader, queue) = Reloader::channel(RELOAD_QUEUE);
    let assembler = tokio::spawn(store.clone().run_assembler(ASSEMBLY_PAUSE));
    let trimmer = tokio::spawn(memory::run());
    let addr = listener.local_addr()?;
    let state = Arc::new(http::State {
        scrapes: Scrapes::new(store.clone(), telemetry.clone()),
        telemetry: telemetry.clone(),
        statuses,
        readiness: readiness.clone(),
        reloader: reloader.clone(),
        telemetry_path,
        web: RwLock::new(Arc::new(web)),
    });
    let files = Files { config: config_path, web_config: web_config_path };
    let scheduler = tokio::spawn(serve_reloads(scheduler, files, state.clone(), telemetry.clone(), queue));
    let (stop_http, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(http::serve(listener, state, max_connections, async move {
        let _ = stopped.await;
    }));
    Ok(Running {
        addr,
        store,
        telemetry,
        readiness,
        reloader,
        scheduler,
        assembler,
        trimmer,
        stop_http: Some(stop_http),
        server,
        traces,
        metrics_push,
    })
}

/// The files a reload re-reads.
struct Files {
    config: Option<PathBuf>,
    web_config: Option<PathBuf>,
}

fn load_web_config(path: Option<&std::path::Path>) -> anyhow::Result<WebConfig> {
    Ok(match path {
        Some(path) => WebConfig::load(path)?,
        None => WebConfig::default(),
    })
}

/// Owns the scheduler and applies reloads one at a time, for as long as the exporter runs. Both
/// files are validated before anything changes, so a bad one leaves everything as it was.
async fn serve_reloads(
    mut scheduler: Scheduler,
    files: Files,
    state: Arc<http::State>,
    telemetry: Arc<Telemetry>,
    mut requests: mpsc::Receiver<ReloadRequest>,
) {
    loop {
        let reply = tokio::select! {
            request = requests.recv() => match request {
                Some(reply) => reply,
                None => return,
            },
            () = scheduler.listing_changed() => {
                if let Err(err) = scheduler.apply_listing().await {
                    tracing::error!(error = %format!("{err:#}"), "the organization's new accounts could not be applied");
                }
                continue;
            }
        };
        let outcome = reload(&mut scheduler, &files, &state).await;
        match &outcome {
            Ok(()) => tracing::info!("configuration reloaded"),
            Err(err) => tracing::error!(error = %err, "configuration reload failed; the running configuration stays"),
        }
        telemetry.record_reload(outcome.is_ok());
        let _ = reply.send(outcome);
    }
}

async fn reload(scheduler: &mut Scheduler, files: &Files, state: &http::State) -> Result<(), String> {
    let web = load_web_config(files.web_config.as_deref()).map_err(|err| err.to_string())?;
    let config = files.config.as_deref().map(Config::load).transpose().map_err(|err| err.to_string())?;
    if let Some(config) = config {
        scheduler.apply(&config).await.map_err(|err| format!("{err:#}"))?;
    }
    *state.web.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(web);
    Ok(())
}

impl Running {
    /// Stops accepting connections, lets responses in flight finish, stops polling, and sends the
    /// spans still queued and a last collection of the CI/CD metrics within a deadline.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop_http.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.server).await;
        self.scheduler.abort();
        if let Some(traces) = self.traces.take() {
            traces.shutdown(TRACES_FLUSH).await;
        }
        if let Some(push) = self.metrics_push.take() {
            push.shutdown(TRACES_FLUSH).await;
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.assembler.abort();
        self.trimmer.abort();
        self.server.abort();
        self.scheduler.abort();
    }
}
