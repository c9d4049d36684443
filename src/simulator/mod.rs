//! A simulated AWS account served over HTTP in the wire protocols of the pinned SDK crates.
//!
//! The demo points the real SDK clients at it, and so do the tests: nothing between the SDK and
//! the exporter's code is replaced. CodePipeline, CodeConnections and CodeBuild answer in awsJson
//! and in Smithy RPC v2 CBOR (see [`protocol`]); every service shares one endpoint, the request's
//! `X-Amz-Target` (or RPC v2 path) naming the service. Its state is a plain [`World`] that the
//! demo's scenario and the tests change directly; faults can be injected per operation, and every
//! call is counted, so a test can prove what the exporter asked for and when.
//!
//! The account manages an organization (see [`organizations`]): its simulated STS issues
//! credentials for the role of each member account, and a request signed with them is answered
//! from that member's own [`World`], so a test tells the accounts apart. Any other credentials
//! stand for the simulated account itself.

pub mod codebuild;
pub mod codeconnections;
pub mod codepipeline;
pub mod demo;
pub mod organizations;
pub mod protocol;
pub mod record;
pub mod sqs;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use ciborium::Value;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rand::Rng as _;
use tokio::net::TcpListener;

pub use codebuild::{SimBuild, SimPhase};
pub use codeconnections::{
    SimConnection, SimHost, SimRepositoryLink, SimResourceSync, SimSyncAttempt, SimSyncBlocker, SimSyncConfiguration,
    SimSyncEvent,
};
pub use codepipeline::{
    SimAction, SimActionExecution, SimActionRun, SimCondition, SimExecution, SimPipeline, SimRuleRun, SimStage,
};
pub use organizations::{SimAccount, SimOrganization, SimUnit};
use protocol::{Failure, Protocol, map, text, timestamp};
pub use sqs::SimQueue;

/// The simulated account's 12-digit ID, as GetCallerIdentity and its events give it.
pub const ACCOUNT_ID: &str = "111122223333";
/// The region its events come from.
pub const REGION: &str = "us-east-1";

/// The URL of the simulated account's queue `name`.
pub fn queue_url(name: &str) -> String {
    format!("https://sqs.{REGION}.amazonaws.com/{ACCOUNT_ID}/{name}")
}

/// A pipeline execution ID as AWS forms them, a version-4 UUID (the model's `PipelineExecutionId`
/// pattern), derived from `name` alone. Fixtures name their runs (`e1`, `old3`) and write the ID
/// they expect as `execution_id("e1")`: the same name always gives the same ID, in every process.
pub fn execution_id(name: &str) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(name.as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    // The version (4) and variant (RFC 9562) bits of a random UUID.
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..])
}

/// Everything the simulated account holds.
#[derive(Debug, Default)]
pub struct World {
    pub pipelines: BTreeMap<String, SimPipeline>,
    /// Items per page of every List operation; AWS's own default is 100.
    pub page_size: usize,
    pub repository_links: BTreeMap<String, SimRepositoryLink>,
    pub sync_configurations: Vec<SimSyncConfiguration>,
    /// The latest attempt of each repository sync, by (repository link ID, branch, sync type).
    /// A sync configuration without an entry has never synced.
    pub repository_syncs: BTreeMap<(String, String, String), SimSyncAttempt>,
    /// Each resource's sync status, by (resource name, sync type).
    pub resource_syncs: BTreeMap<(String, String), SimResourceSync>,
    /// Connections by ARN.
    pub connections: BTreeMap<String, SimConnection>,
    /// Hosts by ARN.
    pub hosts: BTreeMap<String, SimHost>,
    /// The latest sync blockers of each resource, by (resource name, sync type). A resource without
    /// an entry has no blocker summary.
    pub sync_blockers: BTreeMap<(String, String), Vec<SimSyncBlocker>>,
    /// CodeBuild builds by ID (`<project>:<uuid>`), as BatchGetBuilds describes them: those the
    /// CodeBuild actions' `external_id`s name.
    pub builds: BTreeMap<String, SimBuild>,
    /// CodeBuild projects whose builds the caller may not read: a BatchGetBuilds call asking for
    /// any of their builds answers AccessDeniedException as a whole.
    pub denied_build_projects: BTreeSet<String>,
    /// The regions this account's resources are in; `None`, every region. A request signed for
    /// another region finds the account empty, as most regions of a real account are.
    pub regions: Option<BTreeSet<String>>,
}

impl World {
    /// The page size List operations use.
    pub fn page(&self) -> usize {
        if self.page_size == 0 { 100 } else { self.page_size }
    }
}

