//! Shared test bed: the real exporter, polling the in-repo simulated AWS endpoint through the
//! real SDK clients, scraped over real HTTP.

#![allow(dead_code)]

pub mod heap;
pub mod kubernetes;
pub mod otlp;
pub mod process;
pub mod prometheus;
pub mod runbook;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use aws_credential_types::Credentials;
use codepipeline_exporter::aws::Overrides;
use codepipeline_exporter::config::Config;
use codepipeline_exporter::exporter::{self, Running};
use codepipeline_exporter::simulator::{Simulator, World};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// The request budget the `*_unthrottled` helpers give an exporter whose YAML sets none.
pub const UNTHROTTLED: &str = "requests_per_second: 10000\nburst: 10000\n";

pub struct Bed {
    pub simulator: Simulator,
    pub exporter: Running,
}

/// Starts a simulator holding `world` and an exporter configured by `yaml`.
pub async fn start_unthrottled(world: World, yaml: &str) -> Bed {
    let simulator = Simulator::start(world).await.expect("simulator starts");
    let exporter = start_exporter_unthrottled(&simulator, yaml).await;
    Bed { simulator, exporter }
}

/// Starts an exporter polling `simulator`. Tests poll every few hundred milliseconds, far faster
/// than the default request budget allows, so the budget is lifted (10,000 requests a second, as
/// [`UNTHROTTLED`] says) unless `yaml` sets one.
pub async fn start_exporter_unthrottled(simulator: &Simulator, yaml: &str) -> Running {
    start_exporter_unthrottled_from(simulator, yaml, None).await
}

/// [`start_exporter_unthrottled`], reloading from `path` (whose content should be `yaml`).
pub async fn start_exporter_unthrottled_from(simulator: &Simulator, yaml: &str, path: Option<std::path::PathBuf>) -> Running {
    start_exporter_unthrottled_with(simulator, yaml, exporter::Options { config_path: path, ..exporter::Options::default() })
        .await
}

/// [`start_exporter_unthrottled`] with `options`; their AWS overrides are replaced by the simulator's.
pub async fn start_exporter_unthrottled_with(simulator: &Simulator, yaml: &str, options: exporter::Options) -> Running {
    let yaml = if yaml.contains("requests_per_second") { yaml.to_string() } else { format!("{UNTHROTTLED}{yaml}") };
    let config = Config::parse(&yaml, Path::new("test.yaml")).expect("valid test configuration");
    let overrides = Overrides {
        endpoint_url: Some(simulator.endpoint_url()),
        credentials: Some(Credentials::new("AKIDTEST", "test-secret", None, None, "test")),
        ..Overrides::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    exporter::start(&config, exporter::Options { overrides, ..options }, listener).await.expect("exporter starts")
}

/// A raw HTTP/1.1 response.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// The body as sent, for compressed answers.
    pub bytes: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// Sends one request over a fresh connection and reads the whole response.
pub async fn request(addr: std::net::SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> HttpResponse {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.expect("read");
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("complete response");
    let head = String::from_utf8(raw[..split].to_vec()).expect("utf-8 headers");
    let body = &raw[split + 4..];
    let mut lines = head.lines();
    let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|s| s.parse().ok()).expect("status line");
    let headers =
        lines.filter_map(|l| l.split_once(':')).map(|(n, v)| (n.trim().to_string(), v.trim().to_string())).collect::<Vec<_>>();
    let bytes = if headers.iter().any(|(n, v)| n.eq_ignore_ascii_case("transfer-encoding") && v == "chunked") {
        dechunk(body)
    } else {
        body.to_vec()
    };
    HttpResponse { status, headers, body: String::from_utf8_lossy(&bytes).into_owned(), bytes }
}

fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line = body.windows(2).position(|w| w == b"\r\n").expect("chunk size");
        let size = usize::from_str_radix(std::str::from_utf8(&body[..line]).expect("ascii").trim(), 16).expect("hex chunk size");
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&body[line + 2..line + 2 + size]);
        body = &body[line + 2 + size + 2..];
    }
}

