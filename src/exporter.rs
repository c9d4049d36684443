//! Wires the pieces together in the order data flows: configuration, AWS clients, scheduler,
//! store, HTTP. `main` and the integration tests start the exporter through here.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::aws::Overrides;
use crate::config::Config;
use crate::http;
use crate::scheduler::{Readiness, Scheduler};
use crate::store::Store;
use crate::telemetry::Telemetry;

/// How often the store may re-assemble the scrape body while poll results keep arriving.
const ASSEMBLY_PAUSE: Duration = Duration::from_millis(100);

/// A running exporter. Dropping it stops polling; [`Running::shutdown`] also drains HTTP.
pub struct Running {
    pub addr: SocketAddr,
    pub store: Arc<Store>,
    pub telemetry: Arc<Telemetry>,
    pub readiness: Arc<Readiness>,
    scheduler: Scheduler,
    assembler: JoinHandle<()>,
    stop_http: Option<oneshot::Sender<()>>,
    server: JoinHandle<()>,
}

/// Starts polling as `config` says and serves HTTP on `listener`.
pub async fn start(
    config: &Config,
    overrides: &Overrides,
    listener: TcpListener,
    telemetry_path: &str,
) -> anyhow::Result<Running> {
    let store = Store::new();
    let telemetry = Arc::new(Telemetry::new());
    let readiness = Arc::new(Readiness::new(store.clone()));
    let scheduler = Scheduler::start(config, overrides, store.clone(), telemetry.clone(), readiness.clone()).await?;
    let assembler = tokio::spawn(store.clone().run_assembler(ASSEMBLY_PAUSE));
    let addr = listener.local_addr()?;
    let state = Arc::new(http::State {
        store: store.clone(),
        telemetry: telemetry.clone(),
        readiness: readiness.clone(),
        telemetry_path: telemetry_path.to_string(),
    });
    let (stop_http, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(http::serve(listener, state, async move {
        let _ = stopped.await;
    }));
    Ok(Running { addr, store, telemetry, readiness, scheduler, assembler, stop_http: Some(stop_http), server })
}

impl Running {
    /// Stops accepting connections, lets responses in flight finish, and stops polling.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop_http.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.server).await;
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.assembler.abort();
        self.server.abort();
        let _ = &self.scheduler;
    }
}
