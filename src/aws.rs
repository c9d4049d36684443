//! AWS clients for one account and region, and the one place every AWS call goes through.
//!
//! Credentials, region and endpoints come from the SDK's standard chain (environment, profiles,
//! web identity, container and instance metadata, `AWS_ENDPOINT_URL*`); an account may add a role
//! to assume on top of it. Every call is bounded by the configured timeout, waits for a permit of
//! its account and region so that no more than `max_concurrent_requests` run at once, and is
//! counted by operation and error code.

use std::future::Future;
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider, error::CredentialsError, future};
use aws_sdk_codepipeline::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_types::timeout::TimeoutConfig;
use tokio::sync::{Semaphore, watch};

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::http::SharedHttpClient;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::AfterDeserializationInterceptorContextRef;
use aws_smithy_runtime_api::client::orchestrator::{HttpResponse, Metadata};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;

use crate::budget::{Budget, Class, Promote};
use crate::metrics_push::Recorder;
use crate::telemetry::Telemetry;
use crate::traces::Sink;

/// Settings the configuration file does not carry: the in-process simulator of the demo and of
/// the tests replaces the AWS endpoint and the credential chain with these.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub endpoint_url: Option<String>,
    pub credentials: Option<Credentials>,
    /// One HTTP client, its connection pools and TLS roots, for every account: left to the SDK,
    /// each client of an organization's hundreds of accounts builds one of its own (100 MB at
    /// 200 accounts in the benchmark). Set by the scheduler, from [`http_client`].
    pub http_client: Option<SharedHttpClient>,
}

/// The HTTPS client the SDK would build for each of its clients, built once: rustls with
/// aws-lc, the system's roots, and the proxy of the environment (`HTTPS_PROXY`, `NO_PROXY`).
///
/// At most [`IDLE_CONNECTIONS_PER_HOST`] idle connections are kept per endpoint. Left unbounded
/// (hyper's default), every connection opened while thousands of scopes start at once stays
/// pooled for 90 s, 20 MB at 300 scopes in a test, and comes back with the next burst.
pub fn http_client() -> SharedHttpClient {
    use aws_smithy_http_client::{Builder, ConnectorBuilder, proxy::ProxyConfig, tls};
    Builder::new().build_with_connector_fn(|settings, components| {
        // On the connector's own builder: `build_with_connector_fn` drops the pool settings of
        // the outer one.
        let mut connector = ConnectorBuilder::default()
            .pool_max_idle_per_host(IDLE_CONNECTIONS_PER_HOST)
            .tls_provider(tls::Provider::Rustls(tls::rustls_provider::CryptoMode::AwsLc));
        connector.set_connector_settings(settings.cloned());
        if let Some(components) = components {
            connector.set_sleep_impl(components.sleep_impl());
        }
        connector.set_proxy_config(Some(ProxyConfig::from_env()));
        connector.build()
    })
}

/// Idle keep-alive connections kept per AWS endpoint (a service in a region): enough for the
/// calls of a steady poll cycle to find one, few enough to bound what a burst leaves behind.
pub const IDLE_CONNECTIONS_PER_HOST: usize = 16;

/// The clients of one account and region, the permits their calls share, the telemetry they
/// report to, and where finished runs go as traces and the CI/CD metrics are recorded when those
/// are on.
#[derive(Clone)]
pub struct Scope {
    pub account: Arc<str>,
    pub region: Arc<str>,
    /// The SDK clients, built when a call first needs them (see [`Clients`]).
    clients: Arc<ClientSource>,
    pub traces: Option<Sink>,
    /// Where collectors record the CI/CD metrics the OTLP push sends, when it is on.
    pub metrics: Option<Recorder>,
    /// The account's role, when it has one: its collectors wait until it is assumed.
    pub credentials: Option<Assumed>,
    /// The place in the budget's queue of this scope's calls, and what makes one waiting there
    /// urgent.
    class: Class,
    promote: Option<Arc<Promote>>,
    budget: Arc<Budget>,
    permits: Arc<Semaphore>,
    telemetry: Arc<Telemetry>,
}

