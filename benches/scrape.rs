//! The exporter under load, as a separate process polling the simulated AWS endpoint: for 1,000,
//! 5,000 and 10,000 pipelines of 5 stages and 4 actions each, the time to the first complete
//! exposition, its size, scrape latency with 1 and 32 concurrent clients (OpenMetrics and text,
//! gzip and identity), memory, CPU per poll cycle and per scrape, and AWS calls per
//! pipeline-hour.
//!
//! With `traces`, the exporter sends traces to a bare OTLP receiver, and every pipeline ends a
//! run of all its actions right after start-up: the poll cycle reads them, and the OpenMetrics
//! body carries an exemplar on a bucket of each duration histogram.
//!
//!     cargo bench --bench scrape                 # all sizes
//!     cargo bench --bench scrape -- 1000         # one size
//!     cargo bench --bench scrape -- 1000 traces  # one size, runs ending, traces and exemplars
//!     cargo bench --bench scrape -- 1000 push    # one size, runs ending, the CI/CD metrics pushed
//!     cargo bench --bench scrape -- organization # 200 accounts × 2 regions × 25 pipelines, then
//!                                                # 1,000 accounts × 3 regions, 100 with pipelines
//!     cargo bench --bench scrape -- organization --shards 4  # the latter on 4 replicas too
//!     cargo bench --bench scrape -- estate --shards 4        # the estate alone
//!
//! With `push`, the exporter pushes the OpenTelemetry CI/CD metrics to a bare OTLP receiver every
//! 60 s (the default interval), every pipeline ends a run as with `traces`, and the scrape figures
//! are those of an exporter that pushes. A second exporter then measures the CPU of one push: it
//! polls every hour, so that nothing but the push runs once its runs are read, and pushes every
//! second.
//!
//! The organization shape lists its 200 member accounts through the simulated Organizations,
//! assumes a role in each through the simulated STS, and polls each member's own 25 pipelines in
//! both regions: 10,000 pipelines, 400 account-and-region scopes.
//!
//! The estate is an organization as it really is: 1,000 member accounts in 3 regions, of which
//! 100 hold 30 pipelines each in their first region and the rest nothing (3,000 pipelines, 3,000
//! scopes, 2,900 of them empty), polled with the default request budget and the default
//! CodeConnections settings. Its memory per empty scope is measured against the same estate
//! without its 900 empty accounts. With `--shards N` it is polled by N replicas too, each a
//! process of its own: their memory, and that every pipeline is in exactly one replica's
//! exposition, every scope discovered by exactly one.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use codepipeline_exporter::simulator::{self, SimActionRun, SimExecution, Simulator};
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// The poll interval: the default, so that the AWS calls and the CPU are those of a default
/// configuration.
const INTERVAL: u64 = 60;
/// How long each kind of load runs: long enough for CPU time, counted in 10 ms ticks, to be
/// measured to a few percent.
const LOAD: Duration = Duration::from_secs(3);

struct Process {
    child: Child,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Process {
    /// User plus system CPU seconds of the process so far.
    fn cpu_seconds(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or_default().split_whitespace().collect();
        let ticks = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
        (ticks(14) + ticks(15)) / 100.0
    }

    /// Resident and peak resident memory, in MiB.
    fn memory(&self) -> (f64, f64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
                .unwrap_or(0.0)
                / 1024.0
        };
        (field("VmRSS:"), field("VmHWM:"))
    }
}

/// One keep-alive HTTP/1.1 connection that scrapes `/metrics`, on a thread of its own: blocking
/// reads on OS threads leave fairness between the scrapers to the kernel, as separate Prometheus
/// servers would.
struct Scraper {
    stream: BufReader<TcpStream>,
    gzip: bool,
    /// OpenMetrics, as Prometheus asks; else the text format.
    openmetrics: bool,
    /// The last body, its buffer reused so that the scrapers allocate as little as they can.
    body: Vec<u8>,
}

