//! The hardened endpoint: TLS (also mutual), basic authentication and headers from
//! `--web.config.file`, exercised with a real client (curl).

mod common;

use std::path::Path;
use std::process::Command;

use codepipeline_exporter::exporter::Options;
use codepipeline_exporter::simulator::{SimPipeline, Simulator, World};
use common::process::tool;
use common::start_exporter_unthrottled_with;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};

const CONFIG: &str = "interval: 1h\naccounts:\n  - name: test\n    regions: [us-east-1]\n";

/// A CA, a server certificate for localhost signed by it, and a client certificate.
fn pki(dir: &Path) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issue = |names: Vec<String>, file: &str| {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(names).unwrap().signed_by(&key, &ca_cert, &ca_key).unwrap();
        std::fs::write(dir.join(format!("{file}.pem")), cert.pem()).unwrap();
        std::fs::write(dir.join(format!("{file}.key")), key.serialize_pem()).unwrap();
    };
    issue(vec!["localhost".into(), "127.0.0.1".into()], "server");
    issue(vec!["scraper".into()], "client");
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).unwrap();
}

async fn exporter_with(dir: &Path, web: &str) -> (codepipeline_exporter::exporter::Running, Simulator) {
    let mut world = World::default();
    world.pipelines.insert("app".into(), SimPipeline::new("app", &[("Source", &["Source"])]));
    let simulator = Simulator::start(world).await.unwrap();
    let path = dir.join("web.yml");
    std::fs::write(&path, web).unwrap();
    let exporter =
        start_exporter_unthrottled_with(&simulator, CONFIG, Options { web_config_path: Some(path), ..Options::default() }).await;
    (exporter, simulator)
}

/// curl's status code for a URL, with extra arguments; 0 when the connection failed.
fn curl(args: &[&str], url: &str) -> (u16, String) {
    let output = Command::new(tool("curl"))
        .args(["-s", "-o", "/dev/null", "-D", "-", "-w", "%{http_code}"])
        .args(args)
        .arg(url)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let code = text.lines().last().and_then(|l| l.trim().parse().ok()).unwrap_or(0);
    (code, text)
}

