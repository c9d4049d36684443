//! The demo's CI/CD metrics pushed into a real time-series database's OTLP receiver: Debian's
//! VictoriaMetrics with `-opentelemetry.usePrometheusNaming` (which `scripts/test.sh` unpacks into
//! target/tools), and a Prometheus 3 built with its OTLP receiver when `PROMETHEUS3_OTLP` names
//! one (Debian's build leaves it out). PromQL then gives each pipeline's run durations counted,
//! by state, equal to the runs the exporter counted in `aws_codepipeline_executions_total` at the
//! same moment.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::process::Exporter;
use common::{request, samples};
use serde_json::Value;

/// A time-series database taking OTLP/HTTP, killed when dropped.
struct Database {
    child: Child,
    addr: std::net::SocketAddr,
    /// Where OTLP metrics are POSTed.
    otlp_path: &'static str,
    _dir: tempfile::TempDir,
}

impl Database {
    fn victoria_metrics() -> Database {
        let binary = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/tools/victoria-metrics/usr/bin/victoria-metrics");
        assert!(
            binary.is_file(),
            "VictoriaMetrics is not at {}: run scripts/test.sh, which downloads Debian's package",
            binary.display()
        );
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let child = Command::new(binary)
            .arg(format!("-storageDataPath={}", dir.path().display()))
            .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
            .arg("-opentelemetry.usePrometheusNaming")
            // Instant queries see what arrived a moment ago, not only what is 30 s old.
            .arg("-search.latencyOffset=0s")
            .arg("-search.disableCache")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Database { child, addr: format!("127.0.0.1:{port}").parse().unwrap(), otlp_path: "/opentelemetry/v1/metrics", _dir: dir }
    }

    fn prometheus(binary: &Path) -> Database {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(&config, "global:\n  scrape_interval: 15s\n").unwrap();
        let port = free_port();
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--web.enable-otlp-receiver")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Database { child, addr: format!("127.0.0.1:{port}").parse().unwrap(), otlp_path: "/api/v1/otlp/v1/metrics", _dir: dir }
    }

    async fn query(&self, promql: &str) -> Option<Vec<Value>> {
        tokio::net::TcpStream::connect(self.addr).await.ok()?;
        let encoded: String = promql
            .bytes()
            .map(|b| if b.is_ascii_alphanumeric() || b == b'_' { (b as char).to_string() } else { format!("%{b:02X}") })
            .collect();
        let answer: Value =
            serde_json::from_str(&request(self.addr, "GET", &format!("/api/v1/query?query={encoded}"), &[]).await.body).ok()?;
        answer["data"]["result"].as_array().cloned()
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Runs counted per pipeline in `aws_codepipeline_executions_total`, from one scrape.
async fn executions(exporter: &Exporter) -> BTreeMap<String, u64> {
    let text = request(exporter.addr, "GET", "/metrics", &[]).await.body;
    let mut counts = BTreeMap::new();
    for (series, value) in samples(&text) {
        if let Some(labels) = series.strip_prefix("aws_codepipeline_executions_total{") {
            let pipeline = labels.split("pipeline=\"").nth(1).and_then(|rest| rest.split('"').next()).unwrap().to_string();
            *counts.entry(pipeline).or_default() += value as u64;
        }
    }
    counts
}

/// `cicd_pipeline_run_duration_seconds_count` per pipeline, for one state.
async fn durations(database: &Database, state: &str) -> Option<BTreeMap<String, u64>> {
    let query =
        format!("sum by (cicd_pipeline_name) (cicd_pipeline_run_duration_seconds_count{{cicd_pipeline_run_state=\"{state}\"}})");
    let result = database.query(&query).await?;
    Some(
        result
            .iter()
            .map(|r| {
                let count = r["value"][1].as_str().unwrap().parse::<f64>().unwrap() as u64;
                (r["metric"]["cicd_pipeline_name"].as_str().unwrap().to_string(), count)
            })
            .collect(),
    )
}

/// Pushes the demo's metrics every second into `database` until, between two scrapes that agree,
/// PromQL gives every pipeline's run count for both states equal to the exporter's.
fn the_demo_s_runs_arrive_counted_as_the_exporter_counts_them(database: Database) {
    let endpoint = format!("http://{}{}", database.addr, database.otlp_path);
    let exporter = Exporter::start_with_env(
        &["--demo"],
        &[("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", &endpoint), ("OTEL_METRIC_EXPORT_INTERVAL", "1000")],
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        // Demo runs end every minute or so.
        let deadline = Instant::now() + Duration::from_secs(240);
        loop {
            let before = executions(&exporter).await;
            let pending = durations(&database, "pending").await;
            let executing = durations(&database, "executing").await;
            let after = executions(&exporter).await;
            let counted: BTreeMap<String, u64> = before.iter().filter(|(_, n)| **n > 0).map(|(p, n)| (p.clone(), *n)).collect();
            if before == after && counted.len() >= 3 && pending.as_ref() == Some(&counted) && executing.as_ref() == Some(&counted)
            {
                eprintln!("{}: runs per pipeline, in both: {counted:?}", database.otlp_path);
                return;
            }
            assert!(
                Instant::now() < deadline,
                "never equal: exporter {before:?} / {after:?}, database pending {pending:?}, executing {executing:?}"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
    let status: Value =
        serde_json::from_str(&runtime.block_on(request(exporter.addr, "GET", "/api/v1/status", &[])).body).unwrap();
    assert_eq!(status["metrics_push"]["up"], true, "{status}");
    assert_eq!(status["metrics_push"]["points_dropped"], 0);
}

#[test]
fn victoria_metrics_counts_the_demo_s_runs_as_the_exporter_does_and_so_does_prometheus_3_s_otlp_receiver() {
    the_demo_s_runs_arrive_counted_as_the_exporter_counts_them(Database::victoria_metrics());
    if let Some(binary) = std::env::var_os("PROMETHEUS3_OTLP").map(PathBuf::from) {
        the_demo_s_runs_arrive_counted_as_the_exporter_counts_them(Database::prometheus(&binary));
    }
}