impl Scraper {
    fn connect(addr: std::net::SocketAddr, gzip: bool, openmetrics: bool) -> Scraper {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_nodelay(true).expect("TCP_NODELAY");
        Scraper { stream: BufReader::with_capacity(64 * 1024, stream), gzip, openmetrics, body: Vec::new() }
    }

    /// Scrapes once; returns the body.
    fn scrape(&mut self) -> &[u8] {
        let accept = if self.openmetrics {
            "Accept: application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5\r\n"
        } else {
            "Accept: text/plain;version=0.0.4\r\n"
        };
        let encoding = if self.gzip { "Accept-Encoding: gzip\r\n" } else { "" };
        self.stream
            .get_mut()
            .write_all(format!("GET /metrics HTTP/1.1\r\nHost: bench\r\n{accept}{encoding}\r\n").as_bytes())
            .unwrap();
        let mut length = 0;
        loop {
            let mut line = String::new();
            self.stream.read_line(&mut line).unwrap();
            if line == "\r\n" {
                break;
            }
            if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = value.trim().parse().unwrap();
            }
        }
        let mut body = std::mem::take(&mut self.body);
        body.resize(length, 0);
        self.stream.read_exact(&mut body).unwrap();
        self.body = body;
        &self.body
    }
}

/// A server that answers every request on its first `connections` connections with `body`, as
/// one write from a thread per connection: what sending the bytes costs, with nothing else.
fn copy_server(body: Vec<u8>, gzip: bool, connections: usize) -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let encoding = if gzip { "Content-Encoding: gzip\r\n" } else { "" };
    let mut response = format!("HTTP/1.1 200 OK\r\n{encoding}Content-Length: {}\r\n\r\n", body.len()).into_bytes();
    response.extend_from_slice(&body);
    let response = std::sync::Arc::new(response);
    std::thread::spawn(move || {
        for stream in listener.incoming().take(connections) {
            let (stream, response) = (stream.unwrap(), response.clone());
            stream.set_nodelay(true).unwrap();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream);
                let mut line = String::new();
                loop {
                    line.clear();
                    match reader.read_line(&mut line) {
                        Ok(0) | Err(_) => return,
                        Ok(_) if line == "\r\n" => {
                            if reader.get_mut().write_all(&response).is_err() {
                                return;
                            }
                        }
                        Ok(_) => {}
                    }
                }
            });
        }
    });
    addr
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

/// Scrapes with `clients` concurrent connections for `duration`, each at least once; returns the
/// sorted latencies.
fn load(addr: std::net::SocketAddr, clients: usize, duration: Duration, gzip: bool, openmetrics: bool) -> Vec<Duration> {
    let started = Instant::now();
    let mut all: Vec<Duration> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..clients)
            .map(|_| {
                scope.spawn(move || {
                    let mut scraper = Scraper::connect(addr, gzip, openmetrics);
                    let mut latencies = Vec::new();
                    while latencies.is_empty() || started.elapsed() < duration {
                        let began = Instant::now();
                        scraper.scrape();
                        latencies.push(began.elapsed());
                    }
                    latencies
                })
            })
            .collect();
        threads.into_iter().flat_map(|t| t.join().unwrap()).collect()
    });
    all.sort();
    all
}

/// What an OTLP sink received: exports and their bytes.
#[derive(Default)]
struct Received {
    exports: std::sync::atomic::AtomicU64,
    bytes: std::sync::atomic::AtomicU64,
}

/// An OTLP receiver that takes every export and answers 200 with nothing, on a thread per
/// connection; the exporter opens one connection per export.
fn otlp_sink() -> std::net::SocketAddr {
    otlp_sink_counting(std::sync::Arc::default())
}

/// [`otlp_sink`], counting what it receives in `received`.
fn otlp_sink_counting(received: std::sync::Arc<Received>) -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let received = received.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream);
                loop {
                    let mut length = 0;
                    loop {
                        let mut line = String::new();
                        match reader.read_line(&mut line) {
                            Ok(0) | Err(_) => return,
                            Ok(_) if line == "\r\n" => break,
                            Ok(_) => {
                                if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                                    length = value.trim().parse().unwrap_or(0);
                                }
                            }
                        }
                    }
                    let mut body = vec![0; length];
                    if reader.read_exact(&mut body).is_err()
                        || reader.get_mut().write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").is_err()
                    {
                        return;
                    }
                    received.exports.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    received.bytes.fetch_add(length as u64, std::sync::atomic::Ordering::Relaxed);
                }
            });
        }
    });
    addr
}