/// What a scope's SDK clients are built from, and the clients while something holds them.
struct ClientSource {
    config: SdkConfig,
    attempts: AttemptCounter,
    current: Mutex<Weak<Clients>>,
}

/// The SDK clients of one account and region, each built on first use. A client takes about
/// 16 KiB, and most scopes of an organization hold nothing to poll: their discovery builds what it
/// calls, and drops it with the round. Only targets polled at `interval` keep them between polls
/// ([`Scope::hold`]), so a scope with pipelines builds its clients once.
pub struct Clients {
    source: Arc<ClientSource>,
    codepipeline: OnceLock<aws_sdk_codepipeline::Client>,
    codeconnections: OnceLock<aws_sdk_codeconnections::Client>,
    codebuild: OnceLock<aws_sdk_codebuild::Client>,
}

impl Clients {
    fn codepipeline(&self) -> &aws_sdk_codepipeline::Client {
        self.codepipeline.get_or_init(|| {
            let config = aws_sdk_codepipeline::config::Builder::from(&self.source.config)
                .interceptor(self.source.attempts.clone())
                .build();
            aws_sdk_codepipeline::Client::from_conf(config)
        })
    }

    fn codeconnections(&self) -> &aws_sdk_codeconnections::Client {
        self.codeconnections.get_or_init(|| {
            let config = aws_sdk_codeconnections::config::Builder::from(&self.source.config)
                .interceptor(self.source.attempts.clone())
                .build();
            aws_sdk_codeconnections::Client::from_conf(config)
        })
    }

    fn codebuild(&self) -> &aws_sdk_codebuild::Client {
        self.codebuild.get_or_init(|| {
            let config =
                aws_sdk_codebuild::config::Builder::from(&self.source.config).interceptor(self.source.attempts.clone()).build();
            aws_sdk_codebuild::Client::from_conf(config)
        })
    }
}

/// How each account and region may call AWS.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    pub max_concurrent_requests: usize,
    pub requests_per_second: f64,
    pub burst: u32,
}

/// The AWS region of the environment, for accounts that name no region.
pub async fn default_region(overrides: &Overrides) -> Option<String> {
    if overrides.endpoint_url.is_some() {
        return Some("us-east-1".into());
    }
    aws_config::default_provider::region::DefaultRegionChain::builder().build().region().await.map(|r| r.to_string())
}

/// The newest credentials of the role, for the SDK clients of the account: none until the role
/// was first assumed.
#[derive(Debug, Clone)]
pub struct Assumed(watch::Receiver<Option<Credentials>>);

impl Assumed {
    /// The credentials `receiver` is sent, as [`crate::credentials`] renews them.
    pub fn new(receiver: watch::Receiver<Option<Credentials>>) -> Assumed {
        Assumed(receiver)
    }

    /// Whether the role was assumed.
    pub fn ready(&self) -> bool {
        self.0.borrow().is_some()
    }

    /// Waits until the role was assumed.
    pub async fn wait(&self) {
        let mut receiver = self.0.clone();
        // The sender lives as long as the account's task; without it there is nothing to wait for.
        let _ = receiver.wait_for(Option::is_some).await;
    }
}

impl ProvideCredentials for Assumed {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::ready(
            self.0.borrow().clone().ok_or_else(|| CredentialsError::not_loaded("the account's role is not assumed yet")),
        )
    }
}

/// The SDK configuration shared by every region of one account: the standard credential chain,
/// or the credentials of the account's role once [`crate::credentials`] assumed it.
pub async fn account_config(request_timeout: Duration, overrides: &Overrides, role: Option<&Assumed>) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .timeout_config(TimeoutConfig::builder().operation_timeout(request_timeout).build());
    if let Some(url) = &overrides.endpoint_url {
        loader = loader.endpoint_url(url).region(Region::new("us-east-1"));
    }
    if let Some(credentials) = &overrides.credentials {
        loader = loader.credentials_provider(credentials.clone());
    }
    if let Some(http_client) = &overrides.http_client {
        loader = loader.http_client(http_client.clone());
    }
    let base = loader.load().await;
    match role {
        Some(assumed) => base.into_builder().credentials_provider(SharedCredentialsProvider::new(assumed.clone())).build(),
        None => base,
    }
}

