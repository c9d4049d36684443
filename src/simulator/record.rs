//! The recording of what a simulated endpoint answers, for the conformance check.
//!
//! With [`RECORD_DIR`] naming a directory, every simulator a process starts appends each answer it
//! serves to a file of its own there, one JSON object a line: the service as the request named it
//! (awsJson target prefix, RPC v2 CBOR path or awsQuery's STS), the operation, the protocol, the
//! HTTP status, SQS's `x-amzn-query-error` header, and the body in base64, byte for byte (JSON,
//! CBOR or XML). `tests/tools/validate_responses.py` then checks every answer against the
//! operation's output or error shape in botocore's models of the services. Answers broken on
//! purpose (faults that cut or garble a body) and scripted answers are not recorded.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// The environment variable naming the directory recordings go to.
pub const RECORD_DIR: &str = "SIMULATOR_RECORD_DIR";

/// One simulator's recording file.
#[derive(Debug)]
pub struct Recorder {
    file: Mutex<File>,
}

/// Simulators started by this process so far, which names each one's file.
static STARTED: AtomicU64 = AtomicU64::new(0);

impl Recorder {
    /// A recorder into the directory [`RECORD_DIR`] names, if it is set. A directory that cannot
    /// be written is reported on standard error and leaves the simulator unrecorded, rather than
    /// failing a test that does not check recordings; the validator then finds fewer records.
    pub fn from_environment() -> Option<Recorder> {
        let dir = std::env::var_os(RECORD_DIR).filter(|d| !d.is_empty())?;
        match Recorder::create(Path::new(&dir)) {
            Ok(recorder) => Some(recorder),
            Err(e) => {
                eprintln!("simulator: cannot record into {}: {e}", Path::new(&dir).display());
                None
            }
        }
    }

    /// A recorder into a new file in `dir`, created if missing.
    pub fn create(dir: &Path) -> std::io::Result<Recorder> {
        std::fs::create_dir_all(dir)?;
        let n = STARTED.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!("simulator-{}-{n}.jsonl", std::process::id()));
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Recorder { file: Mutex::new(file) })
    }

    /// Appends one answer. A failed write is reported and otherwise ignored: the simulator keeps
    /// serving, and the validator counts the records it reads.
    pub fn append(&self, service: &str, operation: &str, protocol: &str, status: u16, query_error: Option<&str>, body: &[u8]) {
        let record = serde_json::json!({
            "service": service,
            "operation": operation,
            "protocol": protocol,
            "status": status,
            "query_error": query_error,
            "body": aws_smithy_types::base64::encode(body),
        });
        let mut line = record.to_string();
        line.push('\n');
        // One write per line, under the lock, so that lines never interleave.
        let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = file.write_all(line.as_bytes()) {
            eprintln!("simulator: cannot append to the recording: {e}");
        }
    }
}