/// Ends a run of every action of every pipeline of the fleet, now, as the next poll sees it.
fn end_runs(simulator: &Simulator, pipelines: usize) {
    set_runs(simulator, pipelines, "next", "Succeeded");
}

/// Puts a run `name` of every action of every pipeline at the head of its history, at `status`.
fn set_runs(simulator: &Simulator, pipelines: usize, name: &str, status: &str) {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    let mut world = simulator.world();
    for i in 0..pipelines {
        let Some(pipeline) = world.pipelines.get_mut(&format!("service-{i:05}-deploy")) else { continue };
        let id = simulator::execution_id(&format!("exec-{i}-{name}"));
        pipeline.executions.retain(|e| e.id != id);
        let mut run = SimExecution::new(&id, status, now - 400.0, now);
        for s in 0..5 {
            for a in 0..4 {
                let start = now - 400.0 + f64::from(s * 4 + a) * 20.0;
                let (stage, action) = (format!("Stage{s}"), format!("Action{s}{a}"));
                run.actions.push(SimActionRun::new(
                    &stage,
                    &action,
                    &format!("act-{i}-{s}-{a}-{name}"),
                    "Succeeded",
                    start,
                    start + 20.0,
                ));
            }
        }
        pipeline.executions.insert(0, run);
        pipeline.stages[4].latest = Some((id, status.into()));
    }
}

/// What the exporter polls: one account, or an organization's accounts.
#[derive(Clone, Copy)]
enum Shape {
    /// One account and region with this many pipelines.
    Account(usize),
    /// This many member accounts, each with `pipelines` in each of two regions.
    Organization { accounts: usize, pipelines: usize },
    /// This many member accounts in three regions, the first `busy` of them with `pipelines` in
    /// their first region, the others empty.
    Estate { accounts: usize, busy: usize, pipelines: usize },
}

const ORGANIZATION: Shape = Shape::Organization { accounts: 200, pipelines: 25 };
const ORGANIZATION_REGIONS: usize = 2;
const ESTATE: Shape = Shape::Estate { accounts: 1000, busy: 100, pipelines: 30 };
const ESTATE_REGIONS: [&str; 3] = ["us-east-1", "eu-west-1", "ap-southeast-2"];

impl Shape {
    fn pipelines(self) -> usize {
        match self {
            Shape::Account(n) => n,
            Shape::Organization { accounts, pipelines } => accounts * pipelines * ORGANIZATION_REGIONS,
            Shape::Estate { busy, pipelines, .. } => busy * pipelines,
        }
    }

    fn scopes(self) -> usize {
        match self {
            Shape::Account(_) => 1,
            Shape::Organization { accounts, .. } => accounts * ORGANIZATION_REGIONS,
            Shape::Estate { accounts, .. } => accounts * ESTATE_REGIONS.len(),
        }
    }

