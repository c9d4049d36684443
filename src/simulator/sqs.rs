//! The simulated SQS queues, and the simulated EventBridge rule that puts the account's events on
//! them.
//!
//! SQS speaks awsJson 1.0 with query-compatible errors: the SDK reads an error's code from the
//! `x-amzn-query-error` header (`AWS.SimpleQueueService.NonExistentQueue;Sender`), not from
//! `__type`, so every SQS error carries it. ReceiveMessage long-polls: it answers as soon as a
//! message is visible, or after `WaitTimeSeconds` with none. A received message is invisible for
//! the queue's visibility timeout and comes back unless it is deleted.
//!
//! Events are emitted as AWS emits them: whenever the world changes, what changed is compared
//! with what was last seen, and each pipeline execution, stage, action, repository sync and
//! resource sync whose status moved becomes one event on every queue the rule targets.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use aws_smithy_types::DateTime;
use aws_smithy_types::date_time::Format;
use ciborium::Value;
use serde_json::json;
use tokio::time::Instant;

use super::protocol::{Failure, list, map, member, number, text};
use super::{ACCOUNT_ID, REGION, Shared, World};

/// A queue's messages and settings.
#[derive(Debug)]
pub struct SimQueue {
    messages: VecDeque<SimMessage>,
    pub visibility_timeout: Duration,
    /// Whether the simulated EventBridge rule puts the account's events on this queue.
    pub events: bool,
    next_id: u64,
}

#[derive(Debug)]
struct SimMessage {
    id: String,
    body: String,
    /// While received and not deleted: the receipt handle and when the message shows again.
    received: Option<(String, Instant)>,
}

impl SimQueue {
    pub fn new(events: bool) -> SimQueue {
        SimQueue { messages: VecDeque::new(), visibility_timeout: Duration::from_secs(30), events, next_id: 0 }
    }

    pub fn send(&mut self, body: String) {
        self.next_id += 1;
        self.messages.push_back(SimMessage { id: format!("msg-{}", self.next_id), body, received: None });
    }

    /// Messages visible now and messages received but not deleted.
    pub fn depth(&self) -> (usize, usize) {
        let now = Instant::now();
        let in_flight = self.messages.iter().filter(|m| m.received.as_ref().is_some_and(|(_, until)| *until > now)).count();
        (self.messages.len() - in_flight, in_flight)
    }

    /// Receives up to `max` visible messages, hiding them for `visibility`.
    fn receive(&mut self, max: usize, visibility: Duration) -> Vec<Value> {
        let now = Instant::now();
        let mut out = Vec::new();
        for message in self.messages.iter_mut() {
            if out.len() == max {
                break;
            }
            if message.received.as_ref().is_some_and(|(_, until)| *until > now) {
                continue;
            }
            self.next_id += 1;
            let receipt = format!("{}-receipt-{}", message.id, self.next_id);
            message.received = Some((receipt.clone(), now + visibility));
            // MD5OfBody is left out: the SDK does not check it.
            out.push(map(vec![
                ("MessageId", text(&message.id)),
                ("ReceiptHandle", text(&receipt)),
                ("Body", text(&message.body)),
            ]));
        }
        out
    }

    /// When the next hidden message shows again.
    fn next_visible(&self) -> Option<Instant> {
        self.messages.iter().filter_map(|m| m.received.as_ref().map(|(_, until)| *until)).min()
    }

    fn delete(&mut self, receipt: &str) -> bool {
        let before = self.messages.len();
        self.messages.retain(|m| m.received.as_ref().is_none_or(|(r, _)| r != receipt));
        self.messages.len() < before
    }
}

/// The SQS error for a queue URL that names no queue, as the SDK recognises it.
fn no_queue() -> Failure {
    Failure {
        query_error: Some("AWS.SimpleQueueService.NonExistentQueue;Sender".into()),
        ..Failure::new(400, "com.amazonaws.sqs#QueueDoesNotExist", "The specified queue does not exist.")
    }
}