/// A fleet of `pipelines` alike pipelines of 5 stages of 4 actions, each with a succeeded
/// execution and a source revision: the shape the benchmarks measure and the README's
/// series-per-pipeline table counts.
pub fn fleet(pipelines: usize) -> World {
    let mut world = World { page_size: 100, ..World::default() };
    let stages: Vec<(String, Vec<String>)> =
        (0..5).map(|s| (format!("Stage{s}"), (0..4).map(|a| format!("Action{s}{a}")).collect())).collect();
    let stages_ref: Vec<(&str, Vec<&str>)> =
        stages.iter().map(|(s, a)| (s.as_str(), a.iter().map(String::as_str).collect())).collect();
    let stages_ref: Vec<(&str, &[&str])> = stages_ref.iter().map(|(s, a)| (*s, a.as_slice())).collect();
    for i in 0..pipelines {
        let mut pipeline = SimPipeline::new(&format!("service-{i:05}-deploy"), &stages_ref);
        let id = execution_id(&format!("exec-{i}"));
        for (s, stage) in pipeline.stages.iter_mut().enumerate() {
            stage.latest = Some((id.clone(), "Succeeded".into()));
            for (a, action) in stage.actions.iter_mut().enumerate() {
                action.latest = Some(SimActionExecution {
                    id: format!("act-{i}-{s}-{a}"),
                    status: "Succeeded".into(),
                    last_status_change: 1_700_000_000.0 + (s * 4 + a) as f64,
                    ..SimActionExecution::default()
                });
                if s == 0 {
                    action.revision = Some((format!("{i:040x}"), 1_700_000_000.0));
                }
            }
        }
        pipeline.executions = vec![SimExecution::new(&id, "Succeeded", 1_700_000_000.0, 1_700_000_300.0)];
        world.pipelines.insert(pipeline.name.clone(), pipeline);
    }
    world
}

/// A misbehaviour the endpoint shows instead of its normal answer.
#[derive(Debug, Clone)]
pub enum Fault {
    /// An AWS error: HTTP status, error type and message.
    Error { status: u16, code: String, message: String },
    /// ThrottlingException with the status of the request's protocol: 400 in awsJson, 429 in
    /// RPC v2 CBOR.
    Throttling,
    /// Answer normally, but only after this long.
    Delay(Duration),
    /// Start a 200 answer, then close the connection in the middle of its body.
    Reset,
    /// Answer 200 with a body that is not valid for the protocol.
    Malformed,
}

impl Fault {
    pub fn error(status: u16, code: &str) -> Fault {
        Fault::Error { status, code: code.into(), message: format!("simulated {code}") }
    }
}

/// An account of the organization other than the simulated one: its world, and what its own
/// EventBridge last saw of it.
struct Member {
    world: World,
    observed: sqs::Observed,
}

impl Member {
    fn new() -> Member {
        Member { world: World { page_size: 100, ..World::default() }, observed: sqs::Observed::default() }
    }
}

/// A session the simulated STS issued by AssumeRole: whose role, under which name, until when.
#[derive(Debug, Clone)]
struct Session {
    account: String,
    role: String,
    name: String,
    /// Unix seconds after which requests signed with it answer ExpiredTokenException.
    expires: f64,
}

impl Session {
    fn arn(&self) -> String {
        format!("arn:aws:sts::{}:assumed-role/{}/{}", self.account, self.role, self.name)
    }

    /// The role's ID and the session's name, as AssumedRoleId and GetCallerIdentity's UserId.
    fn user_id(&self) -> String {
        format!("AROA{}EXAMPLE:{}", self.account, self.name)
    }
}

/// The identity of a request signed with any credentials STS did not issue.
fn main_arn() -> String {
    format!("arn:aws:sts::{ACCOUNT_ID}:assumed-role/codepipeline-exporter/session")
}

/// Everything the simulated STS issued, and how long what it issues next lasts.
struct Sessions {
    by_key: HashMap<String, Session>,
    lifetime: Duration,
    issued: u64,
}

impl Default for Sessions {
    fn default() -> Sessions {
        Sessions { by_key: HashMap::new(), lifetime: Duration::from_secs(3600), issued: 0 }
    }
}