    /// The simulated endpoint and the configuration that polls it.
    async fn start(self) -> (Simulator, String) {
        let budget = "interval: {INTERVAL}s\ndiscovery_interval: 1h\nrequests_per_second: 100000\nburst: 100000\nmax_concurrent_requests: 32\n"
            .replace("{INTERVAL}", &INTERVAL.to_string());
        match self {
            Shape::Account(pipelines) => {
                let simulator = Simulator::start(simulator::fleet(pipelines)).await.expect("simulator");
                let config = format!(
                    "{budget}accounts:\n  - name: bench\n    regions: [us-east-1]\n    codeconnections:\n      discover: false\n"
                );
                (simulator, config)
            }
            Shape::Organization { accounts, pipelines } => {
                let simulator = Simulator::start(simulator::World::default()).await.expect("simulator");
                let root = simulator.organization().root.clone();
                for a in 0..accounts {
                    let id = format!("{:012}", 200_000_000_000u64 + a as u64);
                    simulator.organization().add_account(&id, &format!("member-{a:03}"), &root);
                    *simulator.member(&id) = simulator::fleet(pipelines);
                }
                let config = format!(
                    "{budget}organization:\n  role_name: codepipeline-exporter\n  regions: [us-east-1, eu-west-1]\n  exclude: {{ accounts: [\"{}\"] }}\n  codeconnections:\n    discover: false\n",
                    simulator::ACCOUNT_ID
                );
                (simulator, config)
            }
            Shape::Estate { accounts, busy, pipelines } => {
                let simulator = Simulator::start(simulator::World::default()).await.expect("simulator");
                let root = simulator.organization().root.clone();
                simulator.organization().accounts.clear();
                for a in 0..accounts {
                    let id = format!("{:012}", 300_000_000_000u64 + a as u64);
                    simulator.organization().add_account(&id, &format!("member-{a:04}"), &root);
                    let mut world = if a < busy { simulator::fleet(pipelines) } else { simulator::World::default() };
                    world.regions = Some([ESTATE_REGIONS[0].to_string()].into());
                    *simulator.member(&id) = world;
                }
                // Every default, the request budget's and CodeConnections' included.
                let config = format!(
                    "interval: {INTERVAL}s\norganization:\n  role_name: codepipeline-exporter\n  regions: [{}]\n",
                    ESTATE_REGIONS.join(", ")
                );
                (simulator, config)
            }
        }
    }
}

/// Starts the exporter with `config` and `env` against `simulator`, and waits until it is ready.
async fn spawn(simulator: &Simulator, config: &std::path::Path, env: &[(&str, String)]) -> (Process, std::net::SocketAddr) {
    spawn_with(simulator, config, env, &[]).await
}

