//! The binary: flags, configuration check, HTTP endpoints and shutdown.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::process::Exporter;
use common::request;

fn exporter() -> Command {
    Command::new(env!("CARGO_BIN_EXE_codepipeline-exporter"))
}

#[test]
fn version_is_printed() {
    let output = exporter().arg("--version").output().unwrap();
    assert!(output.status.success());
    assert_eq!(String::from_utf8_lossy(&output.stdout), format!("codepipeline-exporter {}\n", env!("CARGO_PKG_VERSION")));
}

#[test]
fn config_check_prints_the_effective_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("exporter.yaml");
    std::fs::write(&path, "interval: 90s\naccounts:\n  - name: prod\n    external_id: hush\n    regions: [eu-west-1]\n").unwrap();
    let output = exporter().args(["--config.check", "--config.file"]).arg(&path).output().unwrap();
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "interval: 1m30s\nactive_interval: 15s\ndiscovery_interval: 5m\nrequest_timeout: 10s\nmax_concurrent_requests: 4\nrequests_per_second: 5.0\nburst: 10\nmetrics:\n  include: []\n  exclude: []\n  state_sets: full\naccounts:\n- name: prod\n  external_id: <secret>\n  regions:\n  - eu-west-1\n  codepipeline:\n    discover: true\n    executions: true\n    build_phases: false\n    include: []\n    exclude: []\n    pipelines: []\n  codeconnections:\n    discover: true\n    repository_syncs: []\n    resource_syncs: true\n    connections: true\n    blockers: true\n    enabled: true\n"
    );
}

#[test]
fn an_invalid_configuration_stops_start_up_with_its_location() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(&path, "accounts:\n  - name: prod\n    codepipeline:\n      include: ['[']\n").unwrap();
    for extra in [&["--config.check"][..], &[]] {
        let output = exporter().args(extra).arg("--config.file").arg(&path).output().unwrap();
        assert_eq!(output.status.code(), Some(1));
        assert_eq!(
            String::from_utf8_lossy(&output.stderr),
            format!("error: {}:4:17: invalid regex \"[\": unclosed character class\n", path.display())
        );
    }
}

#[test]
fn endpoints_answer_and_sigterm_exits_cleanly() {
    let mut exporter = Exporter::start(&["--demo"]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let addr = exporter.addr;
        let landing = request(addr, "GET", "/", &[]).await;
        assert_eq!(landing.status, 200);
        assert_eq!(landing.header("content-type"), Some("text/html; charset=utf-8"));
        assert!(landing.body.contains("<a href=\"/metrics\">Metrics</a>"));
        assert!(landing.body.contains("<a href=\"/runbook\">Runbook</a>"));
        // Where every alert's runbook_url points by default: the runbook of this version.
        let runbook = request(addr, "GET", "/runbook", &[]).await;
        assert_eq!((runbook.status, runbook.header("content-type")), (200, Some("text/html; charset=utf-8")));
        assert!(runbook.body.contains("<h2 id=\"codepipelinestagefailed\">CodePipelineStageFailed</h2>"));
        assert!(runbook.body.contains("<h2 id=\"codepipelineexporterdown\">CodePipelineExporterDown</h2>"));
        assert_eq!(request(addr, "GET", "/-/healthy", &[]).await.status, 200);
        assert_eq!(request(addr, "GET", "/nope", &[]).await.status, 404);
        assert_eq!(request(addr, "POST", "/metrics", &[]).await.status, 405);

        let deadline = Instant::now() + Duration::from_secs(20);
        while request(addr, "GET", "/-/ready", &[]).await.status != 200 {
            assert!(Instant::now() < deadline, "not ready after 20 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        let text = request(addr, "GET", "/metrics", &[]).await;
        assert_eq!(text.header("content-type"), Some("text/plain; version=0.0.4; charset=utf-8"));
        assert!(text.body.contains("# TYPE aws_codepipeline_stage_executions_total counter\n"));
        assert!(!text.body.contains("# EOF"));

        let accept = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        let openmetrics = request(addr, "GET", "/metrics", &[("Accept", accept)]).await;
        assert_eq!(openmetrics.header("content-type"), Some("application/openmetrics-text; version=1.0.0; charset=utf-8"));
        assert!(openmetrics.body.contains("# TYPE aws_codepipeline_stage_executions counter\n"));
        assert!(openmetrics.body.ends_with("# EOF\n"));
        assert!(openmetrics.body.contains("codepipeline_exporter_build_info{version=\""));

        // gzip: one standard member, holding the same exposition.
        let gzipped = request(addr, "GET", "/metrics", &[("Accept", accept), ("Accept-Encoding", "gzip")]).await;
        assert_eq!(gzipped.header("content-encoding"), Some("gzip"));
        assert_eq!(gzipped.header("vary"), Some("Accept, Accept-Encoding"));
        let mut unzipped = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&gzipped.bytes[..]), &mut unzipped).unwrap();
        assert!(unzipped.ends_with("# EOF\n"));
        let head = |text: &str| text.lines().take_while(|l| !l.starts_with("# HELP codepipeline_exporter_build_info")).map(str::to_string).collect::<Vec<_>>();
        assert_eq!(head(&unzipped).len(), head(&openmetrics.body).len(), "the same series, compressed");
    });
    let status = exporter.terminate(Duration::from_secs(5));
    assert_eq!(status.code(), Some(0));
}

#[test]
fn sighup_reloads_the_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("exporter.yaml");
    let settings = "requests_per_second: 100\nburst: 100\ninterval: 1s\n";
    std::fs::write(&path, format!("{settings}accounts:\n  - name: demo\n    regions: [us-east-1]\n")).unwrap();
    let mut exporter = Exporter::start(&["--demo", "--config.file", path.to_str().unwrap()]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    std::fs::write(&path, format!("{settings}accounts:\n  - name: demo\n    regions: [eu-west-1]\n")).unwrap();
    let status = Command::new("kill").args(["-HUP", &exporter.child.id().to_string()]).status().unwrap();
    assert!(status.success());
    runtime.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let body = request(exporter.addr, "GET", "/metrics", &[]).await.body;
            let moved = body.contains("region=\"eu-west-1\",kind=\"pipeline\"") && !body.contains("region=\"us-east-1\"");
            if moved && body.contains("codepipeline_exporter_config_last_reload_successful 1\n") {
                break;
            }
            assert!(Instant::now() < deadline, "SIGHUP did not move polling to eu-west-1:\n{body}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    assert_eq!(exporter.terminate(Duration::from_secs(5)).code(), Some(0));
}