fn hash(password: &str) -> String {
    bcrypt::hash(password, 4).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_basic_auth_with_a_real_client() {
    let dir = tempfile::tempdir().unwrap();
    pki(dir.path());
    let web = format!(
        "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n  min_version: TLS12\nbasic_auth_users:\n  prometheus: {}\nhttp_server_config:\n  headers:\n    Strict-Transport-Security: max-age=31536000\n",
        hash("s3cret")
    );
    let (exporter, _simulator) = exporter_with(dir.path(), &web).await;
    let url = format!("https://localhost:{}/metrics", exporter.addr.port());
    let ca = dir.path().join("ca.pem").to_string_lossy().into_owned();
    let result = tokio::task::spawn_blocking(move || {
        let ca = ca.as_str();
        let ok = curl(&["--cacert", ca, "-u", "prometheus:s3cret"], &url);
        let again = curl(&["--cacert", ca, "-u", "prometheus:s3cret"], &url);
        let wrong = curl(&["--cacert", ca, "-u", "prometheus:wrong"], &url);
        let unknown = curl(&["--cacert", ca, "-u", "nobody:s3cret"], &url);
        let missing = curl(&["--cacert", ca], &url);
        let plain = curl(&["-u", "prometheus:s3cret"], &url.replace("https://", "http://"));
        let untrusted = curl(&["-u", "prometheus:s3cret"], &url);
        (ok, again, wrong, unknown, missing, plain, untrusted)
    })
    .await
    .unwrap();
    let (ok, again, wrong, unknown, missing, plain, untrusted) = result;
    assert_eq!(ok.0, 200, "{}", ok.1);
    assert!(ok.1.to_lowercase().contains("strict-transport-security: max-age=31536000"), "{}", ok.1);
    assert_eq!(again.0, 200);
    for (case, (code, head)) in [("wrong password", wrong), ("unknown user", unknown), ("no credentials", missing)] {
        assert_eq!(code, 401, "{case}: {head}");
        assert!(head.to_lowercase().contains("www-authenticate: basic realm=\"codepipeline-exporter\""), "{case}: {head}");
    }
    assert_eq!(plain.0, 0, "plain HTTP gets no answer from a TLS endpoint");
    assert_eq!(untrusted.0, 0, "a client that does not trust the certificate gives up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_handshake_is_dropped_without_disturbing_others() {
    let dir = tempfile::tempdir().unwrap();
    pki(dir.path());
    let (exporter, _simulator) =
        exporter_with(dir.path(), "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n").await;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    // Garbage instead of a ClientHello, and a connection that never says anything.
    let mut garbage = tokio::net::TcpStream::connect(exporter.addr).await.unwrap();
    garbage.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").await.unwrap();
    let _silent = tokio::net::TcpStream::connect(exporter.addr).await.unwrap();
    let url = format!("https://localhost:{}/metrics", exporter.addr.port());
    let ca = dir.path().join("ca.pem").to_string_lossy().into_owned();
    let (code, _) = tokio::task::spawn_blocking(move || curl(&["--cacert", &ca], &url)).await.unwrap();
    assert_eq!(code, 200);
    let mut rest = Vec::new();
    let read = tokio::time::timeout(std::time::Duration::from_secs(5), garbage.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "the bad connection is closed");
    assert!(!String::from_utf8_lossy(&rest).contains("HTTP/1.1 200"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_requires_a_client_certificate_from_the_ca() {
    let dir = tempfile::tempdir().unwrap();
    pki(dir.path());
    let web = "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n";
    let (exporter, _simulator) = exporter_with(dir.path(), web).await;
    let url = format!("https://localhost:{}/metrics", exporter.addr.port());
    let d = dir.path().to_path_buf();
    let (with, without) = tokio::task::spawn_blocking(move || {
        let file = |f: &str| d.join(f).to_string_lossy().into_owned();
        let with = curl(&["--cacert", &file("ca.pem"), "--cert", &file("client.pem"), "--key", &file("client.key")], &url);
        let without = curl(&["--cacert", &file("ca.pem")], &url);
        (with, without)
    })
    .await
    .unwrap();
    assert_eq!(with.0, 200, "{}", with.1);
    assert_eq!(without.0, 0, "no client certificate, no connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_configuration_is_validated_at_start_and_on_reload() {
    let dir = tempfile::tempdir().unwrap();
    pki(dir.path());
    let path = dir.path().join("web.yml");
    let check = |text: &str| {
        std::fs::write(&path, text).unwrap();
        codepipeline_exporter::webconfig::WebConfig::load(&path).map(|_| ()).map_err(|e| e.to_string())
    };
    let name = path.display().to_string();
    assert_eq!(check("tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n"), Ok(()));
    assert_eq!(
        check("tls_server_config:\n  certfile: server.pem\n"),
        Err(format!(
            "{name}:2:3: unknown field `certfile`, expected one of cert_file, key_file, client_auth_type, client_ca_file, min_version, max_version"
        ))
    );
    assert_eq!(
        check("tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n  min_version: TLS10\n"),
        Err(format!("{name}: tls_server_config.min_version \"TLS10\": TLS12 or TLS13 (older versions are not offered)"))
    );
    assert!(
        check("tls_server_config:\n  cert_file: missing.pem\n  key_file: server.key\n")
            .unwrap_err()
            .starts_with(&format!("{name}: tls_server_config.cert_file "))
    );
    assert_eq!(
        check("basic_auth_users:\n  admin: hunter2\n"),
        Err(format!("{name}: basic_auth_users: the password of \"admin\" is not a bcrypt hash"))
    );
    assert_eq!(
        check("http_server_config:\n  headers:\n    Set-Cookie: x=1\n"),
        Err(format!(
            "{name}: http_server_config.headers: \"Set-Cookie\" cannot be set; allowed: Strict-Transport-Security, X-Content-Type-Options, X-Frame-Options, X-XSS-Protection, Content-Security-Policy"
        ))
    );

    // On reload: a bad file keeps the running web configuration; a good one takes over.
    let (exporter, _simulator) = exporter_with(dir.path(), &format!("basic_auth_users:\n  prometheus: {}\n", hash("one"))).await;
    std::fs::write(dir.path().join("web.yml"), "basic_auth_users:\n  prometheus: plaintext\n").unwrap();
    assert!(exporter.reloader.reload().await.unwrap_err().contains("is not a bcrypt hash"));
    let auth = |user: &str| format!("Basic {}", base64(user));
    let status = |header: String| {
        let addr = exporter.addr;
        async move { common::request(addr, "GET", "/metrics", &[("Authorization", &header)]).await.status }
    };
    assert_eq!(status(auth("prometheus:one")).await, 200);
    std::fs::write(dir.path().join("web.yml"), format!("basic_auth_users:\n  prometheus: {}\n", hash("two"))).unwrap();
    assert_eq!(exporter.reloader.reload().await, Ok(()));
    assert_eq!(status(auth("prometheus:one")).await, 401);
    assert_eq!(status(auth("prometheus:two")).await, 200);
}

fn base64(text: &str) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in text.as_bytes().chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
