//! HTTPS serving: `/mutate` and `/validate` on an axum router, over rustls, one task per
//! connection (the TLS handshake included, so a slow client never holds up the accept loop).

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use hyper_util::rt::TokioIo;
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

/// How long in-flight requests get to finish after a shutdown signal.
pub const DRAIN: std::time::Duration = std::time::Duration::from_secs(5);

/// Serves `app` over TLS on `listener` until `shutdown` resolves, then stops accepting, asks
/// every open connection to close after its current request (the apiserver keeps connections
/// alive) and waits up to [`DRAIN`] for them: a rollout does not fail admissions in flight.
pub async fn serve_tls(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: Router,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let acceptor = TlsAcceptor::from(tls);
    let (closing, _) = tokio::sync::watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
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
            let tls = match acceptor.accept(tcp).await {
                Ok(tls) => tls,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
            };
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tls), service);
            tokio::pin!(connection);
            let served = tokio::select! {
                served = connection.as_mut() => served,
                _ = closing.changed() => {
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
