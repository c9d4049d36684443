//! Load and abuse: thousands of scrapes over 64 keep-alive connections while polling goes on, and
//! connections that never send a request, which must not keep others from being served.

mod common;

use std::time::Duration;

use codepipeline_exporter::simulator::{SimPipeline, Simulator, World, execution_id};
use common::heap::{Counting, kept_heap_bytes};
use common::{request, start_exporter_unthrottled, wait_for};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;

const CONNECTIONS: usize = 64;
const SCRAPES_PER_CONNECTION: usize = 50;

fn world() -> World {
    let mut world = World::default();
    for i in 0..100 {
        let mut pipeline = SimPipeline::new(
            &format!("pipeline-{i:03}"),
            &[("Source", &["Source"]), ("Build", &["Build", "Test"]), ("Deploy", &["Deploy"])],
        );
        // Polled every 2 s all the same (the interval), but with nothing running: a run in
        // progress is read anew at each poll, and what the exporter holds of it then varied by
        // up to 120 KB between identical bursts, which hid what the scrapes keep. Idle, the heap
        // kept after six bursts varied by 80 bytes.
        pipeline.stages[1].latest = Some((execution_id(&format!("e{i}")), "Succeeded".into()));
        world.pipelines.insert(pipeline.name.clone(), pipeline);
    }
    world
}

/// Scrapes `count` times over one keep-alive connection; returns the body sizes.
async fn scrape_repeatedly(addr: std::net::SocketAddr, count: usize, gzip: bool) -> Vec<usize> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let mut stream = BufReader::new(stream);
    let mut sizes = Vec::with_capacity(count);
    let encoding = if gzip { "Accept-Encoding: gzip\r\n" } else { "" };
    for _ in 0..count {
        stream
            .get_mut()
            .write_all(format!("GET /metrics HTTP/1.1\r\nHost: exporter\r\n{encoding}\r\n").as_bytes())
            .await
            .unwrap();
        let mut status = String::new();
        stream.read_line(&mut status).await.unwrap();
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
        let mut length = None;
        loop {
            let mut line = String::new();
            stream.read_line(&mut line).await.unwrap();
            if line == "\r\n" {
                break;
            }
            if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = value.trim().parse::<usize>().ok();
            }
        }
        let length = length.expect("the body has a length");
        let mut body = vec![0; length];
        stream.read_exact(&mut body).await.unwrap();
        sizes.push(length);
    }
    sizes
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The tests in this file run one at a time, so that one's allocations are not counted in the
/// other's measurement.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// How long the kept heap is read for: longer than the scrape test's 2 s poll interval, so that it
/// holds moments with no poll in flight. At a 500 ms interval, on a slower machine, 100 pipelines
/// always had some, and the least heap moved by 280 KB between identical bursts.
const KEPT_HEAP_WINDOW: Duration = Duration::from_millis(2500);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_concurrent_scrapes_while_polling_continues() {
    let _serial = SERIAL.lock().await;
    let simulator = Simulator::start(world()).await.unwrap();
    let exporter = start_exporter_unthrottled(
        &simulator,
        "interval: 2s\nactive_interval: 2s\naccounts:\n  - name: load\n    regions: [us-east-1]\n",
    )
    .await;
    wait_for(&exporter, "ready", |_| exporter.readiness.is_ready()).await;
    // Two first bursts warm up caches and buffers; the later ones must not grow the heap. One
    // burst was not always enough: on a loaded machine the heap once kept 150 KB more after the
    // second burst than after the first, and then not a byte more after the third.
    let mut rounds = Vec::new();
    for _ in 0..4 {
        let polls = simulator.calls("GetPipelineState");
        let tasks: Vec<_> = (0..CONNECTIONS)
            .map(|i| tokio::spawn(scrape_repeatedly(exporter.addr, SCRAPES_PER_CONNECTION, i % 2 == 0)))
            .collect();
        let mut scrapes = 0;
        for task in tasks {
            let sizes = task.await.expect("every scrape succeeds");
            assert!(sizes.iter().all(|&n| n > 10_000));
            scrapes += sizes.len();
        }
        assert_eq!(scrapes, CONNECTIONS * SCRAPES_PER_CONNECTION);
        assert!(simulator.calls("GetPipelineState") > polls, "polling went on during the load");
        rounds.push(kept_heap_bytes(KEPT_HEAP_WINDOW).await);
    }
    eprintln!("heap kept after each burst: {rounds:?}");
    // 6,400 scrapes after the warm-up: leaking even 10 bytes each would exceed this margin, while
    // the heap kept between bursts measured within 2 KiB of itself.
    assert!(
        rounds[3] <= rounds[1] + 64 * 1024,
        "the heap kept {} bytes after the second burst and {} after the fourth",
        rounds[1],
        rounds[3]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_do_not_keep_others_from_being_served() {
    let _serial = SERIAL.lock().await;
    let simulator = Simulator::start(world()).await.unwrap();
    let exporter =
        start_exporter_unthrottled(&simulator, "interval: 1h\naccounts:\n  - name: load\n    regions: [us-east-1]\n").await;
    wait_for(&exporter, "ready", |_| exporter.readiness.is_ready()).await;
    let mut idle = Vec::new();
    for _ in 0..300 {
        idle.push(TcpStream::connect(exporter.addr).await.unwrap());
    }
    // Half-sent requests too: headers that never end.
    for stream in idle.iter_mut().take(100) {
        stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: slow\r\n").await.unwrap();
    }
    for _ in 0..50 {
        let response =
            tokio::time::timeout(Duration::from_secs(5), request(exporter.addr, "GET", "/metrics", &[])).await.expect("answered");
        assert_eq!(response.status, 200);
    }
    drop(idle);
}
