//! Memory per idle HTTP connection: the demo exporter as a separate process, its resident memory
//! before and after 1,000 keep-alive connections that each made one request and then wait, in
//! plain HTTP and in TLS. The figures size `--web.max-connections`.
//!
//!     cargo bench --bench connections

use std::io::{BufRead as _, BufReader};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{CertificateParams, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

const CONNECTIONS: usize = 1000;

/// A connection, plain or TLS.
trait Io: std::io::Read + std::io::Write {}
impl<T: std::io::Read + std::io::Write> Io for T {}

fn rss_kib(child: &Child) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).expect("procfs");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .expect("VmRSS")
}

/// Sends one request on `stream` and reads its whole (small) response.
fn request(stream: &mut dyn Io) {
    stream.write_all(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n").expect("write");
    let mut answer = [0u8; 512];
    let mut read = 0;
    while !answer[..read].ends_with(b"Healthy\n") {
        read += stream.read(&mut answer[read..]).expect("read");
    }
}

fn measure(tls: bool) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let key = KeyPair::generate().expect("key");
    let cert = CertificateParams::new(vec!["localhost".into()]).expect("params").self_signed(&key).expect("certificate");
    std::fs::write(dir.path().join("server.pem"), cert.pem()).expect("write");
    std::fs::write(dir.path().join("server.key"), key.serialize_pem()).expect("write");
    let web = dir.path().join("web.yml");
    std::fs::write(&web, "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n").expect("write");
    let mut command = Command::new(env!("CARGO_BIN_EXE_codepipeline-exporter"));
    command.args(["--demo", "--web.listen-address", "127.0.0.1:0", "--log.level", "error", "--web.max-connections", "2000"]);
    if tls {
        command.arg("--web.config.file").arg(&web);
    }
    let mut child = command.stdout(Stdio::piped()).spawn().expect("the exporter starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("address line");
    let addr: std::net::SocketAddr =
        line.split("http://").nth(1).and_then(|r| r.split('/').next()).and_then(|a| a.parse().ok()).expect("address");
    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from(cert.der().to_vec())).expect("root");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = Arc::new(
        ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth(),
    );
    let connect = || -> Box<dyn Io> {
        let tcp = TcpStream::connect(addr).expect("connect");
        if tls {
            let name = ServerName::try_from("localhost").expect("name");
            Box::new(StreamOwned::new(ClientConnection::new(config.clone(), name).expect("client"), tcp))
        } else {
            Box::new(tcp)
        }
    };
    // Warm up: the demo's first polls, and the server's first connections.
    std::thread::sleep(Duration::from_secs(5));
    for _ in 0..20 {
        request(&mut *connect());
    }
    std::thread::sleep(Duration::from_secs(1));
    let before = rss_kib(&child);
    let mut open = Vec::with_capacity(CONNECTIONS);
    for _ in 0..CONNECTIONS {
        let mut stream = connect();
        request(&mut *stream);
        open.push(stream);
    }
    std::thread::sleep(Duration::from_secs(2));
    let after = rss_kib(&child);
    println!(
        "{}: {CONNECTIONS} idle keep-alive connections: resident {before} KiB -> {after} KiB, {:.1} KiB each",
        if tls { "TLS  " } else { "plain" },
        (after.saturating_sub(before)) as f64 / CONNECTIONS as f64
    );
    drop(open);
    let _ = child.kill();
    let _ = child.wait();
}

fn main() {
    measure(false);
    measure(true);
}
