//! HTTPS serving: `/mutate` and `/validate` on an axum router, over rustls, one task per
//! connection (the TLS handshake included, so a slow client never holds up the accept loop).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::metrics::Metrics;
use crate::review::{Admission, IndexSource, Webhook};

/// The largest AdmissionReview accepted (the apiserver's own request limit is 3 MiB; a
/// review carries the object twice on update).
const MAX_BODY: usize = 8 * 1024 * 1024;

pub struct AppState<I> {
    pub admission: Admission<I>,
    pub metrics: Metrics,
}

/// The webhook's routes.
pub fn router<I: IndexSource + 'static>(state: Arc<AppState<I>>) -> Router {
    Router::new()
        .route(
            "/mutate",
            post(
                |State(s): State<Arc<AppState<I>>>, body: Bytes| async move {
                    handle(&s, Webhook::Mutate, &body)
                },
            ),
        )
        .route(
            "/validate",
            post(
                |State(s): State<Arc<AppState<I>>>, body: Bytes| async move {
                    handle(&s, Webhook::Validate, &body)
                },
            ),
        )
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

fn handle<I: IndexSource>(state: &AppState<I>, webhook: Webhook, body: &[u8]) -> Response {
    let started = Instant::now();
    let handled = state.admission.handle(webhook, body);
    state.metrics.observe(
        webhook,
        handled.outcome,
        &handled.reasons,
        started.elapsed().as_secs_f64(),
    );
    if handled.status != 200 {
        tracing::warn!(webhook = webhook.as_str(), status = handled.status, message = %String::from_utf8_lossy(&handled.body), "bad admission request");
    } else if !handled.reasons.is_empty() {
        tracing::info!(webhook = webhook.as_str(), outcome = handled.outcome.as_str(), reasons = ?handled.reasons, "admission problem");
    }
    let status = StatusCode::from_u16(handled.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let content_type = if status == StatusCode::OK {
        "application/json"
    } else {
        "text/plain; charset=utf-8"
    };
    (status, [(header::CONTENT_TYPE, content_type)], handled.body).into_response()
}

/// What one client may hold of the server: any pod can open connections to the webhook's
/// port, so none may keep a descriptor or task for long without completing requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// A TLS handshake not finished within this is dropped.
    pub handshake_timeout: Duration,
    /// Request headers not complete within this (also between requests on a kept-alive
    /// connection) close the connection.
    pub header_read_timeout: Duration,
    /// Connections served at once; further ones wait in the listen backlog.
    pub max_connections: usize,
    /// A connection is asked to close after this long (after its current request), so none
    /// lives forever and the apiserver spreads over restarted replicas.
    pub max_connection_age: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            max_connections: 1024,
            max_connection_age: Duration::from_secs(600),
        }
    }
}

/// How long in-flight requests get to finish after a shutdown signal.
pub const DRAIN: std::time::Duration = std::time::Duration::from_secs(5);

/// Serves `app` over TLS on `listener` until `shutdown` resolves, then stops accepting, asks
/// every open connection to close after its current request (the apiserver keeps connections
/// alive) and waits up to [`DRAIN`] for them: a rollout does not fail admissions in flight.
pub async fn serve_tls(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let acceptor = TlsAcceptor::from(tls);
    let (closing, _) = tokio::sync::watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
    tokio::pin!(shutdown);
    loop {
        // A slot first: at the cap, new connections wait in the kernel's backlog instead of
        // costing a descriptor and a task each.
        let slot = tokio::select! {
            slot = Arc::clone(&slots).acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            () = &mut shutdown => break,
        };
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                // Out of file descriptors and the like: back off instead of spinning.
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            // Reap finished connections so the set stays the size of the open ones.
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            () = &mut shutdown => break,
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let service = TowerToHyperService::new(app.clone());
        let mut closing = closing.subscribe();
        connections.spawn(async move {
            let _slot = slot;
            let tls =
                match tokio::time::timeout(limits.handshake_timeout, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "TLS handshake timed out");
                        return;
                    }
                };
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout)
                .serve_connection(TokioIo::new(tls), service);
            tokio::pin!(connection);
            let too_old = tokio::time::sleep(limits.max_connection_age);
            tokio::pin!(too_old);
            let served = tokio::select! {
                served = connection.as_mut() => served,
                _ = closing.changed() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
                () = &mut too_old => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(e) = served {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    let _ = closing.send(true);
    let open = connections.len();
    if tokio::time::timeout(DRAIN, async {
        while connections.join_next().await.is_some() {}
    })
    .await
    .is_err()
    {
        tracing::warn!(
            open,
            "connections still open after the drain period; closing them"
        );
    }
    Ok(())
}