#[derive(Default)]
struct Shared {
    world: Mutex<World>,
    /// The worlds of the organization's other accounts, each created empty on first use.
    members: Mutex<BTreeMap<String, Member>>,
    organization: Mutex<SimOrganization>,
    sessions: Mutex<Sessions>,
    faults: Mutex<HashMap<String, VecDeque<Fault>>>,
    /// Faults shown at random: the share of calls that fail, and the faults to pick from.
    chaos: Mutex<Option<(f64, Vec<Fault>)>>,
    calls: Mutex<BTreeMap<String, u64>>,
    /// Calls by the account whose credentials signed them, and operation.
    account_calls: Mutex<BTreeMap<(String, String), u64>>,
    /// Calls by the region they were signed for, and operation.
    region_calls: Mutex<BTreeMap<(String, String), u64>>,
    /// SQS queues by URL.
    queues: Mutex<BTreeMap<String, SimQueue>>,
    /// Woken whenever a message is sent, for the ReceiveMessage calls that wait.
    arrived: tokio::sync::Notify,
    /// What the simulated EventBridge last saw of the world.
    observed: Mutex<sqs::Observed>,
    /// Where every answer is recorded, for the conformance check against AWS's models.
    recorder: Mutex<Option<record::Recorder>>,
    /// Answers a test scripted, served instead of the world's by operation (see
    /// [`Simulator::script`]).
    scripted: Mutex<HashMap<String, Script>>,
}

/// The answers a test scripted for one operation (about one subject): each of `once` a single
/// time, in order, then those of `cycle` in turn, over and over.
#[derive(Debug, Default)]
struct Script {
    once: VecDeque<Value>,
    cycle: VecDeque<Value>,
}

impl Script {
    fn next(&mut self) -> Option<Value> {
        if let Some(output) = self.once.pop_front() {
            return Some(output);
        }
        let output = self.cycle.pop_front()?;
        self.cycle.push_back(output.clone());
        Some(output)
    }
}

/// The input members that name what a call is about, the first present one being its subject:
/// a pipeline (`name`, `pipelineName`, or its ARN for its tags), a branch of a repository link
/// (`Branch`, which GetRepositorySyncStatus gives beside the link), a synced resource, or a
/// repository link. BatchGetBuilds is about the first build it asks for.
const SUBJECTS: [&str; 6] = ["name", "pipelineName", "resourceArn", "Branch", "ResourceName", "RepositoryLinkId"];

fn subject(input: &Value) -> Option<&str> {
    SUBJECTS.iter().find_map(|name| protocol::member(input, name)).or_else(|| {
        let ids = input.as_map()?.iter().find(|(k, _)| k.as_text() == Some("ids"))?.1.as_array()?;
        ids.first()?.as_text()
    })
}

impl Shared {
    fn queues(&self) -> MutexGuard<'_, BTreeMap<String, SimQueue>> {
        self.queues.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn members(&self) -> MutexGuard<'_, BTreeMap<String, Member>> {
        self.members.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn organization(&self) -> MutexGuard<'_, SimOrganization> {
        self.organization.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn sessions(&self) -> MutexGuard<'_, Sessions> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The session a request's access key belongs to, if STS issued it.
    fn session(&self, headers: &hyper::HeaderMap) -> Option<Session> {
        let key = protocol::access_key(headers)?;
        self.sessions().by_key.get(key).cloned()
    }

    /// Counts a call of `operation` signed by `account`'s credentials.
    fn count(&self, account: &str, operation: &str) {
        *self.calls.lock().unwrap_or_else(|e| e.into_inner()).entry(operation.to_string()).or_default() += 1;
        let mut by_account = self.account_calls.lock().unwrap_or_else(|e| e.into_inner());
        *by_account.entry((account.to_string(), operation.to_string())).or_default() += 1;
    }

    /// Answers from the world of `account`: the simulated account's own, or a member's.
    fn answer(
        &self,
        account: &str,
        region: Option<&str>,
        answer: impl FnOnce(&World) -> Result<Value, Failure>,
    ) -> Result<Value, Failure> {
        let elsewhere =
            |world: &World| world.regions.as_ref().is_some_and(|regions| region.is_some_and(|region| !regions.contains(region)));
        if account == ACCOUNT_ID {
            let world = self.world.lock().unwrap_or_else(|e| e.into_inner());
            return if elsewhere(&world) { answer(&World::default()) } else { answer(&world) };
        }
        let mut members = self.members();
        let world = &members.entry(account.to_string()).or_insert_with(Member::new).world;
        if elsewhere(world) { answer(&World::default()) } else { answer(world) }
    }

