//! The HTTP server: `/metrics`, a landing page, and the health and readiness endpoints.
//!
//! A scrape ([`crate::scrape`]) copies what the store already assembled and appends the
//! exporter's own few metrics: it never calls AWS and never waits on a poll. Connections are
//! capped and must send their headers promptly, so a slow or abusive client cannot exhaust the
//! server; on shutdown the server stops accepting and lets responses in flight finish.

use std::convert::Infallible;
use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue, WWW_AUTHENTICATE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use crate::readiness::Readiness;
use crate::reload::Reloader;
use crate::scrape::{Body, Scrapes};
use crate::webconfig::{Access, WebConfig};

/// How long a client may take to send its request headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; further ones wait in the kernel's accept queue.
const MAX_CONNECTIONS: usize = 512;
/// How long responses in flight may take to finish after a shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// What the handlers read.
pub struct State {
    pub scrapes: Scrapes,
    pub readiness: Arc<Readiness>,
    pub reloader: Reloader,
    pub telemetry_path: String,
    /// TLS, users and headers; a reload replaces it, and new connections use the new one.
    pub web: RwLock<Arc<WebConfig>>,
}

/// Serves until `shutdown` resolves, then drains connections for a few seconds.
pub async fn serve(listener: TcpListener, state: Arc<State>, shutdown: impl Future<Output = ()>) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let connections = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT).max_buf_size(64 * 1024);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = connections.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Running out of file descriptors must not end the server: back off and retry.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // A response goes out as several buffers; with Nagle's algorithm the last small one
        // would wait for the client's delayed acknowledgement, about 40 ms on Linux.
        if let Err(err) = stream.set_nodelay(true) {
            tracing::debug!(error = %err, "could not disable Nagle's algorithm");
        }
        let web = state.web.read().unwrap_or_else(|e| e.into_inner()).clone();
        let tls = web.tls.clone();
        let connection_state = state.clone();
        let service = hyper::service::service_fn(move |request| {
            let (state, web) = (connection_state.clone(), web.clone());
            async move { Ok::<_, Infallible>(respond(&state, &web, request).await) }
        });
        let (builder, watcher) = (builder.clone(), graceful.watcher());
        tokio::spawn(async move {
            match tls {
                None => {
                    let _ = watcher.watch(builder.serve_connection(TokioIo::new(stream), service)).await;
                }
                // The handshake runs in the connection's own task: a client that stalls or fails
                // it is dropped without holding up anyone else.
                Some(tls) => match tokio::time::timeout(HEADER_READ_TIMEOUT, TlsAcceptor::from(tls).accept(stream)).await {
                    Ok(Ok(stream)) => {
                        let _ = watcher.watch(builder.serve_connection(TokioIo::new(stream), service)).await;
                    }
                    Ok(Err(err)) => tracing::debug!(error = %err, "TLS handshake failed"),
                    Err(_) => tracing::debug!("TLS handshake timed out"),
                },
            }
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await.is_err() {
        tracing::warn!("connections still open after the shutdown grace period; closing them");
    }
}

/// Checks the credentials the web configuration asks for, routes, and adds its headers.
async fn respond(state: &State, web: &WebConfig, request: Request<Incoming>) -> Response<Body> {
    let authorization = request.headers().get(AUTHORIZATION).and_then(|v| v.to_str().ok());
    let mut response = match web.check(authorization).await {
        Access::Allowed => route(state, request).await,
        Access::Denied => {
            let mut response = text(StatusCode::UNAUTHORIZED, "Unauthorized\n");
            response.headers_mut().insert(WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"codepipeline-exporter\""));
            response
        }
    };
    for (name, value) in &web.headers {
        response.headers_mut().insert(name.clone(), value.clone());
    }
    response
}

async fn route(state: &State, request: Request<Incoming>) -> Response<Body> {
    let path = request.uri().path();
    if path == "/-/reload" {
        if request.method() != Method::POST && request.method() != Method::PUT {
            return text(StatusCode::METHOD_NOT_ALLOWED, "Only POST or PUT requests allowed\n");
        }
        return match state.reloader.reload().await {
            Ok(()) => text(StatusCode::OK, "Reloaded\n"),
            Err(err) => {
                let mut response = Response::new(Full::new(Bytes::from(format!("failed to reload config: {err}\n"))).boxed());
                *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
                response
            }
        };
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed\n");
    }
    if path == state.telemetry_path {
        return state.scrapes.respond(request.headers());
    }
    match path {
        "/" => landing_page(state),
        "/-/healthy" => text(StatusCode::OK, "Healthy\n"),
        "/-/ready" if state.readiness.is_ready() => text(StatusCode::OK, "Ready\n"),
        "/-/ready" => text(StatusCode::SERVICE_UNAVAILABLE, "Not ready: the first discovery and poll round is not done\n"),
        _ => text(StatusCode::NOT_FOUND, "Not Found\n"),
    }
}

fn landing_page(state: &State) -> Response<Body> {
    let path = html_escape(&state.telemetry_path);
    let page = format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head><meta charset=\"utf-8\"><title>CodePipeline Exporter</title></head>\n<body>\n\
         <h1>CodePipeline Exporter</h1>\n<p>Prometheus exporter for AWS CodePipeline and AWS CodeConnections, version {}.</p>\n\
         <ul>\n<li><a href=\"{path}\">Metrics</a></li>\n<li><a href=\"/-/healthy\">Health</a></li>\n<li><a href=\"/-/ready\">Readiness</a></li>\n</ul>\n</body>\n</html>\n",
        env!("CARGO_PKG_VERSION"),
    );
    let mut response = Response::new(Full::new(Bytes::from(page)).boxed());
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    response
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())).boxed());
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}