impl Scope {
    pub fn new(account: &str, region: &str, base: &SdkConfig, limits: Limits, telemetry: Arc<Telemetry>) -> Scope {
        let config = base.to_builder().region(Region::new(region.to_string())).build();
        let account: Arc<str> = account.into();
        let region: Arc<str> = region.into();
        let attempts = AttemptCounter { account: account.clone(), region: region.clone(), telemetry: telemetry.clone() };
        let budget = Arc::new(Budget::new(limits.requests_per_second, limits.burst));
        telemetry.register_budget(&account, &region, &budget);
        Scope {
            account,
            region,
            clients: Arc::new(ClientSource { config, attempts, current: Mutex::new(Weak::new()) }),
            traces: None,
            metrics: None,
            credentials: None,
            class: Class::Scheduled,
            promote: None,
            budget,
            permits: Arc::new(Semaphore::new(limits.max_concurrent_requests)),
            telemetry,
        }
    }

    /// The scope's clients: those something still holds, or a new set. Holding the result keeps
    /// them, and every client built through it, for the next call.
    pub fn hold(&self) -> Arc<Clients> {
        let mut current = self.clients.current.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(clients) = current.upgrade() {
            return clients;
        }
        let clients = Arc::new(Clients {
            source: self.clients.clone(),
            codepipeline: OnceLock::new(),
            codeconnections: OnceLock::new(),
            codebuild: OnceLock::new(),
        });
        *current = Arc::downgrade(&clients);
        clients
    }

    /// The CodePipeline client. Cheap to clone; built if nothing holds the scope's clients.
    pub fn codepipeline(&self) -> aws_sdk_codepipeline::Client {
        self.hold().codepipeline().clone()
    }

    /// The CodeConnections client. Cheap to clone; built if nothing holds the scope's clients.
    pub fn codeconnections(&self) -> aws_sdk_codeconnections::Client {
        self.hold().codeconnections().clone()
    }

    /// The CodeBuild client. Cheap to clone; built if nothing holds the scope's clients.
    pub fn codebuild(&self) -> aws_sdk_codebuild::Client {
        self.hold().codebuild().clone()
    }

    /// The same scope, its calls queued in `class` (see [`crate::budget`]).
    pub fn with_class(&self, class: Class) -> Scope {
        Scope { class, ..self.clone() }
    }

    /// The same scope, its waiting calls made urgent once `promote` says so.
    pub fn promoted_by(&self, promote: Arc<Promote>) -> Scope {
        Scope { promote: Some(promote), ..self.clone() }
    }

    /// The same scope, its collectors waiting for `credentials`.
    pub fn with_credentials(mut self, credentials: Option<Assumed>) -> Scope {
        self.credentials = credentials;
        self
    }

    /// Waits until the account's credentials are there; returns whether it had to wait.
    pub async fn credentials_ready(&self) -> bool {
        match &self.credentials {
            Some(assumed) if !assumed.ready() => {
                assumed.wait().await;
                true
            }
            _ => false,
        }
    }

    /// The same scope, handing finished runs to `traces`.
    pub fn with_traces(mut self, traces: Option<Sink>) -> Scope {
        self.traces = traces;
        self
    }

    /// The same scope, recording the CI/CD metrics in `metrics`.
    pub fn with_metrics(mut self, metrics: Option<Recorder>) -> Scope {
        self.metrics = metrics;
        self
    }