    /// Emits the events of what changed in `world` since it was last seen.
    fn emit(&self, world: &World) {
        let mut bodies = Vec::new();
        self.observed.lock().unwrap_or_else(|e| e.into_inner()).compare(world, ACCOUNT_ID, |body| bodies.push(body));
        self.deliver(bodies);
    }

    /// Puts event bodies on every queue the simulated EventBridge rule targets.
    fn deliver(&self, bodies: Vec<String>) {
        if bodies.is_empty() {
            return;
        }
        let mut queues = self.queues();
        for queue in queues.values_mut().filter(|q| q.events) {
            for body in &bodies {
                queue.send(body.clone());
            }
        }
        drop(queues);
        self.arrived.notify_waiters();
    }
}

/// An account's state, locked for reading or changing. When it is released, the simulated
/// EventBridge emits an event for each status that changed, as AWS would.
pub struct WorldGuard<'a> {
    locked: Locked<'a>,
    shared: &'a Shared,
}

/// The world a guard holds: the simulated account's, or a member's inside the locked members.
enum Locked<'a> {
    Main(MutexGuard<'a, World>),
    Member(MutexGuard<'a, BTreeMap<String, Member>>, String),
}

impl Deref for WorldGuard<'_> {
    type Target = World;
    fn deref(&self) -> &World {
        match &self.locked {
            Locked::Main(world) => world,
            Locked::Member(members, account) => &members[account.as_str()].world,
        }
    }
}

impl DerefMut for WorldGuard<'_> {
    fn deref_mut(&mut self) -> &mut World {
        match &mut self.locked {
            Locked::Main(world) => world,
            Locked::Member(members, account) => &mut members.entry(account.clone()).or_insert_with(Member::new).world,
        }
    }
}

impl Drop for WorldGuard<'_> {
    fn drop(&mut self) {
        match &mut self.locked {
            Locked::Main(world) => self.shared.emit(world),
            Locked::Member(members, account) => {
                let mut bodies = Vec::new();
                if let Some(member) = members.get_mut(account.as_str()) {
                    member.observed.compare(&member.world, account, |body| bodies.push(body));
                }
                self.shared.deliver(bodies);
            }
        }
    }
}

/// A running simulated endpoint. It serves until dropped.
#[derive(Clone)]
pub struct Simulator {
    shared: Arc<Shared>,
    addr: SocketAddr,
    _server: Arc<AbortOnDrop>,
}

/// Stops the endpoint's accept loop when the last handle to the simulator goes.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The size limit of request bodies the endpoint reads; the SDK's requests are far smaller.
const MAX_REQUEST_BODY: usize = 1 << 20;

