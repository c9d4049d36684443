//! The events consumer: one per account with an `events` queue, reading the CodePipeline and Git
//! sync events that an EventBridge rule puts on it.
//!
//! It long-polls the queue, hands each event to the collectors of the event's region through
//! [`crate::signal`], which poll the targets it names at once, and deletes every message it read,
//! used or not, so that nothing loops. While ReceiveMessage succeeds the account is in events
//! mode: the targets AWS announces are polled on events and every `reconcile_interval` rather
//! than at their intervals. When the queue fails, the account falls back to interval polling at
//! once, and returns to events mode when receiving works again. The queue is a target of its own
//! (`kind="events"`), with the health every target has.
//!
//! The consumer knows no service: which events matter, and which targets they name, is the
//! collectors' to say.

pub mod message;
pub mod settings;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, QueueAttributeName};
use tokio::time::Instant;

use crate::aws::Assumed;
use crate::aws::{CallError, QueueClients};
use crate::report::Report;
use crate::shard::Shard;
use crate::signal::{Batch, Ignored, Mode, Observe, Signals};
use crate::target::{Health, TargetKey};
use crate::yaml;
pub use settings::Settings;

/// The `kind` and `service` of the queue's target.
pub const KIND: &str = "events";

/// How long one ReceiveMessage waits for a message: SQS's longest wait.
pub const WAIT: Duration = Duration::from_secs(20);
/// Messages one ReceiveMessage returns at most: SQS's largest batch.
const BATCH: i32 = 10;
/// How often the queue's backlog is read.
const ATTRIBUTES_INTERVAL: Duration = Duration::from_secs(60);
/// The first and the longest pause after a failed call, doubled in between.
const BACKOFF: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(30));

/// Where the consumer reports: the signals it sends events through, which of their targets this
/// replica polls, and the health of its own target.
#[derive(Clone)]
pub struct Parts {
    pub signals: Arc<Signals>,
    pub shard: Shard,
    pub report: Report,
}

/// Which account each 12-digit ID is polled as: the organization's queue routes each event by its
/// `account` to that account's collectors.
pub type Routes = Arc<RwLock<HashMap<String, Arc<str>>>>;

/// One account's consumer, or the organization's.
pub struct Consumer {
    clients: QueueClients,
    settings: Settings,
    /// The account's 12-digit ID: from its role ARN, or else from GetCallerIdentity.
    account_id: Option<String>,
    /// For the organization's queue: the accounts its events go to.
    routes: Option<Routes>,
    /// The account's role, when it has one: the consumer waits until it is assumed.
    assumed: Option<Assumed>,
    parts: Parts,
    key: TargetKey,
    health: Health,
    /// Where the polls that events cause report their delay.
    observe: Observe,
}

impl Consumer {
    pub fn new(
        clients: QueueClients,
        settings: Settings,
        role_arn: Option<&str>,
        routes: Option<Routes>,
        assumed: Option<Assumed>,
        parts: Parts,
    ) -> Consumer {
        let key = TargetKey {
            account: clients.account.clone(),
            region: settings.queue_region.as_str().into(),
            kind: KIND,
            service: KIND,
            name: settings.queue_name().to_string(),
        };
        let observe: Observe = {
            let (telemetry, account) = (parts.report.telemetry.clone(), clients.account.clone());
            Arc::new(move |delay| telemetry.event_delay(&account, delay))
        };
        Consumer {
            account_id: role_arn.and_then(yaml::account_of_role),
            routes,
            assumed,
            clients,
            settings,
            parts,
            key,
            health: Health::default(),
            observe,
        }
    }

