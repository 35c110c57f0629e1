//! Graceful shutdown of the HTTPS server (no test bed needed): a request in flight when the
//! signal comes is answered, idle keep-alive connections are closed, and the server returns.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed step fails the test"
)]

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::routing::post;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use kafka_e2ee_webhook::certs::issue;
use kafka_e2ee_webhook::server::{DRAIN, serve_tls};
use kafka_e2ee_webhook::tls::{CertResolver, certified_key, server_config};

async fn client(port: u16, ca: &str) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
    let tls = support::tls_connect(port, ca).await;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender
}

fn post_to(path: &str) -> hyper::Request<Full<Bytes>> {
    hyper::Request::post(path)
        .header("host", "127.0.0.1")
        .body(Full::new(Bytes::from_static(b"{}")))
        .unwrap()
}

#[tokio::test]
async fn in_flight_requests_finish_and_idle_connections_close_on_shutdown() {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let bundle = issue(
        &["127.0.0.1".to_owned()],
        Duration::from_secs(3600),
        None,
        now,
    )
    .unwrap();
    let resolver = Arc::new(CertResolver::default());
    resolver.set(certified_key(bundle.cert.as_bytes(), bundle.key.as_bytes()).unwrap());
    let app = Router::new().route(
        "/slow",
        post(|| async {
            tokio::time::sleep(Duration::from_millis(700)).await;
            "done"
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve_tls(
        listener,
        server_config(resolver).unwrap(),
        app,
        async {
            let _ = stopped.await;
        },
    ));

    let mut idle = client(port, &bundle.ca_cert).await;
    let mut busy = client(port, &bundle.ca_cert).await;
    // The idle connection has served one request and is kept alive.
    assert_eq!(
        idle.send_request(post_to("/slow")).await.unwrap().status(),
        200
    );
    let in_flight = tokio::spawn(async move {
        let response = busy.send_request(post_to("/slow")).await.unwrap();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, body)
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let signalled = Instant::now();
    stop.send(()).unwrap();

    let (status, body) = in_flight.await.unwrap();
    assert_eq!(
        (status.as_u16(), &body[..]),
        (200, &b"done"[..]),
        "the request in flight was answered"
    );
    tokio::time::timeout(DRAIN, server)
        .await
        .expect("the server did not return within the drain period")
        .unwrap()
        .unwrap();
    assert!(
        signalled.elapsed() < DRAIN,
        "the idle keep-alive connection held the shutdown for {:?}",
        signalled.elapsed()
    );
    // No new connections after shutdown.
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
    );
    assert!(
        idle.send_request(post_to("/slow")).await.is_err(),
        "the idle connection was closed"
    );
}