impl Simulator {
    /// Starts an endpoint on a free loopback port.
    pub async fn start(world: World) -> std::io::Result<Simulator> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let observed = Mutex::new(sqs::Observed::of(&world));
        let recorder = Mutex::new(record::Recorder::from_environment());
        let shared = Arc::new(Shared { world: Mutex::new(world), observed, recorder, ..Shared::default() });
        let server = AbortOnDrop(tokio::spawn(accept_loop(listener, shared.clone())));
        Ok(Simulator { shared, addr, _server: Arc::new(server) })
    }

    /// The URL to pass to the SDK as its endpoint.
    pub fn endpoint_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The simulated account's state, to read or change; changes emit their events when the
    /// guard is dropped.
    pub fn world(&self) -> WorldGuard<'_> {
        WorldGuard { locked: Locked::Main(self.shared.world.lock().unwrap_or_else(|e| e.into_inner())), shared: &self.shared }
    }

    /// The state of the organization's account `account_id`, created empty (page size 100) on
    /// first use, to read or change: what requests signed with the credentials STS issued for its
    /// role see. Its events name the account. The simulated account's own ID gives [`Self::world`].
    pub fn member(&self, account_id: &str) -> WorldGuard<'_> {
        if account_id == ACCOUNT_ID {
            return self.world();
        }
        let mut members = self.shared.members();
        members.entry(account_id.to_string()).or_insert_with(Member::new);
        WorldGuard { locked: Locked::Member(members, account_id.to_string()), shared: &self.shared }
    }

    /// The organization the simulated account manages, to read or change: its tree of units and
    /// accounts, and which roles refuse AssumeRole. It starts as the simulated account alone.
    pub fn organization(&self) -> MutexGuard<'_, SimOrganization> {
        self.shared.organization()
    }

    /// Sets how long the credentials AssumeRole issues from now on last, when the caller asks for
    /// no shorter (its DurationSeconds); one hour unless set, so that a test can make them expire.
    pub fn set_credentials_lifetime(&self, lifetime: Duration) {
        self.shared.sessions().lifetime = lifetime;
    }

    /// Creates an SQS queue and returns its URL. With `events`, the simulated EventBridge rule
    /// puts every event of the account on it.
    pub fn create_queue(&self, name: &str, events: bool) -> String {
        let url = queue_url(name);
        self.shared.queues().insert(url.clone(), SimQueue::new(events));
        url
    }

    /// Sets how long a received message stays hidden unless deleted.
    pub fn set_visibility_timeout(&self, url: &str, timeout: Duration) {
        if let Some(queue) = self.shared.queues().get_mut(url) {
            queue.visibility_timeout = timeout;
        }
    }

    /// Puts messages on a queue at once, as another sender would: a receive that is waiting sees
    /// them all.
    pub fn send_messages(&self, url: &str, bodies: &[&str]) {
        if let Some(queue) = self.shared.queues().get_mut(url) {
            for body in bodies {
                queue.send(body.to_string());
            }
        }
        self.shared.arrived.notify_waiters();
    }

    /// The messages of a queue: visible, and received but not deleted.
    pub fn queue_depth(&self, url: &str) -> (usize, usize) {
        self.shared.queues().get(url).map(SimQueue::depth).unwrap_or_default()
    }

    /// Makes the next `times` calls of `operation` show `fault`.
    pub fn inject(&self, operation: &str, fault: Fault, times: usize) {
        let mut faults = self.shared.faults.lock().unwrap_or_else(|e| e.into_inner());
        faults.entry(operation.to_string()).or_default().extend(std::iter::repeat_n(fault, times));
    }

    /// Makes a random `rate` of all calls show one of `faults`, picked at random.
    pub fn chaos(&self, rate: f64, faults: Vec<Fault>) {
        *self.shared.chaos.lock().unwrap_or_else(|e| e.into_inner()) = Some((rate, faults));
    }

    /// Removes every fault not yet shown, and the random ones.
    /// Returns how many injected faults were left unserved, so that a test knows exactly how many
    /// calls met one.
    pub fn clear_faults(&self) -> usize {
        let mut faults = self.shared.faults.lock().unwrap_or_else(|e| e.into_inner());
        let left = faults.values().map(VecDeque::len).sum();
        faults.clear();
        *self.shared.chaos.lock().unwrap_or_else(|e| e.into_inner()) = None;
        left
    }

    /// How many calls of `operation` arrived, faults included.
    pub fn calls(&self, operation: &str) -> u64 {
        self.shared.calls.lock().unwrap_or_else(|e| e.into_inner()).get(operation).copied().unwrap_or(0)
    }

    /// How many calls of `operation` were signed by the credentials of `account_id`, faults
    /// included: those STS issued for a member's role count for that member, any other credentials
    /// for the simulated account ([`ACCOUNT_ID`]).
    pub fn member_calls(&self, account_id: &str, operation: &str) -> u64 {
        let by_account = self.shared.account_calls.lock().unwrap_or_else(|e| e.into_inner());
        by_account.get(&(account_id.to_string(), operation.to_string())).copied().unwrap_or(0)
    }

    /// How many calls of `operation` were signed for `region`, faults included.
    pub fn region_calls(&self, region: &str, operation: &str) -> u64 {
        let by_region = self.shared.region_calls.lock().unwrap_or_else(|e| e.into_inner());
        by_region.get(&(region.to_string(), operation.to_string())).copied().unwrap_or(0)
    }

    /// Records every answer this endpoint serves from now on into a new file in `dir`, as the
    /// environment variable [`record::RECORD_DIR`] does for every simulator a process starts.
    pub fn record_to(&self, dir: &std::path::Path) -> std::io::Result<()> {
        let recorder = record::Recorder::create(dir)?;
        *self.shared.recorder.lock().unwrap_or_else(|e| e.into_inner()) = Some(recorder);
        Ok(())
    }

    /// Serves `outputs` as the next answers to `operation`, one per call, in the protocol of each
    /// request, instead of what the world holds: a test states exactly what AWS answers, such as
    /// values the world cannot hold. Faults still come first. Scripted answers are not recorded,
    /// since they may hold values outside the model on purpose (an enum value the SDK does not
    /// know).
    ///
    /// With a `subject`, only calls about it are answered so, so that concurrent polls of many
    /// pipelines, branches or stacks each get their own: those whose input's first member of
    /// [`SUBJECTS`] present is `subject` (a pipeline's `name` or `pipelineName`, its
    /// `resourceArn`, a `Branch`, a `ResourceName` or a `RepositoryLinkId`), or, for
    /// BatchGetBuilds, whose first build ID is `subject`.
    pub fn script(&self, operation: &str, subject: Option<&str>, outputs: impl IntoIterator<Item = Value>) {
        let key = subject.map_or_else(|| operation.to_string(), |subject| format!("{operation}/{subject}"));
        let mut scripted = self.shared.scripted.lock().unwrap_or_else(|e| e.into_inner());
        scripted.entry(key).or_default().once.extend(outputs);
    }

    /// As [`Simulator::script`], but `outputs` answer in turn for ever, once the answers scripted
    /// to be served once are served: a target polled again and again gets the same answers (a
    /// listing its same pages), as from an account where nothing changes.
    pub fn script_cycle(&self, operation: &str, subject: Option<&str>, outputs: impl IntoIterator<Item = Value>) {
        let key = subject.map_or_else(|| operation.to_string(), |subject| format!("{operation}/{subject}"));
        let mut scripted = self.shared.scripted.lock().unwrap_or_else(|e| e.into_inner());
        scripted.entry(key).or_default().cycle.extend(outputs);
    }

    /// Scripted answers not yet served, of every operation; those served in turn for ever do not
    /// count.
    pub fn scripted_left(&self) -> usize {
        self.shared.scripted.lock().unwrap_or_else(|e| e.into_inner()).values().map(|s| s.once.len()).sum()
    }

    /// How many calls arrived in all.
    pub fn total_calls(&self) -> u64 {
        self.shared.calls.lock().unwrap_or_else(|e| e.into_inner()).values().sum()
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| handle(shared.clone(), request));
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

