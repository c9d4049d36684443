//! An account's credentials when it names a role: AssumeRole through STS, renewed before they
//! expire, as a target of its own (`kind="credentials"`).
//!
//! Leaving the role to the SDK's own provider makes every target of the account fail on its own
//! when the role cannot be assumed, each with the code `ConnectionError` and STS's answer buried
//! in "an error occurred while loading credentials". Assuming it here instead shows one down
//! target with STS's code (`AccessDenied`), while the account's collectors wait for credentials
//! rather than fail; and it renews them ahead of their expiry, so polling never meets a gap.

use std::time::{Duration, SystemTime};

use aws_config::{Region, SdkConfig};
use aws_credential_types::Credentials;
use tokio::sync::watch;

use crate::aws::{self, Assumed};
use crate::report::Report;
use crate::target::{Health, TargetKey};

/// The `kind` of the credentials' target, and its `service`.
pub const KIND: &str = "credentials";
const SERVICE: &str = "sts";
/// How long before they expire credentials are renewed: well beyond the SDK's own margin, so
/// that a renewal that fails once is tried again before any call needs it. Credentials that live
/// less than twice this are renewed halfway through their life.
const RENEW_BEFORE: Duration = Duration::from_secs(600);
/// Credentials are kept at least this long, whatever their expiry says, so that a clock that
/// runs ahead cannot make the renewal spin.
const MIN_LIFETIME: Duration = Duration::from_secs(1);
/// The first and the longest pause after a failed AssumeRole, doubled in between.
const BACKOFF: (Duration, Duration) = (Duration::from_secs(5), Duration::from_secs(300));

/// What assuming the role takes.
#[derive(Debug, Clone, PartialEq)]
pub struct Role {
    pub arn: String,
    pub external_id: Option<String>,
}

/// A role's renewal task. Dropping it stops renewing and removes the target's series.
pub struct Running {
    task: tokio::task::JoinHandle<()>,
    pub assumed: Assumed,
    key: TargetKey,
    report: Report,
}

impl Running {
    /// Assumes `role` with `base`'s credentials, through STS in `region`, for the account
    /// labelled `account`.
    pub fn start(account: &str, region: &str, role: Role, base: &SdkConfig, report: Report) -> Running {
        let name = role.arn.rsplit('/').next().unwrap_or(&role.arn).to_string();
        let key = TargetKey { account: account.into(), region: region.into(), kind: KIND, service: SERVICE, name };
        let config = base.to_builder().region(Region::new(region.to_string())).build();
        let (sender, receiver) = watch::channel(None);
        let task = tokio::spawn(run(config, role, key.clone(), report.clone(), sender));
        Running { task, assumed: Assumed::new(receiver), key, report }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
        self.report.remove(&self.key);
    }
}

async fn run(config: SdkConfig, role: Role, key: TargetKey, report: Report, sender: watch::Sender<Option<Credentials>>) {
    let mut health = Health::default();
    let mut backoff = BACKOFF.0;
    loop {
        // The client is made for each renewal, about once an hour, rather than kept: an SDK client
        // is about 16 KiB, which every member account of an organization would keep, most of them
        // with no pipeline. The request's future is boxed for the same reason (see
        // `collector::run_target`): inline, this idle task would keep its kilobytes between renewals.
        let sts = aws_sdk_sts::Client::new(&config);
        let request = sts
            .assume_role()
            .role_arn(&role.arn)
            .role_session_name("codepipeline-exporter")
            .set_external_id(role.external_id.clone())
            .send();
        let assumed = Box::pin(aws::recorded(&report.telemetry, SERVICE, "AssumeRole", request, &[])).await;
        drop(sts);
        health.record(&key, assumed.as_ref().map(|_| ()));
        let (pause, expires) = match assumed.as_ref().ok().and_then(|output| output.credentials()) {
            Some(credentials) => {
                let expiry = SystemTime::try_from(*credentials.expiration()).ok();
                sender.send_replace(Some(Credentials::new(
                    credentials.access_key_id(),
                    credentials.secret_access_key(),
                    Some(credentials.session_token().to_string()),
                    expiry,
                    "AssumeRole",
                )));
                backoff = BACKOFF.0;
                let left = expiry.and_then(|at| at.duration_since(SystemTime::now()).ok()).unwrap_or_default();
                let renew_in = left.saturating_sub(RENEW_BEFORE.min(left / 2)).max(MIN_LIFETIME);
                // Judged stale against the renewal period, which a failed renewal's short retries
                // leave as it was.
                health.expect_every(renew_in);
                (renew_in, expiry)
            }
            None => {
                let pause = backoff;
                backoff = (backoff * 2).min(BACKOFF.1);
                (pause, None)
            }
        };
        let state = expires.map(|at| format!("expire at {}", httpdate::fmt_http_date(at)));
        report.publish(&key, &health, state, Some(crate::exposition::unix_seconds(SystemTime::now() + pause)));
        tokio::time::sleep(pause).await;
    }
}