/// [`spawn`], with more arguments for the exporter.
async fn spawn_with(
    simulator: &Simulator,
    config: &std::path::Path,
    env: &[(&str, String)],
    args: &[String],
) -> (Process, std::net::SocketAddr) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    // A profiler may run the exporter: `SCRAPE_BENCH_WRAPPER=heaptrack` records its heap.
    let mut command = match std::env::var("SCRAPE_BENCH_WRAPPER") {
        Ok(wrapper) if !wrapper.is_empty() => {
            let mut command = Command::new(wrapper);
            command.arg(env!("CARGO_BIN_EXE_codepipeline-exporter"));
            command
        }
        _ => Command::new(env!("CARGO_BIN_EXE_codepipeline-exporter")),
    };
    command.envs(env.iter().map(|(k, v)| (*k, v.as_str())));
    let process = Process {
        child: command
            .args(["--config.file", config.to_str().unwrap(), "--web.listen-address", &addr.to_string(), "--log.level", "error"])
            .args(args)
            .env("AWS_ENDPOINT_URL", simulator.endpoint_url())
            .env("AWS_ACCESS_KEY_ID", "AKIDBENCH")
            .env("AWS_SECRET_ACCESS_KEY", "bench")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .stdout(Stdio::null())
            .spawn()
            .expect("the exporter starts"),
    };
    loop {
        if let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await {
            stream.write_all(b"GET /-/ready HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n").await.unwrap();
            let mut answer = String::new();
            let _ = stream.read_to_string(&mut answer).await;
            if answer.starts_with("HTTP/1.1 200") {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (process, addr)
}

/// The CPU of one push of the CI/CD metrics of `pipelines` that each ended a run: an exporter that
/// polls every hour (its runs in progress every second until they end) pushes every second, and
/// nothing else runs once its runs are read.
async fn push_cost(simulator: &Simulator, pipelines: usize, dir: &std::path::Path) {
    let config = dir.join("push.yaml");
    std::fs::write(
        &config,
        "interval: 1h\nactive_interval: 1s\ndiscovery_interval: 1h\nrequests_per_second: 100000\nburst: 100000\nmax_concurrent_requests: 32\naccounts:\n  - name: bench\n    regions: [us-east-1]\n    codeconnections:\n      discover: false\n",
    )
    .unwrap();
    set_runs(simulator, pipelines, "push", "InProgress");
    let received = std::sync::Arc::new(Received::default());
    let endpoint = format!("http://{}/v1/metrics", otlp_sink_counting(received.clone()));
    let env = [("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", endpoint), ("OTEL_METRIC_EXPORT_INTERVAL", "1000".to_string())];
    let (process, _) = spawn(simulator, &config, &env).await;
    // Seen running at the first poll, the runs end; the next poll reads them, and polling stops.
    set_runs(simulator, pipelines, "push", "Succeeded");
    tokio::time::sleep(Duration::from_secs(15)).await;
    let load = std::sync::atomic::Ordering::Relaxed;
    let (cpu, exports, bytes) = (process.cpu_seconds(), received.exports.load(load), received.bytes.load(load));
    tokio::time::sleep(Duration::from_secs(20)).await;
    let pushes = received.exports.load(load) - exports;
    let per_push = (process.cpu_seconds() - cpu) / pushes.max(1) as f64;
    let size = (received.bytes.load(load) - bytes) / pushes.max(1);
    println!(
        "  push of the CI/CD metrics: CPU {:.1} ms per push of {pipelines} pipelines ({size} bytes of protobuf, {pushes} pushes measured)",
        per_push * 1000.0
    );
}

/// What [`bench`] measured that a later run is compared with: resident memory after the poll
/// cycle, in MiB, and the series about AWS.
struct Measured {
    rss: f64,
    series: std::collections::BTreeSet<String>,
}

/// The series of a text body whose family starts with `aws_`, without their values.
fn aws_series(body: &[u8]) -> std::collections::BTreeSet<String> {
    String::from_utf8_lossy(body)
        .lines()
        .filter(|l| l.starts_with("aws_"))
        .filter_map(|l| l.rsplit_once(' ').map(|(series, _)| series.to_string()))
        .collect()
}

async fn bench(shape: Shape, traces: bool, push: bool) -> Measured {
    let pipelines = shape.pipelines();
    let (simulator, yaml) = shape.start().await;
    let dir = std::env::temp_dir().join(format!("codepipeline-exporter-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("config.yaml");
    std::fs::write(&config, yaml).unwrap();
    let started = Instant::now();
    let mut env = Vec::new();
    if traces {
        env.push(("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", format!("http://{}/v1/traces", otlp_sink())));
    }
    if push {
        env.push(("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", format!("http://{}/v1/metrics", otlp_sink())));
        env.push(("OTEL_METRIC_EXPORT_INTERVAL", (INTERVAL * 1000).to_string()));
    }
    let (process, addr) = spawn(&simulator, &config, &env).await;
    let ready = started.elapsed();
    if traces || push {
        end_runs(&simulator, pipelines);
    }

    // One poll cycle with nothing else going on: its CPU, and the AWS calls it makes. Each target
    // polls again one interval ±10 % after its first poll, so a window of one interval starting
    // half an interval after the first round holds exactly one poll of each.
    tokio::time::sleep(Duration::from_secs(INTERVAL / 2)).await;
    let (cpu, calls) = (process.cpu_seconds(), simulator.total_calls());
    tokio::time::sleep(Duration::from_secs(INTERVAL)).await;
    let cycle_cpu = process.cpu_seconds() - cpu;
    let calls_per_pipeline_hour = (simulator.total_calls() - calls) as f64 / pipelines as f64 * 3600.0 / INTERVAL as f64;

    let (idle_rss, idle_peak) = process.memory();
    let body = Scraper::connect(addr, false, true).scrape().to_vec();
    let series = body.split(|b| *b == b'\n').filter(|l| !l.is_empty() && l[0] != b'#').count();
    let exemplars = body.split(|b| *b == b'\n').filter(|l| l.windows(11).any(|w| w == b"# {trace_id")).count();
    let gzip_openmetrics = Scraper::connect(addr, true, true).scrape().to_vec();
    let gzip_text = Scraper::connect(addr, true, false).scrape().to_vec();

    let mut rows = Vec::new();
    let mut gzip_rss = 0.0;
    for (clients, gzip, openmetrics) in
        [(1, true, true), (32, true, true), (1, true, false), (32, true, false), (1, false, true), (32, false, true)]
    {
        let cpu = process.cpu_seconds();
        let wall = Instant::now();
        let latencies = tokio::task::spawn_blocking(move || load(addr, clients, LOAD, gzip, openmetrics)).await.unwrap();
        let elapsed = wall.elapsed().as_secs_f64();
        let per_scrape = (process.cpu_seconds() - cpu) / latencies.len() as f64;
        rows.push(format!(
            "  {clients:>2} client(s), {:<11} {:<8}: p50 {:>7.2} ms, p99 {:>7.2} ms, CPU {:.2} ms/scrape, {:.0} scrapes/s",
            if openmetrics { "OpenMetrics" } else { "text" },
            if gzip { "gzip" } else { "identity" },
            percentile(&latencies, 0.5).as_secs_f64() * 1000.0,
            percentile(&latencies, 0.99).as_secs_f64() * 1000.0,
            per_scrape * 1000.0,
            latencies.len() as f64 / elapsed
        ));
        if gzip && clients == 32 {
            gzip_rss = process.memory().0;
        }
    }
    let (rss, peak) = process.memory();
    println!(
        "{pipelines} pipelines{}{}: first complete exposition after {:.2} s; {series} series, {exemplars} with an exemplar, {:.1} MB ({:.2} MB gzip OpenMetrics, {:.2} MB gzip text)",
        match shape {
            Shape::Account(_) => String::new(),
            Shape::Organization { accounts, pipelines } =>
                format!(" in an organization ({accounts} accounts × {ORGANIZATION_REGIONS} regions × {pipelines})"),
            Shape::Estate { accounts, busy, pipelines } => format!(
                " in an estate ({accounts} accounts × {} regions, {busy} with {pipelines} pipelines in one; {} scopes)",
                ESTATE_REGIONS.len(),
                shape.scopes()
            ),
        },
        match (traces, push) {
            (true, _) => ", every one ending a run, with traces",
            (false, true) => ", every one ending a run, pushing the CI/CD metrics every 60 s",
            (false, false) => "",
        },
        ready.as_secs_f64(),
        body.len() as f64 / 1e6,
        gzip_openmetrics.len() as f64 / 1e6,
        gzip_text.len() as f64 / 1e6
    );
    println!(
        "  resident memory: {idle_rss:.0} MiB after a poll cycle (peak so far {idle_peak:.0} MiB), {gzip_rss:.0} MiB after the gzip scrapes, {rss:.0} MiB after the uncompressed ones; peak {peak:.0} MiB"
    );
    println!(
        "  CPU {cycle_cpu:.2} s per poll cycle; {calls_per_pipeline_hour:.0} AWS calls per pipeline-hour (interval {INTERVAL} s)"
    );
    for row in rows {
        println!("{row}");
    }
    drop(process);

    // The floor this machine puts under those figures: the same bodies, gzip and uncompressed,
    // sent by a server that does nothing else, to the same scrapers.
    for (format, gzip, body) in
        [("OpenMetrics", true, &gzip_openmetrics), ("text", true, &gzip_text), ("OpenMetrics", false, &body)]
    {
        for clients in [1, 32] {
            let floor = copy_server(body.clone(), gzip, clients);
            let latencies = tokio::task::spawn_blocking(move || load(floor, clients, LOAD, gzip, true)).await.unwrap();
            println!(
                "  {clients:>2} client(s), {format:<11} {:<8} copy floor: p50 {:>7.2} ms, p99 {:>7.2} ms",
                if gzip { "gzip" } else { "identity" },
                percentile(&latencies, 0.5).as_secs_f64() * 1000.0,
                percentile(&latencies, 0.99).as_secs_f64() * 1000.0,
            );
        }
    }
    if push {
        push_cost(&simulator, pipelines, &dir).await;
    }
    let _ = std::fs::remove_dir_all(&dir);
    Measured { rss: idle_rss, series: aws_series(&body) }
}

/// The estate on `shards` replicas: time until every pipeline is on one of them, each replica's
/// memory against one replica's (`whole`), and that they divide it exactly.
async fn bench_shards(shape: Shape, shards: u32, whole: &Measured) {
    let (simulator, yaml) = shape.start().await;
    let dir = std::env::temp_dir().join(format!("codepipeline-exporter-bench-shards-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("config.yaml");
    std::fs::write(&config, yaml).unwrap();
    let started = Instant::now();
    let mut replicas = Vec::new();
    for ordinal in 0..shards {
        let args = ["--shard".to_string(), ordinal.to_string(), "--total-shards".to_string(), shards.to_string()];
        replicas.push(spawn_with(&simulator, &config, &[], &args).await);
    }
    let ready = started.elapsed();
    tokio::time::sleep(Duration::from_secs(INTERVAL / 2 + INTERVAL)).await;
    let mut union = std::collections::BTreeSet::new();
    let mut twice = 0;
    let mut rows = Vec::new();
    for (ordinal, (process, addr)) in replicas.iter().enumerate() {
        let (rss, peak) = process.memory();
        let series = aws_series(Scraper::connect(*addr, false, false).scrape());
        let pipelines = series.iter().filter(|s| s.starts_with("aws_codepipeline_pipeline_info{")).count();
        rows.push(format!(
            "  replica {ordinal}: {pipelines} pipelines, {} series; resident {rss:.0} MiB ({:.2} of one replica's), peak {peak:.0} MiB",
            series.len(),
            rss / whole.rss
        ));
        for s in series {
            if !union.insert(s) {
                twice += 1;
            }
        }
    }
    println!(
        "{} pipelines on {shards} replicas: all ready after {:.1} s; {} series in all, {twice} on two replicas, union {} one replica's",
        shape.pipelines(),
        ready.as_secs_f64(),
        union.len(),
        if union == whole.series { "equal to" } else { "DIFFERENT from" }
    );
    for row in rows {
        println!("{row}");
    }
    println!(
        "  discovery calls for {} scopes, all replicas together: ListPipelines {}, ListConnections {}, ListHosts {} (each scope's first round only)",
        shape.scopes(),
        simulator.calls("ListPipelines"),
        simulator.calls("ListConnections"),
        simulator.calls("ListHosts")
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let shards: Option<u32> =
        args.iter().position(|a| a == "--shards").and_then(|i| args.get(i + 1)).and_then(|n| n.parse().ok());
    let mut shapes: Vec<Shape> =
        args.iter().filter_map(|a| a.parse().ok()).filter(|n| Some(*n as u32) != shards).map(Shape::Account).collect();
    let organization = args.iter().any(|a| a == "organization");
    if organization {
        shapes.push(ORGANIZATION);
    }
    // `estate` alone runs the estate without the organization shape before it.
    let estate = organization || args.iter().any(|a| a == "estate");
    let all = shapes.is_empty() && !estate;
    let shapes =
        if all { vec![Shape::Account(1000), Shape::Account(5000), Shape::Account(10_000), ORGANIZATION] } else { shapes };
    let traces = args.iter().any(|a| a == "traces");
    let push = args.iter().any(|a| a == "push");
    for shape in shapes {
        bench(shape, traces, push).await;
    }
    if estate || all {
        let whole = bench(ESTATE, false, false).await;
        let Shape::Estate { busy, pipelines, .. } = ESTATE else { unreachable!() };
        let busy_only = Shape::Estate { accounts: busy, busy, pipelines };
        let without_empty = bench(busy_only, false, false).await;
        let empty = (ESTATE.scopes() - busy_only.scopes()) as f64;
        println!(
            "  memory per empty scope: {:.1} KiB ({:.0} MiB with {} scopes, {:.0} MiB with {})",
            (whole.rss - without_empty.rss) * 1024.0 / empty,
            whole.rss,
            ESTATE.scopes(),
            without_empty.rss,
            busy_only.scopes()
        );
        if let Some(shards) = shards {
            bench_shards(ESTATE, shards, &whole).await;
        }
    }
}
