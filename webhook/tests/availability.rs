//! The HTTPS server against clients that hold connections without completing requests (no
//! test bed needed): any pod can open connections to the webhook's port, so half-open TLS
//! handshakes, headers that never end and idle keep-alive connections must all be closed on a
//! schedule, at most `max_connections` are held at once, and a real request still gets
//! through while the attack goes on.

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
use http_body_util::Full;
use hyper::body::Bytes;
use kafka_e2ee_webhook::server::{ConnectionLimits, serve_tls};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

const LIMITS: ConnectionLimits = ConnectionLimits {
    handshake_timeout: Duration::from_secs(1),
    header_read_timeout: Duration::from_secs(1),
    max_connections: 16,
    max_connection_age: Duration::from_secs(3),
};

async fn start() -> (u16, String) {
    let (tls, ca) = support::local_tls();
    let app = Router::new().route("/ok", post(|| async { "ok" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(serve_tls(
        listener,
        tls,
        app,
        LIMITS,
        std::future::pending(),
    ));
    (port, ca)
}

fn post_ok() -> hyper::Request<Full<Bytes>> {
    hyper::Request::post("/ok")
        .header("host", "127.0.0.1")
        .body(Full::new(Bytes::from_static(b"{}")))
        .unwrap()
}

/// Waits until the server closes `stream` (a read returns end of file or an error).
async fn closed_within(stream: &mut (impl tokio::io::AsyncRead + Unpin), limit: Duration) -> bool {
    let mut buf = [0u8; 256];
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

fn open_descriptors() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[tokio::test]
async fn half_open_handshakes_are_dropped_and_a_real_request_still_gets_through() {
    let (port, ca) = start().await;
    let before = open_descriptors();
    // 48 connections that never start TLS: three times the cap.
    let mut attackers = Vec::new();
    for _ in 0..48 {
        attackers.push(TcpStream::connect(("127.0.0.1", port)).await.unwrap());
    }
    // A real client meanwhile: it waits for a slot at most a few handshake timeouts.
    let started = Instant::now();
    let mut client = support::http1_client(port, &ca).await;
    assert_eq!(client.send_request(post_ok()).await.unwrap().status(), 200);
    let waited = started.elapsed();
    assert!(waited < Duration::from_secs(8), "served after {waited:?}");
    // Every attacker is closed by the server: at most 16 at a time, one handshake timeout
    // each.
    for (i, attacker) in attackers.iter_mut().enumerate() {
        assert!(
            closed_within(attacker, Duration::from_secs(10)).await,
            "attacker {i} still open"
        );
    }
    drop(attackers);
    drop(client);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = open_descriptors();
    assert!(
        after <= before + 4,
        "descriptors: {before} before, {after} after the attack"
    );
}

#[tokio::test]
async fn headers_that_never_end_and_idle_keep_alive_connections_are_closed() {
    let (port, ca) = start().await;
    // TLS done, then half a request head, then nothing.
    let mut slow = support::tls_connect(port, &ca).await;
    slow.write_all(b"POST /ok HTTP/1.1\r\nhost: 127.0.0.1\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    assert!(closed_within(&mut slow, Duration::from_secs(5)).await);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900),
        "closed after {took:?}, before the header timeout"
    );

    // A request answered, then the connection kept alive and idle: closed by the header
    // timeout of the next request or, at the latest, at the connection's maximum age.
    let mut idle = support::tls_connect(port, &ca).await;
    idle.write_all(b"POST /ok HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: 2\r\n\r\n{}")
        .await
        .unwrap();
    let mut head = [0u8; 12];
    idle.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    assert!(
        closed_within(
            &mut idle,
            LIMITS.max_connection_age + Duration::from_secs(2)
        )
        .await
    );
}

#[tokio::test]
async fn a_busy_keep_alive_connection_is_recycled_at_its_maximum_age() {
    let (port, ca) = start().await;
    let mut client = support::http1_client(port, &ca).await;
    let started = Instant::now();
    let mut served = 0;
    // One request every 200 ms (never idle long enough for the header timeout).
    while client.ready().await.is_ok() {
        match client.send_request(post_ok()).await {
            Ok(response) if response.status() == 200 => served += 1,
            _ => break,
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "still open after {served} requests"
        );
    }
    let lived = started.elapsed();
    assert!(served > 5, "{served}");
    assert!(
        lived >= LIMITS.max_connection_age && lived < LIMITS.max_connection_age * 2,
        "closed after {lived:?}"
    );
}