/// Answers one SQS operation. ReceiveMessage may wait for a message.
pub(super) async fn handle(shared: &Shared, operation: &str, input: &Value) -> Result<Value, Failure> {
    let url =
        member(input, "QueueUrl").ok_or_else(|| Failure::new(400, "com.amazonaws.sqs#InvalidAddress", "QueueUrl is required"))?;
    match operation {
        "ReceiveMessage" => {
            let max = number(input, "MaxNumberOfMessages").unwrap_or(1).clamp(1, 10) as usize;
            let wait = Duration::from_secs(number(input, "WaitTimeSeconds").unwrap_or(0).clamp(0, 20) as u64);
            let deadline = Instant::now() + wait;
            loop {
                // Registered before looking, so that a message sent in between wakes this wait.
                let arrived = shared.arrived.notified();
                let next_visible = {
                    let mut queues = shared.queues();
                    let queue = queues.get_mut(url).ok_or_else(no_queue)?;
                    let visibility = number(input, "VisibilityTimeout").map(|s| Duration::from_secs(s.max(0) as u64));
                    let messages = queue.receive(max, visibility.unwrap_or(queue.visibility_timeout));
                    if !messages.is_empty() || Instant::now() >= deadline {
                        return Ok(map(vec![("Messages", if messages.is_empty() { Value::Null } else { list(messages) })]));
                    }
                    queue.next_visible()
                };
                let until = next_visible.map_or(deadline, |at| at.min(deadline));
                tokio::select! {
                    () = arrived => {}
                    () = tokio::time::sleep_until(until) => {}
                }
            }
        }
        "DeleteMessageBatch" | "DeleteMessage" => {
            let mut queues = shared.queues();
            let queue = queues.get_mut(url).ok_or_else(no_queue)?;
            if operation == "DeleteMessage" {
                let receipt = member(input, "ReceiptHandle").unwrap_or_default();
                queue.delete(receipt);
                return Ok(map(Vec::new()));
            }
            let entries = input
                .as_map()
                .and_then(|m| m.iter().find(|(k, _)| k.as_text() == Some("Entries")))
                .and_then(|(_, v)| v.as_array().cloned())
                .unwrap_or_default();
            let (mut successful, mut failed) = (Vec::new(), Vec::new());
            for entry in &entries {
                let id = member(entry, "Id").unwrap_or_default();
                if queue.delete(member(entry, "ReceiptHandle").unwrap_or_default()) {
                    successful.push(map(vec![("Id", text(id))]));
                } else {
                    failed.push(map(vec![
                        ("Id", text(id)),
                        ("SenderFault", Value::Bool(true)),
                        ("Code", text("ReceiptHandleIsInvalid")),
                        ("Message", text("The receipt handle is not valid, or the message was received again.")),
                    ]));
                }
            }
            Ok(map(vec![("Successful", list(successful)), ("Failed", list(failed))]))
        }
        "GetQueueAttributes" => {
            let queues = shared.queues();
            let queue = queues.get(url).ok_or_else(no_queue)?;
            let (visible, in_flight) = queue.depth();
            let name = url.rsplit('/').next().unwrap_or(url);
            Ok(map(vec![(
                "Attributes",
                map(vec![
                    ("ApproximateNumberOfMessages", text(&visible.to_string())),
                    ("ApproximateNumberOfMessagesNotVisible", text(&in_flight.to_string())),
                    ("VisibilityTimeout", text(&queue.visibility_timeout.as_secs().to_string())),
                    ("QueueArn", text(&format!("arn:aws:sqs:{REGION}:{ACCOUNT_ID}:{name}"))),
                ]),
            )]))
        }
        other => Err(Failure::new(400, "UnknownOperationException", format!("SQS operation {other} is not simulated"))),
    }
}

/// The statuses last seen of everything that emits events.
#[derive(Debug, Default)]
pub struct Observed {
    /// By pipeline: each execution's status, each stage's latest (execution, status), each
    /// action's latest (action execution, status).
    pipelines: HashMap<String, PipelineSeen>,
    repository_syncs: BTreeMap<(String, String, String), String>,
    resource_syncs: BTreeMap<(String, String), String>,
    next_id: u64,
}

#[derive(Debug, Default, PartialEq)]
struct PipelineSeen {
    executions: HashMap<String, String>,
    stages: HashMap<String, (String, String)>,
    actions: HashMap<(String, String), (String, String)>,
}

/// The status an event gives for a status of the API: upper case, and CANCELED as EventBridge
/// spells it.
fn event_state(status: &str) -> String {
    match status {
        "InProgress" => "STARTED".into(),
        "Cancelled" => "CANCELED".into(),
        other => other.to_ascii_uppercase(),
    }
}

/// The ID of the `n`th event of `account`. Each account counts its own events, so a member's IDs
/// carry its account ID and never repeat another account's, as a consumer that drops repeated IDs
/// needs.
fn event_id(account: &str, n: u64) -> String {
    if account == ACCOUNT_ID { format!("00000000-0000-4000-8000-{n:012}") } else { format!("{n:08x}-0000-4000-8000-{account}") }
}

impl Observed {
    /// What `world` holds now, without emitting anything: the starting point of the comparisons.
    pub fn of(world: &World) -> Observed {
        let mut observed = Observed::default();
        observed.compare(world, ACCOUNT_ID, |_| {});
        observed
    }