/// Scrapes `/metrics` in the text format.
pub async fn scrape(exporter: &Running) -> String {
    let response = request(exporter.addr, "GET", "/metrics", &[]).await;
    assert_eq!(response.status, 200);
    response.body
}

/// Every sample of a scrape, keyed by its series (`name{labels}` exactly as exposed).
pub fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').expect("sample line");
            (series.to_string(), value.parse::<f64>().expect("numeric value"))
        })
        .collect()
}

/// The samples of one metric, keyed by their series.
pub fn family(text: &str, name: &str) -> BTreeMap<String, f64> {
    samples(text).into_iter().filter(|(series, _)| series.split('{').next() == Some(name)).collect()
}

/// Scrapes until `done` holds for the samples, or fails after `timeout` showing the last scrape.
pub async fn wait_for(exporter: &Running, what: &str, done: impl Fn(&BTreeMap<String, f64>) -> bool) -> BTreeMap<String, f64> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = scrape(exporter).await;
        let samples = samples(&text);
        if done(&samples) {
            return samples;
        }
        if Instant::now() > deadline {
            panic!("timed out waiting for {what}; last scrape:\n{text}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The value of one series, if present.
pub fn value(samples: &BTreeMap<String, f64>, series: &str) -> Option<f64> {
    samples.get(series).copied()
}

/// `codepipeline_exporter_target_up` of a target of the account `test` in us-east-1, where most
/// tests poll.
pub fn target_up(kind: &str, name: &str) -> String {
    target_up_in("test", "us-east-1", kind, name)
}

/// `codepipeline_exporter_target_up` of a target of any account and region.
pub fn target_up_in(account: &str, region: &str, kind: &str, name: &str) -> String {
    format!("codepipeline_exporter_target_up{{account=\"{account}\",region=\"{region}\",kind=\"{kind}\",name=\"{name}\"}}")
}

/// The exporter's count of failed calls of `operation` with error `code`, if it has one.
pub fn error_count(samples: &BTreeMap<String, f64>, service: &str, operation: &str, code: &str) -> Option<f64> {
    value(
        samples,
        &format!(
            "codepipeline_exporter_aws_request_errors_total{{service=\"{service}\",operation=\"{operation}\",code=\"{code}\"}}"
        ),
    )
}

/// How many series of the metric `name` a scrape holds.
pub fn family_len(samples: &BTreeMap<String, f64>, name: &str) -> usize {
    samples.keys().filter(|k| k.split('{').next() == Some(name)).count()
}

/// Waits until the simulator has answered `more` calls of `operation` beyond those so far, which
/// is how a test lets polls happen without guessing at their timing.
pub async fn wait_for_calls(simulator: &Simulator, operation: &str, more: u64) {
    let target = simulator.calls(operation) + more;
    let deadline = Instant::now() + Duration::from_secs(20);
    while simulator.calls(operation) < target {
        assert!(Instant::now() < deadline, "timed out waiting for {more} more {operation} calls");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// botocore's model of `service` (its directory name under botocore/data, such as
/// `codepipeline`), newest version, as `scripts/test.sh` installs botocore into `target/tools`:
/// the model AWS's own SDKs are generated from.
pub fn botocore_model(service: &str) -> serde_json::Value {
    use std::io::Read as _;
    let lib = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/tools/lib");
    let python = std::fs::read_dir(&lib)
        .unwrap_or_else(|e| panic!("{}: {e}; scripts/test.sh installs botocore there", lib.display()))
        .filter_map(Result::ok)
        .find(|entry| entry.file_name().to_string_lossy().starts_with("python"))
        .expect("a python directory in target/tools/lib");
    let data = python.path().join("site-packages/botocore/data").join(service);
    let version = std::fs::read_dir(&data)
        .unwrap_or_else(|e| panic!("{}: {e}; scripts/test.sh installs botocore", data.display()))
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .max()
        .unwrap();
    let mut json = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(version.join("service-2.json.gz")).unwrap())
        .read_to_string(&mut json)
        .unwrap();
    serde_json::from_str(&json).unwrap()
}