    /// Runs one AWS call within this scope's request budget and concurrency limit, and records it.
    /// Waiting for the budget or a permit is not part of the recorded duration. Error codes in
    /// `answers` are expected answers of the operation (a branch that never synced), not failures:
    /// they are not counted as errors.
    ///
    /// `request` makes the SDK's request future only once the call may go, and that future is
    /// boxed: it is several kilobytes, and a poll's future would otherwise hold that much while it
    /// waits in the budget's queue, where every target waits at start-up.
    pub async fn call<T, E, F>(
        &self,
        service: &'static str,
        operation: &'static str,
        request: impl FnOnce() -> F,
        answers: &[&str],
    ) -> Result<T, CallError>
    where
        F: Future<Output = Result<T, SdkError<E, HttpResponse>>>,
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        self.budget.acquire(self.class, self.promote.as_deref()).await;
        let _permit = self.permits.acquire().await;
        recorded(&self.telemetry, service, operation, Box::pin(request()), answers).await
    }
}

/// Runs one AWS call and records it: its duration, and its error code unless it is one of
/// `answers`, the operation's expected answers.
pub async fn recorded<T, E>(
    telemetry: &Telemetry,
    service: &'static str,
    operation: &'static str,
    request: impl Future<Output = Result<T, SdkError<E, HttpResponse>>>,
    answers: &[&str],
) -> Result<T, CallError>
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let started = Instant::now();
    let result = request.await.map_err(CallError::from);
    let code = result.as_ref().err().map(|e| e.code.as_str()).filter(|code| !answers.contains(code));
    telemetry.observe(service, operation, started.elapsed(), code);
    result
}

/// The clients of an account's events queue, in the queue's region. Their calls are recorded like
/// every other, but draw on no request budget: SQS and STS quotas are the services' own, far above
/// what one consumer asks.
#[derive(Clone)]
pub struct QueueClients {
    pub account: Arc<str>,
    pub sqs: aws_sdk_sqs::Client,
    pub sts: aws_sdk_sts::Client,
    telemetry: Arc<Telemetry>,
}

impl QueueClients {
    /// `long_poll` is how long ReceiveMessage may wait for a message: it is added to the
    /// operation timeout, which would otherwise cut every empty wait short.
    pub fn new(
        account: &str,
        base: &SdkConfig,
        region: &str,
        request_timeout: Duration,
        long_poll: Duration,
        telemetry: Arc<Telemetry>,
    ) -> QueueClients {
        let region_config = base.to_builder().region(Region::new(region.to_string())).build();
        let account: Arc<str> = account.into();
        let attempts = AttemptCounter { account: account.clone(), region: region.into(), telemetry: telemetry.clone() };
        let sqs = aws_sdk_sqs::config::Builder::from(&region_config)
            .timeout_config(TimeoutConfig::builder().operation_timeout(request_timeout + long_poll).build())
            .interceptor(attempts.clone())
            .build();
        let sts = aws_sdk_sts::config::Builder::from(&region_config).interceptor(attempts).build();
        QueueClients { account, sqs: aws_sdk_sqs::Client::from_conf(sqs), sts: aws_sdk_sts::Client::from_conf(sts), telemetry }
    }

    /// Runs one call of the queue's clients and records it.
    pub async fn call<T, E>(
        &self,
        service: &'static str,
        operation: &'static str,
        request: impl Future<Output = Result<T, SdkError<E, HttpResponse>>>,
    ) -> Result<T, CallError>
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        recorded(&self.telemetry, service, operation, request, &[]).await
    }
}

/// The token of the next page, if there is one: AWS ends a listing with no token or an empty one.
pub fn next_token(token: Option<&str>) -> Option<String> {
    token.filter(|token| !token.is_empty()).map(str::to_string)
}

