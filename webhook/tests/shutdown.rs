//! Graceful shutdown of the HTTPS server (no test bed needed): a request in flight when the
//! signal comes is answered, idle keep-alive connections are closed, and the server returns.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed step fails the test"
)]

mod support;

use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::post;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use kafka_e2ee_webhook::server::{DRAIN, serve_tls};

fn post_to(path: &str) -> hyper::Request<Full<Bytes>> {
    hyper::Request::post(path)
        .header("host", "127.0.0.1")
        .body(Full::new(Bytes::from_static(b"{}")))
        .unwrap()
}

#[tokio::test]
async fn in_flight_requests_finish_and_idle_connections_close_on_shutdown() {
    let (tls, ca) = support::local_tls();
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
    let server = tokio::spawn(serve_tls(listener, tls, app, Default::default(), async {
        let _ = stopped.await;
    }));

    let mut idle = support::http1_client(port, &ca).await;
    let mut busy = support::http1_client(port, &ca).await;
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