    /// Consumes the queue until the task is aborted.
    pub async fn run(mut self) {
        self.parts.report.telemetry.start_events(&self.clients.account);
        if let Some(assumed) = &self.assumed {
            assumed.wait().await;
        }
        let mut backoff = BACKOFF.0;
        let mut attributes_read: Option<Instant> = None;
        let mut active = false;
        loop {
            let outcome = self.round(&mut attributes_read, active).await;
            self.health.record(&self.key, outcome.as_ref().map(|_| ()));
            active = outcome.is_ok();
            self.set_active(active);
            self.publish();
            if outcome.is_err() {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF.1);
            } else {
                backoff = BACKOFF.0;
            }
        }
    }

    /// One receive and its deletes, after the account ID and the backlog when they are due. The
    /// first receive after a start or a failure does not wait, so that the events mode starts as
    /// soon as the queue answers.
    async fn round(&mut self, attributes_read: &mut Option<Instant>, active: bool) -> Result<(), CallError> {
        if self.account_id.is_none() && self.routes.is_none() {
            let identity = self.clients.call("sts", "GetCallerIdentity", self.clients.sts.get_caller_identity().send()).await?;
            self.account_id = identity.account().map(str::to_string);
        }
        if attributes_read.is_none_or(|at| at.elapsed() >= ATTRIBUTES_INTERVAL) {
            self.read_attributes().await?;
            *attributes_read = Some(Instant::now());
        }
        let wait = if active { WAIT } else { Duration::ZERO };
        let request = self
            .clients
            .sqs
            .receive_message()
            .queue_url(&self.settings.queue_url)
            .max_number_of_messages(BATCH)
            .wait_time_seconds(wait.as_secs() as i32)
            .send();
        let received = self.clients.call("sqs", "ReceiveMessage", request).await?;
        let mut entries = Vec::new();
        let mut batch = Batch::default();
        for (i, message) in received.messages().iter().enumerate() {
            self.handle(message.body().unwrap_or_default(), &mut batch);
            if let Some(receipt) = message.receipt_handle() {
                let entry = DeleteMessageBatchRequestEntry::builder().id(i.to_string()).receipt_handle(receipt).build();
                entries.extend(entry.ok());
            }
        }
        batch.signal(&self.observe);
        if !entries.is_empty() {
            // A message that fails to delete comes back after its visibility timeout and is handled
            // again: events are signals, so that costs a poll, not a wrong value.
            let request =
                self.clients.sqs.delete_message_batch().queue_url(&self.settings.queue_url).set_entries(Some(entries)).send();
            let deleted = self.clients.call("sqs", "DeleteMessageBatch", request).await?;
            if let Some(failed) = deleted.failed().first() {
                tracing::warn!(queue = %self.key.name, code = %failed.code(), count = deleted.failed().len(), "messages were not deleted; they are read again later");
            }
        }
        Ok(())
    }

    async fn read_attributes(&mut self) -> Result<(), CallError> {
        let request = self
            .clients
            .sqs
            .get_queue_attributes()
            .queue_url(&self.settings.queue_url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send();
        let attributes = self.clients.call("sqs", "GetQueueAttributes", request).await?;
        let attribute = |name: QueueAttributeName| {
            attributes.attributes().and_then(|a| a.get(&name)).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0)
        };
        self.parts.report.telemetry.set_queue_messages(
            &self.clients.account,
            attribute(QueueAttributeName::ApproximateNumberOfMessages),
            attribute(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
        );
        Ok(())
    }

    /// Hands one message to the targets it names, or counts why it was not used. Nothing is logged
    /// per message: a queue full of foreign events would flood the log.
    fn handle(&self, body: &str, batch: &mut Batch) {
        let telemetry = &self.parts.report.telemetry;
        let account = &*self.clients.account;
        let envelope = match message::parse(body) {
            Ok(envelope) => envelope,
            Err(_) => return telemetry.event_ignored(account, "malformed"),
        };
        let target_account: Arc<str> = match &self.routes {
            Some(routes) => match routes.read().unwrap_or_else(|e| e.into_inner()).get(&envelope.account) {
                Some(routed) => routed.clone(),
                // An account of the organization that the configuration does not select.
                None => return telemetry.event_ignored(account, "not_selected"),
            },
            None if self.account_id.as_deref() == Some(envelope.account.as_str()) => self.clients.account.clone(),
            None => return telemetry.event_ignored(account, "other_account"),
        };
        let shard = self.parts.shard;
        let delivered = self.parts.signals.deliver(&target_account, &envelope.region, &envelope.event, |key| shard.owns(key));
        match delivered {
            Err(Ignored::UnknownType) => telemetry.event_ignored(account, "unknown_type"),
            Err(Ignored::Malformed) => telemetry.event_ignored(account, "malformed"),
            known => {
                telemetry.event_received(account, &envelope.event.source, &envelope.event.detail_type);
                match known {
                    Ok(wakes) => batch.add(wakes, envelope.time.min(SystemTime::now())),
                    Err(Ignored::NotSelected) => telemetry.event_ignored(account, "not_selected"),
                    Err(Ignored::OtherShard) => telemetry.event_ignored(account, "other_shard"),
                    Err(Ignored::UnknownType | Ignored::Malformed) => {}
                }
            }
        }
    }

    /// The accounts whose events this queue carries.
    fn accounts(&self) -> Vec<Arc<str>> {
        match &self.routes {
            Some(routes) => routes.read().unwrap_or_else(|e| e.into_inner()).values().cloned().collect(),
            None => vec![self.clients.account.clone()],
        }
    }

    fn set_active(&self, active: bool) {
        let mode = Mode { events: active, reconcile_interval: self.settings.reconcile_interval };
        for account in self.accounts() {
            self.parts.signals.set_mode(&account, mode);
        }
        self.parts.report.telemetry.set_events_active(&self.clients.account, active);
    }

    fn publish(&self) {
        let state = if self.health.status(None, None).up { "receiving" } else { "interval polling" };
        self.parts.report.publish(&self.key, &self.health, Some(state.into()), None);
    }
}

/// A running consumer; dropping it stops it, returns its account to interval polling and removes
/// its series.
pub struct Running {
    task: tokio::task::JoinHandle<()>,
    account: Arc<str>,
    routes: Option<Routes>,
    key: TargetKey,
    parts: Parts,
}

impl Running {
    pub fn start(consumer: Consumer) -> Running {
        let (account, key, parts) = (consumer.clients.account.clone(), consumer.key.clone(), consumer.parts.clone());
        let routes = consumer.routes.clone();
        Running { task: tokio::spawn(consumer.run()), account, routes, key, parts }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
        let accounts = match &self.routes {
            Some(routes) => routes.read().unwrap_or_else(|e| e.into_inner()).values().cloned().collect(),
            None => vec![self.account.clone()],
        };
        for account in accounts {
            self.parts.signals.set_mode(&account, Mode::default());
        }
        self.parts.report.telemetry.stop_events(&self.account);
        self.parts.report.remove(&self.key);
    }
}