type SimBody = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;
type Answer = Result<Response<SimBody>, std::io::Error>;

fn boxed(response: Response<Full<Bytes>>) -> Response<SimBody> {
    response.map(|body| body.map_err(|never| match never {}).boxed())
}

/// A body that sends its first bytes and then fails, which makes the server drop the connection
/// in the middle of the response.
struct Truncated(Option<Bytes>);

impl hyper::body::Body for Truncated {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, std::io::Error>>> {
        std::task::Poll::Ready(Some(match self.0.take() {
            Some(first) => Ok(hyper::body::Frame::data(first)),
            None => Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "simulated connection reset")),
        }))
    }
}

async fn handle(shared: Arc<Shared>, request: Request<Incoming>) -> Answer {
    let (parts, body) = request.into_parts();
    let body = match Limited::new(body, MAX_REQUEST_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return Ok(boxed(plain(StatusCode::PAYLOAD_TOO_LARGE, "request body too large"))),
    };
    let session = shared.session(&parts.headers);
    if let Some(form) = protocol::query_form(&parts.headers, &body) {
        let response = query(&shared, session.as_ref(), &form);
        let action = form.get("Action").map(String::as_str).unwrap_or_default();
        return Ok(recorded(&shared, "AWSSecurityTokenServiceV20110615", action, "query", response).await);
    }
    let call = match protocol::decode(parts.uri.path(), &parts.headers, &body) {
        None => return Ok(boxed(plain(StatusCode::NOT_FOUND, "neither awsJson nor RPC v2 CBOR"))),
        Some(Err(failure)) => return Ok(boxed(protocol::error(Protocol::AwsJson("1.1"), &failure))),
        Some(Ok(call)) => call,
    };
    let account = session.as_ref().map_or(ACCOUNT_ID, |s| s.account.as_str());
    shared.count(account, &call.operation);
    if let Some(region) = protocol::signed_region(&parts.headers) {
        let mut by_region = shared.region_calls.lock().unwrap_or_else(|e| e.into_inner());
        *by_region.entry((region.to_string(), call.operation.clone())).or_default() += 1;
    }
    if session.as_ref().is_some_and(expired) {
        let failure = Failure::new(400, "ExpiredTokenException", "The security token included in the request is expired");
        return Ok(recorded(
            &shared,
            &call.wire_service,
            &call.operation,
            call.protocol.name(),
            protocol::error(call.protocol, &failure),
        )
        .await);
    }
    let fault = shared.faults.lock().unwrap_or_else(|e| e.into_inner()).get_mut(&call.operation).and_then(VecDeque::pop_front);
    let fault = fault.or_else(|| {
        let chaos = shared.chaos.lock().unwrap_or_else(|e| e.into_inner());
        let (rate, faults) = chaos.as_ref()?;
        let mut rng = rand::rng();
        (rng.random_bool(*rate) && !faults.is_empty()).then(|| faults[rng.random_range(0..faults.len())].clone())
    });
    // SQS kept its awsQuery error codes: each of its errors names one in a header.
    let sqs = call.service == "AmazonSQS";
    match fault {
        Some(Fault::Error { status, code, message }) => {
            let query_error = sqs.then(|| format!("{code};Sender"));
            let response = protocol::error(call.protocol, &Failure { status, code, message, query_error });
            return Ok(recorded(&shared, &call.wire_service, &call.operation, call.protocol.name(), response).await);
        }
        Some(Fault::Throttling) => {
            let status = if call.protocol == Protocol::RpcV2Cbor { 429 } else { 400 };
            // SQS's model names its throttling error RequestThrottled, with that awsQuery code.
            let failure = if sqs {
                let mut failure = Failure::new(status, "RequestThrottled", "Rate exceeded");
                failure.query_error = Some("RequestThrottled;Sender".into());
                failure
            } else {
                Failure::new(status, "ThrottlingException", "Rate exceeded")
            };
            let response = protocol::error(call.protocol, &failure);
            return Ok(recorded(&shared, &call.wire_service, &call.operation, call.protocol.name(), response).await);
        }
        Some(Fault::Reset) => {
            let (parts, _) = protocol::ok(call.protocol, &ciborium::Value::Null).into_parts();
            let mut response = Response::from_parts(parts, Truncated(Some(Bytes::from_static(b"{\"pipel"))).boxed());
            response.headers_mut().insert("content-length", hyper::header::HeaderValue::from_static("4096"));
            return Ok(response);
        }
        Some(Fault::Malformed) => return Ok(boxed(protocol::malformed(call.protocol))),
        Some(Fault::Delay(delay)) => tokio::time::sleep(delay).await,
        None => {}
    }
    let scripted = {
        let mut scripted = shared.scripted.lock().unwrap_or_else(|e| e.into_inner());
        let own = subject(&call.input).and_then(|subject| scripted.get_mut(&format!("{}/{subject}", call.operation))?.next());
        own.or_else(|| scripted.get_mut(&call.operation)?.next())
    };
    if let Some(output) = scripted {
        return Ok(boxed(protocol::ok(call.protocol, &output)));
    }
    let answer = if sqs {
        sqs::handle(&shared, &call.operation, &call.input).await
    } else {
        let (operation, input) = (call.operation.as_str(), &call.input);
        let region = protocol::signed_region(&parts.headers);
        match call.service.as_str() {
            "CodePipeline_20150709" => {
                shared.answer(account, region, |world| codepipeline::handle(world, account, operation, input))
            }
            "CodeConnections_20231201" => {
                shared.answer(account, region, |world| codeconnections::handle(world, account, operation, input))
            }
            "CodeBuild_20161006" => shared.answer(account, region, |world| codebuild::handle(world, account, operation, input)),
            "AWSOrganizationsV20161128" => organizations::handle(&shared.organization(), operation, input),
            other => Err(Failure::new(400, "UnknownServiceException", format!("service {other} is not simulated"))),
        }
    };
    let response = match answer {
        Ok(output) => protocol::ok(call.protocol, &output),
        Err(failure) => protocol::error(call.protocol, &failure),
    };
    Ok(recorded(&shared, &call.wire_service, &call.operation, call.protocol.name(), response).await)
}

