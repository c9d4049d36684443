//! The OTLP/HTTP receiver of the tests (tests/tools/otlp_receiver.py), which decodes traces and
//! metrics with opentelemetry-proto's reference classes.

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::request;

/// The test receiver, killed when dropped.
pub struct Receiver {
    child: Child,
    pub addr: SocketAddr,
}

impl Receiver {
    pub fn start() -> Receiver {
        let python = concat!(env!("CARGO_MANIFEST_DIR"), "/target/tools/bin/python");
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/tools/otlp_receiver.py");
        assert!(
            Command::new(python).args(["-c", "import opentelemetry.proto"]).output().is_ok_and(|o| o.status.success()),
            "opentelemetry-proto is not installed in target/tools: run scripts/test.sh, which installs it from PyPI"
        );
        let mut child = Command::new(python).arg(script).stdout(Stdio::piped()).spawn().expect("the receiver starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let port: u16 = line.trim().parse().unwrap_or_else(|_| panic!("no port in {line:?}"));
        Receiver { child, addr: format!("127.0.0.1:{port}").parse().unwrap() }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}/v1/traces", self.addr)
    }

    pub async fn received(&self) -> Value {
        serde_json::from_str(&request(self.addr, "GET", "/spans", &[]).await.body).unwrap()
    }

    pub async fn spans(&self) -> Vec<Value> {
        self.received().await["spans"].as_array().unwrap().clone()
    }

    pub async fn control(&self, query: &str) {
        assert_eq!(request(self.addr, "POST", &format!("/control?{query}"), &[]).await.status, 200);
    }

    /// Waits until `count` spans have arrived, and a moment more for any that should not.
    pub async fn wait_spans(&self, count: usize, seconds: u64) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(seconds);
        loop {
            let spans = self.spans().await;
            if spans.len() >= count {
                tokio::time::sleep(Duration::from_millis(600)).await;
                return self.spans().await;
            }
            assert!(Instant::now() < deadline, "{} of {count} spans after {seconds} s: {spans:#?}", spans.len());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Receiver {
    /// Every data point received, in arrival order.
    pub async fn points(&self) -> Vec<Value> {
        let received: Value = serde_json::from_str(&request(self.addr, "GET", "/points", &[]).await.body).unwrap();
        received["points"].as_array().unwrap().clone()
    }

    /// Waits until the data points received satisfy `done`, for `seconds` at most.
    pub async fn wait_points(&self, what: &str, seconds: u64, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(seconds);
        loop {
            let points = self.points().await;
            if done(&points) {
                return points;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not after {seconds} s, with {} points: {:#?}",
                points.len(),
                points.iter().rev().take(12).collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
