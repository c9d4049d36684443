//! A real Prometheus server, from Debian's `prometheus` package, for end-to-end tests.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::process::tool;
use super::request;

/// The Prometheus servers the end-to-end tests run against: Debian's 2.42 from the PATH, and
/// Prometheus 3 from Debian's unstable suite, which `scripts/test.sh` unpacks into `target/tools`
/// (or `PROMETHEUS3` names another binary).
pub fn servers() -> Vec<std::path::PathBuf> {
    let three = std::env::var_os("PROMETHEUS3")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/tools/prometheus3/usr/bin/prometheus"));
    assert!(
        three.is_file(),
        "Prometheus 3 is not at {}: run scripts/test.sh, which downloads Debian's package, or set PROMETHEUS3",
        three.display()
    );
    let servers = vec![tool("prometheus"), three];
    for (server, major) in servers.iter().zip(["2.", "3."]) {
        let output = Command::new(server).arg("--version").output().unwrap();
        let version = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
        assert!(version.contains(&format!("version {major}")), "{} is not Prometheus {major}x: {version}", server.display());
    }
    servers
}

/// A real Prometheus server scraping `target` every second, with the project's alerting rules.
pub struct Prometheus {
    child: std::process::Child,
    pub addr: std::net::SocketAddr,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts `server` (one of [`servers`]).
    pub fn start(server: &std::path::Path, target: std::net::SocketAddr) -> Prometheus {
        Prometheus::start_with(server, target, &[])
    }

    /// Starts `server` with further command-line arguments, such as feature flags.
    pub fn start_with(server: &std::path::Path, target: std::net::SocketAddr, args: &[&str]) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        let alerts = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/prometheus/alerts.yml");
        let recording = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/prometheus/recording.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {alerts}\n  - {recording}\nscrape_configs:\n  - job_name: codepipeline\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(server)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Prometheus { child, addr: format!("127.0.0.1:{port}").parse().unwrap(), _dir: dir }
    }

    /// GETs an API path, or `None` while the server is not up yet.
    pub async fn api(&self, path: &str) -> Option<serde_json::Value> {
        tokio::net::TcpStream::connect(self.addr).await.ok()?;
        serde_json::from_str(&request(self.addr, "GET", path, &[]).await.body).ok()
    }

    /// Polls `path` until `done` holds for its answer, for at most `seconds`.
    pub async fn wait(&self, path: &str, seconds: u64, done: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let mut last = serde_json::Value::Null;
        while Instant::now() < deadline {
            if let Some(answer) = self.api(path).await {
                if done(&answer) {
                    return answer;
                }
                last = answer;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        panic!("timed out waiting on {path}; last answer: {last}");
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The single value of an instant query's answer.
pub fn scalar(answer: &serde_json::Value) -> Option<String> {
    let result = answer["data"]["result"].as_array()?;
    (result.len() == 1).then(|| result[0]["value"][1].as_str().map(str::to_string)).flatten()
}

/// Fails on a series that appears twice in an exposition, which Prometheus refuses whole.
pub fn assert_no_duplicate_series(text: &str) {
    let mut seen = std::collections::BTreeSet::new();
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        let series = line.rsplit_once(' ').map_or(line, |(series, _)| series);
        assert!(seen.insert(series), "duplicate series {series}");
    }
}