    /// Compares `world`, the state of `account`, with what was last seen and hands `emit` the body
    /// of one event for each change, in the order AWS sends them: executions, then stages, then
    /// actions. The events and the ARNs in them name `account`, as EventBridge in that account
    /// would.
    pub fn compare(&mut self, world: &World, account: &str, mut emit: impl FnMut(String)) {
        let now = super::demo::unix_now();
        let time = DateTime::from_secs(now as i64).fmt(Format::DateTime).unwrap_or_default();
        let mut event = |next_id: &mut u64, source: &str, detail_type: &str, resource: String, detail: serde_json::Value| {
            *next_id += 1;
            let body = json!({
                "version": "0",
                "id": event_id(account, *next_id),
                "detail-type": detail_type,
                "source": source,
                "account": account,
                "time": time,
                "region": REGION,
                "resources": [resource],
                "detail": detail,
            });
            emit(body.to_string());
        };
        let mut seen_pipelines = HashMap::with_capacity(world.pipelines.len());
        for (name, pipeline) in &world.pipelines {
            let seen = PipelineSeen {
                executions: pipeline.executions.iter().map(|e| (e.id.clone(), e.status.clone())).collect(),
                stages: pipeline.stages.iter().filter_map(|s| Some((s.name.clone(), s.latest.clone()?))).collect(),
                actions: pipeline
                    .stages
                    .iter()
                    .flat_map(|s| {
                        s.actions.iter().filter_map(move |a| {
                            let latest = a.latest.as_ref()?;
                            Some(((s.name.clone(), a.name.clone()), (latest.id.clone(), latest.status.clone())))
                        })
                    })
                    .collect(),
            };
            let before = self.pipelines.remove(name).unwrap_or_default();
            if before != seen {
                let arn = format!("arn:aws:codepipeline:{REGION}:{account}:{name}");
                let version = pipeline.version;
                for execution in &pipeline.executions {
                    if before.executions.get(&execution.id) != Some(&execution.status) {
                        let detail = json!({"pipeline": name, "execution-id": execution.id, "state": event_state(&execution.status), "version": version});
                        event(
                            &mut self.next_id,
                            "aws.codepipeline",
                            "CodePipeline Pipeline Execution State Change",
                            arn.clone(),
                            detail,
                        );
                    }
                }
                for stage in &pipeline.stages {
                    if let Some((execution, status)) = &stage.latest
                        && before.stages.get(&stage.name) != stage.latest.as_ref()
                    {
                        let detail = json!({"pipeline": name, "execution-id": execution, "stage": stage.name, "state": event_state(status), "version": version});
                        event(
                            &mut self.next_id,
                            "aws.codepipeline",
                            "CodePipeline Stage Execution State Change",
                            arn.clone(),
                            detail,
                        );
                    }
                }
                for ((stage, action), (action_execution, status)) in &seen.actions {
                    if before.actions.get(&(stage.clone(), action.clone())) != Some(&(action_execution.clone(), status.clone())) {
                        let execution = pipeline
                            .stages
                            .iter()
                            .find(|s| &s.name == stage)
                            .and_then(|s| s.latest.as_ref())
                            .map(|(id, _)| id.as_str())
                            .unwrap_or_default();
                        let detail = json!({"pipeline": name, "execution-id": execution, "stage": stage, "action": action, "state": event_state(status), "region": REGION, "version": version});
                        event(
                            &mut self.next_id,
                            "aws.codepipeline",
                            "CodePipeline Action Execution State Change",
                            arn.clone(),
                            detail,
                        );
                    }
                }
            }
            seen_pipelines.insert(name.clone(), seen);
        }
        self.pipelines = seen_pipelines;
        let links: HashMap<&str, &super::SimRepositoryLink> =
            world.repository_links.values().map(|l| (l.id.as_str(), l)).collect();
        for ((link, branch, sync_type), attempt) in &world.repository_syncs {
            let key = (link.clone(), branch.clone(), sync_type.clone());
            let previous = self.repository_syncs.insert(key, attempt.status.clone());
            if previous.as_ref() != Some(&attempt.status) {
                let repository = links.get(link.as_str());
                let detail = json!({
                    "connectionArn": repository.map(|l| l.connection_arn.as_str()).unwrap_or_default(),
                    "providerType": repository.map(|l| l.provider_type.as_str()).unwrap_or_default(),
                    "repositoryName": repository.map(|l| l.repository_name.as_str()).unwrap_or_default(),
                    "repositoryLinkId": link,
                    "ownerId": repository.map(|l| l.owner_id.as_str()).unwrap_or_default(),
                    "branch": branch,
                    "syncType": sync_type,
                    "status": attempt.status,
                    "previousSync": previous.unwrap_or_default(),
                });
                let arn = format!("arn:aws:codeconnections:{REGION}:{account}:repository-link/{link}");
                event(&mut self.next_id, "aws.codeconnections", "Git Sync Repository Sync Status Change", arn, detail);
            }
        }
        for ((resource, sync_type), sync) in &world.resource_syncs {
            let previous = self.resource_syncs.insert((resource.clone(), sync_type.clone()), sync.latest.status.clone());
            if previous.as_ref() != Some(&sync.latest.status) {
                // Resource sync events name the stack by its ARN.
                let stack =
                    format!("arn:aws:cloudformation:{REGION}:{account}:stack/{resource}/00000000-0000-4000-8000-000000000000");
                let detail = json!({
                    "commit": sync.sha,
                    "syncType": sync_type,
                    "syncTarget": stack,
                    "status": sync.latest.status,
                    "previousStatus": previous.unwrap_or_default(),
                });
                event(&mut self.next_id, "aws.codeconnections", "Git Sync Resource Sync Status Change", stack.clone(), detail);
            }
        }
    }
}