/// Appends an answer to the recording, if one is being made, and passes it on.
async fn recorded(
    shared: &Shared,
    service: &str,
    operation: &str,
    protocol: &str,
    response: Response<Full<Bytes>>,
) -> Response<SimBody> {
    if shared.recorder.lock().unwrap_or_else(|e| e.into_inner()).is_none() {
        return boxed(response);
    }
    let (parts, body) = response.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(never) => match never {},
    };
    let query_error = parts.headers.get("x-amzn-query-error").and_then(|v| v.to_str().ok());
    if let Some(recorder) = shared.recorder.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
        recorder.append(service, operation, protocol, parts.status.as_u16(), query_error, &body);
    }
    boxed(Response::from_parts(parts, Full::new(body)))
}

/// Whether a session's credentials are past their expiration.
fn expired(session: &Session) -> bool {
    session.expires <= demo::unix_now()
}

/// Answers an awsQuery call of STS: GetCallerIdentity, which every caller may make, and
/// AssumeRole into the organization's accounts. Faults apply as to every other operation, except
/// delays and broken bodies.
fn query(shared: &Shared, session: Option<&Session>, form: &BTreeMap<String, String>) -> Response<Full<Bytes>> {
    let action = form.get("Action").map(String::as_str).unwrap_or_default();
    let account = session.map_or(ACCOUNT_ID, |s| s.account.as_str());
    shared.count(account, action);
    if session.is_some_and(expired) {
        return protocol::query_error(&Failure::new(
            400,
            "ExpiredToken",
            "The security token included in the request is expired",
        ));
    }
    let fault = shared.faults.lock().unwrap_or_else(|e| e.into_inner()).get_mut(action).and_then(VecDeque::pop_front);
    if let Some(Fault::Error { status, code, message }) = fault {
        return protocol::query_error(&Failure::new(status, &code, message));
    }
    match action {
        "GetCallerIdentity" => {
            let (arn, user_id) = match session {
                Some(session) => (session.arn(), session.user_id()),
                None => (main_arn(), "AROAEXAMPLE:session".to_string()),
            };
            protocol::query_ok(action, &map(vec![("Arn", text(&arn)), ("UserId", text(&user_id)), ("Account", text(account))]))
        }
        "AssumeRole" => match assume_role(shared, session, form) {
            Ok(result) => protocol::query_ok(action, &result),
            Err(failure) => protocol::query_error(&failure),
        },
        other => protocol::query_error(&Failure::new(400, "InvalidAction", format!("{other} is not simulated"))),
    }
}

