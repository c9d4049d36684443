//! Scrapes that no client can starve. A flood of twice as many connections as the server's limit
//! (slowloris, idle keep-alive, slow readers; in plain HTTP and in TLS, where the flood also holds
//! stalled handshakes) runs against the exporter process while a well-behaved scraper makes one
//! gzip scrape a second with a 10 s timeout, as Prometheus does. Every scrape must succeed, the
//! 99th percentile latency stay under a second, and the exporter's memory grow by less than 64 MiB.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::process::Exporter;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

/// The exporter's connection limit in these tests; the flood opens twice as many.
const LIMIT: usize = 64;
const FLOOD: usize = 2 * LIMIT;
/// How long the scraper scrapes under each flood.
const SCRAPING: Duration = Duration::from_secs(20);

/// The floods run one at a time: each measures latency on a machine of two cores.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// How to reach the exporter: plain TCP, or TLS with a client that trusts its CA.
#[derive(Clone)]
struct Target {
    addr: std::net::SocketAddr,
    tls: Option<TlsConnector>,
}

impl Target {
    /// A connection ready for HTTP: connected, and for TLS, through the handshake.
    async fn connect(&self) -> std::io::Result<Box<dyn Io>> {
        let tcp = TcpStream::connect(self.addr).await?;
        tcp.set_nodelay(true)?;
        match &self.tls {
            None => Ok(Box::new(tcp)),
            Some(connector) => {
                let name = ServerName::try_from("localhost").expect("a valid name");
                Ok(Box::new(connector.connect(name, tcp).await?))
            }
        }
    }
}

/// A CA and a server certificate for localhost, and a web configuration serving TLS with them.
fn tls_files(dir: &Path) -> (std::path::PathBuf, TlsConnector) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "abuse test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".into()]).unwrap().signed_by(&key, &ca_cert, &ca_key).unwrap();
    std::fs::write(dir.join("server.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("server.key"), key.serialize_pem()).unwrap();
    let web = dir.join("web.yml");
    std::fs::write(&web, "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n").unwrap();
    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from(ca_cert.der().to_vec())).unwrap();
    let provider = Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    (web, TlsConnector::from(Arc::new(config)))
}

/// Reads one HTTP/1.1 response with a Content-Length body; its status and body length.
async fn read_response(io: &mut Box<dyn Io>) -> std::io::Result<(u16, usize)> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if io.read(&mut byte).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or(std::io::ErrorKind::InvalidData)?;
    let mut body = vec![0; length];
    io.read_exact(&mut body).await?;
    Ok((status, length))
}

/// One gzip scrape on a new connection, as Prometheus makes it; its latency.
async fn scrape(target: &Target) -> Result<Duration, String> {
    let started = Instant::now();
    let attempt = async {
        let mut io = target.connect().await.map_err(|e| format!("connect: {e}"))?;
        io.write_all(b"GET /metrics HTTP/1.1\r\nHost: exporter\r\nAccept-Encoding: gzip\r\nUser-Agent: Prometheus/3.5\r\n\r\n")
            .await
            .map_err(|e| format!("write: {e}"))?;
        let (status, length) = read_response(&mut io).await.map_err(|e| format!("read: {e}"))?;
        if status != 200 || length < 1000 {
            return Err(format!("status {status}, {length} bytes"));
        }
        Ok(started.elapsed())
    };
    tokio::time::timeout(Duration::from_secs(10), attempt).await.map_err(|_| "timed out after 10 s".to_string())?
}

#[derive(Clone, Copy, Debug)]
enum Abuse {
    /// Header bytes (for TLS, handshake bytes) trickled one at a time; reopened when dropped.
    Slowloris,
    /// One complete request, then silence; reopened when dropped.
    IdleKeepAlive,
    /// The uncompressed body asked for and read a kilobyte at a time; reopened when dropped.
    SlowReader,
}

