//! The demo's exposition as the real Prometheus tools see it: `promtool check metrics` finds
//! nothing to report, and a real Prometheus server scrapes it with `up == 1`.

mod common;

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::process::{Exporter, tool};
use common::request;

fn ready_demo() -> (Exporter, tokio::runtime::Runtime) {
    let exporter = Exporter::start(&["--demo"]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(20);
        while request(exporter.addr, "GET", "/-/ready", &[]).await.status != 200 {
            assert!(Instant::now() < deadline, "the demo is not ready after 20 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    (exporter, runtime)
}

#[test]
fn promtool_check_metrics_reports_nothing() {
    let promtool = tool("promtool");
    let (exporter, runtime) = ready_demo();
    let body = runtime.block_on(request(exporter.addr, "GET", "/metrics", &[])).body;
    assert!(body.contains("aws_codepipeline_stage_status{"), "the demo exposes pipeline series");
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(body.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    let report = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert_eq!(report, "", "promtool check metrics reported problems");
    assert!(output.status.success());
}

#[test]
fn a_real_prometheus_scrapes_the_demo_with_up_1() {
    let prometheus = tool("prometheus");
    let (exporter, runtime) = ready_demo();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: codepipeline\n    static_configs:\n      - targets: ['{}']\n",
            exporter.addr
        ),
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut server = Command::new(prometheus)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let result = runtime.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(stream) = tokio::net::TcpStream::connect(addr).await {
                drop(stream);
                let response = request(addr, "GET", "/api/v1/query?query=up%7Bjob%3D%22codepipeline%22%7D", &[]).await;
                let stages = request(addr, "GET", "/api/v1/query?query=count(aws_codepipeline_stage_status)", &[]).await;
                if response.body.contains("\"value\":[") && stages.body.contains("\"value\":[") {
                    return (response.body, stages.body);
                }
            }
            if Instant::now() > deadline {
                return (String::from("timed out"), String::new());
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    });
    let _ = server.kill();
    let _ = server.wait();
    let (up, stages) = result;
    assert!(up.contains("\"value\":[") && up.ends_with(",\"1\"]}]}}"), "up is not 1: {up}");
    // The demo has four pipelines of 3 stages and two of 4: 20 stages of 7 states each.
    assert!(stages.ends_with(",\"140\"]}]}}"), "unexpected stage series count: {stages}");
}