/// AssumeRole: credentials for the role `RoleArn` names, when its account is the simulated one, an
/// account of the organization or one with a member world, its role is not in `deny_assume`, and
/// the `ExternalId` is the one the organization requires, if any. Otherwise AccessDenied, as AWS
/// answers a trust policy that does not let the caller in.
fn assume_role(shared: &Shared, caller: Option<&Session>, form: &BTreeMap<String, String>) -> Result<Value, Failure> {
    let param = |name: &str| form.get(name).map(String::as_str).filter(|v| !v.is_empty());
    let required = |name: &str| param(name).ok_or_else(|| Failure::new(400, "ValidationError", format!("{name} is required")));
    let role_arn = required("RoleArn")?;
    let session_name = required("RoleSessionName")?;
    let fields: Vec<&str> = role_arn.splitn(6, ':').collect();
    let (account, role) = match fields[..] {
        ["arn", _, "iam", "", account, resource] if account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit()) => {
            let role = resource.strip_prefix("role/").and_then(|path| path.rsplit('/').next()).filter(|r| !r.is_empty());
            (account, role.ok_or_else(|| Failure::new(400, "ValidationError", format!("{role_arn} is not a role ARN")))?)
        }
        _ => return Err(Failure::new(400, "ValidationError", format!("{role_arn} is not a valid ARN"))),
    };
    let known = account == ACCOUNT_ID || shared.members().contains_key(account);
    let allowed = {
        let organization = shared.organization();
        (known || organization.accounts.contains_key(account))
            && !organization.deny_assume.contains(account)
            && organization.external_id.as_deref().is_none_or(|id| param("ExternalId") == Some(id))
    };
    if !allowed {
        let caller = caller.map_or_else(main_arn, Session::arn);
        return Err(Failure::new(
            403,
            "AccessDenied",
            format!("User: {caller} is not authorized to perform: sts:AssumeRole on resource: {role_arn}"),
        ));
    }
    let asked = param("DurationSeconds").and_then(|d| d.parse::<u64>().ok());
    let mut sessions = shared.sessions();
    let seconds = asked.map_or(sessions.lifetime.as_secs(), |asked| asked.min(sessions.lifetime.as_secs()));
    let session = Session {
        account: account.to_string(),
        role: role.to_string(),
        name: session_name.to_string(),
        expires: demo::unix_now().floor() + seconds as f64,
    };
    sessions.issued += 1;
    let key = format!("ASIA{account}{:04}", sessions.issued);
    sessions.by_key.insert(key.clone(), session.clone());
    drop(sessions);
    Ok(map(vec![
        (
            "Credentials",
            map(vec![
                ("AccessKeyId", text(&key)),
                ("SecretAccessKey", text(&format!("simulated-secret-{key}"))),
                ("SessionToken", text(&format!("simulated-session-token-{key}"))),
                ("Expiration", timestamp(session.expires)),
            ]),
        ),
        ("AssumedRoleUser", map(vec![("Arn", text(&session.arn())), ("AssumedRoleId", text(&session.user_id()))])),
    ]))
}

fn plain(status: StatusCode, message: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(message.as_bytes())));
    *response.status_mut() = status;
    response
}