/// One attacking connection, over and over until `stop`.
async fn attack(target: Target, abuse: Abuse, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        let _ = tokio::time::timeout(Duration::from_secs(30), attack_once(&target, abuse, &stop)).await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn attack_once(target: &Target, abuse: Abuse, stop: &AtomicBool) -> std::io::Result<()> {
    match abuse {
        Abuse::Slowloris => {
            let mut tcp = TcpStream::connect(target.addr).await?;
            // For TLS, the start of a ClientHello record that never ends: a stalled handshake.
            let bytes: &[u8] = if target.tls.is_some() {
                &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc]
            } else {
                b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaa"
            };
            for byte in bytes.iter().cycle() {
                if stop.load(Ordering::Relaxed) {
                    return Ok(());
                }
                tcp.write_all(&[*byte]).await?;
                tokio::time::sleep(Duration::from_millis(500)).await;
                // A closed connection shows as a failed write or a readable end of stream.
                let mut probe = [0u8; 64];
                if let Ok(read) = tokio::time::timeout(Duration::from_millis(1), tcp.read(&mut probe)).await
                    && read? == 0
                {
                    return Ok(());
                }
            }
            Ok(())
        }
        Abuse::IdleKeepAlive => {
            let mut io = target.connect().await?;
            io.write_all(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n").await?;
            read_response(&mut io).await?;
            // Silence until the server closes the connection.
            let mut rest = [0u8; 64];
            while !stop.load(Ordering::Relaxed) {
                if let Ok(read) = tokio::time::timeout(Duration::from_millis(200), io.read(&mut rest)).await
                    && read? == 0
                {
                    break;
                }
            }
            Ok(())
        }
        Abuse::SlowReader => {
            let mut io = target.connect().await?;
            io.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await?;
            let mut chunk = [0u8; 1024];
            while !stop.load(Ordering::Relaxed) {
                if io.read(&mut chunk).await? == 0 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Ok(())
        }
    }
}

/// Resident memory of a process, from procfs.
fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 =
        status.lines().find_map(|l| l.strip_prefix("VmRSS:")).unwrap().trim().trim_end_matches(" kB").trim().parse().unwrap();
    kib * 1024
}

/// The value of one series of the exporter's own metrics, if it has it.
async fn own_metric(target: &Target, series: &str) -> Option<f64> {
    let mut io = target.connect().await.ok()?;
    io.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.ok()?;
    let mut text = String::new();
    io.read_to_string(&mut text).await.ok();
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Starts the demo exporter with the connection limit (and TLS when `tls`), floods it with
/// `abuse`, and scrapes it meanwhile.
fn flood(abuse: Abuse, tls: bool) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let limit = LIMIT.to_string();
    let mut args = vec!["--demo", "--web.max-connections", &limit];
    let (web, connector) = tls_files(dir.path());
    let web = web.display().to_string();
    if tls {
        args.extend(["--web.config.file", &web]);
    }
    let exporter = Exporter::start(&args);
    let target = Target { addr: exporter.addr, tls: tls.then_some(connector) };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        // Ready, and past the first scrapes' allocations.
        let deadline = Instant::now() + Duration::from_secs(30);
        while scrape(&target).await.is_err() {
            assert!(Instant::now() < deadline, "the exporter does not answer");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        for _ in 0..3 {
            scrape(&target).await.unwrap();
        }
        let before = rss_bytes(exporter.child.id());
        let stop = Arc::new(AtomicBool::new(false));
        let attackers: Vec<_> = (0..FLOOD).map(|_| tokio::spawn(attack(target.clone(), abuse, stop.clone()))).collect();
        // Let the flood fill every slot before the first scrape.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let mut latencies = Vec::new();
        let mut failures = Vec::new();
        let mut peak = before;
        let until = Instant::now() + SCRAPING;
        while Instant::now() < until {
            let tick = Instant::now();
            match scrape(&target).await {
                Ok(latency) => latencies.push(latency),
                Err(err) => failures.push(err),
            }
            peak = peak.max(rss_bytes(exporter.child.id()));
            tokio::time::sleep(Duration::from_secs(1).saturating_sub(tick.elapsed())).await;
        }
        let mut evicted = Vec::new();
        for reason in ["header_timeout", "idle", "limit"] {
            let series = format!("codepipeline_exporter_http_connections_evicted_total{{reason=\"{reason}\"}}");
            evicted.push(own_metric(&target, &series).await);
        }
        let open = own_metric(&target, "codepipeline_exporter_http_connections").await;
        stop.store(true, Ordering::Relaxed);
        for attacker in attackers {
            attacker.abort();
        }
        latencies.sort();
        let p99 = latencies.get((latencies.len() * 99).div_ceil(100).saturating_sub(1)).copied();
        let median = latencies.get(latencies.len() / 2).copied();
        let grown = peak.saturating_sub(before);
        eprintln!(
            "{abuse:?} tls={tls}: {} scrapes, {} failed, median {median:?}, p99 {p99:?}, max {:?}; evicted (header_timeout, idle, limit) {evicted:?}; open {open:?}; RSS {} MiB → peak {} MiB",
            latencies.len() + failures.len(),
            failures.len(),
            latencies.last(),
            before >> 20,
            peak >> 20
        );
        assert!(failures.is_empty(), "{abuse:?} tls={tls}: failed scrapes: {failures:?}");
        let p99 = p99.expect("scrapes succeeded");
        assert!(latencies.len() >= 19, "{abuse:?} tls={tls}: only {} scrapes in {SCRAPING:?}", latencies.len());
        assert!(p99 < Duration::from_secs(1), "{abuse:?} tls={tls}: p99 {p99:?}");
        assert!(grown < 64 << 20, "{abuse:?} tls={tls}: memory grew by {} MiB", grown >> 20);
        // The exporter saw the flood: it made room by closing idle connections, and never held
        // more than its limit.
        let limit_evictions = evicted[2].expect("evictions are counted");
        assert!(limit_evictions >= FLOOD as f64, "{abuse:?} tls={tls}: only {limit_evictions} connections made room");
        // Slots free and fill again all the time: the flood keeps most of them taken, and never more.
        let open = open.expect("open connections are reported");
        assert!((LIMIT as f64 * 0.75..=LIMIT as f64).contains(&open), "{abuse:?} tls={tls}: {open} connections open");
    });
}

#[test]
fn slowloris_and_stalled_handshakes_cannot_starve_scrapes() {
    flood(Abuse::Slowloris, false);
    flood(Abuse::Slowloris, true);
}

#[test]
fn idle_keep_alive_connections_cannot_starve_scrapes() {
    flood(Abuse::IdleKeepAlive, false);
    flood(Abuse::IdleKeepAlive, true);
}

#[test]
fn slow_readers_cannot_starve_scrapes() {
    flood(Abuse::SlowReader, false);
    flood(Abuse::SlowReader, true);
}