/// Reads a paginated listing: `fetch` gets each page's token (none for the first) and returns the
/// page and the next token; `each` gets every page and whether another follows, and may stop the
/// listing early. It ends after the last page, or at the first error.
pub async fn for_each_page<P, F>(
    mut fetch: impl FnMut(Option<String>) -> F,
    mut each: impl FnMut(P, bool) -> ControlFlow<()>,
) -> Result<(), CallError>
where
    F: Future<Output = Result<(P, Option<String>), CallError>>,
{
    let mut token = None;
    loop {
        let (page, next) = fetch(token).await?;
        let more = next.is_some();
        if each(page, more).is_break() || !more {
            return Ok(());
        }
        token = next;
    }
}

/// Counts every attempt the SDK makes, retries included, and the attempts AWS throttled, which the
/// SDK retries and so hides from the caller.
#[derive(Clone)]
struct AttemptCounter {
    account: Arc<str>,
    region: Arc<str>,
    telemetry: Arc<Telemetry>,
}

impl std::fmt::Debug for AttemptCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttemptCounter").field("account", &self.account).field("region", &self.region).finish()
    }
}

impl Intercept for AttemptCounter {
    fn name(&self) -> &'static str {
        "AttemptCounter"
    }

    fn read_after_deserialization(
        &self,
        context: &AfterDeserializationInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let response = context.response();
        let status = response.status().as_u16();
        // awsJson throttles with 400 and RPC v2 CBOR with 429; both name the error in the body,
        // which the SDK has read into memory by now: ThrottlingException, or SQS's
        // RequestThrottled, as its model names it.
        let throttled = status == 429
            || (status >= 400
                && response.body().bytes().is_some_and(|body| {
                    body.windows(10).any(|w| w == b"Throttling") || body.windows(16).any(|w| w == b"RequestThrottled")
                }));
        let operation = cfg.load::<Metadata>().map(|m| (m.service().to_ascii_lowercase(), m.name().to_string()));
        if let Some((service, operation)) = operation {
            self.telemetry.observe_attempt(&self.account, &self.region, &service, &operation, throttled);
        }
        Ok(())
    }
}

/// A failed AWS call, reduced to what the exporter reports: a short, bounded code for metrics and
/// the full description for the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {detail}")]
pub struct CallError {
    pub code: String,
    pub detail: String,
}

impl<E> From<SdkError<E, HttpResponse>> for CallError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    fn from(err: SdkError<E, HttpResponse>) -> CallError {
        let detail = match &err {
            SdkError::ServiceError(service) => match (service.err().code(), service.err().message()) {
                (Some(code), Some(message)) => format!("{code}: {message}"),
                _ => chain(&err),
            },
            _ => chain(&err),
        };
        CallError { code: error_code(&err), detail }
    }
}

/// An error and its sources, each by its Display, without the SDK's debug dump of the raw
/// response.
fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(next) = source {
        text.push_str(": ");
        text.push_str(&next.to_string());
        source = next.source();
    }
    text
}

/// A short, bounded name for what went wrong: the AWS error code when AWS answered with one, the
/// kind of failure otherwise. Never the message, which may quote request data.
pub fn error_code<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> String {
    match err {
        SdkError::ServiceError(service) => match service.err().code() {
            Some(code) => code.to_string(),
            // A successful status whose body the SDK could not read (RPC v2 CBOR reports it so).
            None if service.raw().status().is_success() => "ResponseError".into(),
            None => "Unknown".into(),
        },
        SdkError::TimeoutError(_) => "Timeout".into(),
        SdkError::DispatchFailure(failure) if failure.is_timeout() => "Timeout".into(),
        SdkError::DispatchFailure(_) => "ConnectionError".into(),
        SdkError::ResponseError(_) => "ResponseError".into(),
        SdkError::ConstructionFailure(_) => "ConstructionFailure".into(),
        _ => "Unknown".into(),
    }
}

/// Errors that will not go away by polling again: logged once per target rather than per poll.
pub fn is_permanent(code: &str) -> bool {
    matches!(
        code,
        "AccessDeniedException"
            | "AccessDenied"
            | "UnrecognizedClientException"
            | "InvalidClientTokenId"
            | "PipelineNotFoundException"
            | "AWS.SimpleQueueService.NonExistentQueue"
    )
}
