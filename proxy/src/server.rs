//! Connections: one upstream connection per client connection (no multiplexing across clients,
//! so whatever a client authenticates as upstream stays its own), requests forwarded in order,
//! responses matched to them in order. Requests and responses the proxy does not need to touch
//! are forwarded byte for byte; Produce is sealed, Fetch opened, and every response naming a
//! broker rewritten to the broker's local port.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::{Bytes, BytesMut};
use kafka_e2ee_client::provider::KeyProvider;
use kafka_protocol::messages::api_versions_response::{ApiVersion, ApiVersionsResponse};
use kafka_protocol::messages::describe_cluster_response::DescribeClusterResponse;
use kafka_protocol::messages::fetch_response::FetchResponse;
use kafka_protocol::messages::find_coordinator_response::FindCoordinatorResponse;
use kafka_protocol::messages::metadata_response::MetadataResponse;
use kafka_protocol::messages::produce_request::ProduceRequest;
use kafka_protocol::messages::produce_response::ProduceResponse;
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::crypto::{Crypto, code};
use crate::fetch::open_response;
use crate::frame::{self, FrameError};
use crate::produce::{Refused, merge_refused, seal_request};
use crate::routes::{LOCAL_HOST, RouteError, Routes};
use crate::upstream::{Connector, UpstreamError, UpstreamRead, UpstreamWrite};
use crate::versions::{self, clamp};

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("listening on {addr}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("no upstream broker reachable (tried {tried})")]
    Upstream {
        tried: String,
        #[source]
        source: Option<UpstreamError>,
    },
    #[error("broker node {0} is not known (no Metadata response has named it)")]
    UnknownNode(i32),
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error(transparent)]
    Route(#[from] RouteError),
    #[error("{what}: {detail}")]
    Protocol { what: &'static str, detail: String },
    #[error(
        "the client asked for {api:?} v{version}, which the proxy does not decode (it offered {lo}-{hi} in ApiVersions)"
    )]
    Version {
        api: ApiKey,
        version: i16,
        lo: i16,
        hi: i16,
    },
}

fn protocol(what: &'static str) -> impl FnOnce(anyhow::Error) -> ProxyError {
    move |e| ProxyError::Protocol {
        what,
        detail: format!("{e:#}"),
    }
}

#[derive(Debug, Clone)]
pub struct Settings {
    /// The bootstrap address applications use (127.0.0.1 only).
    pub listen: SocketAddr,
    /// Broker `n` is served on `broker_port_base + n`.
    pub broker_port_base: u16,
    /// The brokers' bootstrap servers.
    pub upstream: Vec<String>,
    /// TCP, TLS and SASL to the brokers.
    pub connector: Connector,
}

/// Which upstream a local listener stands for.
#[derive(Debug, Clone, Copy)]
enum Target {
    Bootstrap,
    Broker(i32),
}

pub struct Proxy<P> {
    settings: Settings,
    crypto: Crypto<P>,
    routes: Routes,
    listening: Mutex<BTreeSet<i32>>,
    connections: Gauge,
    upstream_failures: Family<UpstreamFailureLabels, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamFailureLabels {
    pub reason: &'static str,
}

/// The connection metrics, registered once by the binary.
#[derive(Debug, Default, Clone)]
pub struct ConnectionMetrics {
    pub connections: Gauge,
    pub upstream_failures: Family<UpstreamFailureLabels, Counter>,
}

impl ConnectionMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "kafka_e2ee_proxy_connections",
            "Client connections open",
            self.connections.clone(),
        );
        registry.register(
            "kafka_e2ee_proxy_upstream_failures",
            "Broker connections that failed (reason connect|tls|credentials|authentication|protocol)",
            self.upstream_failures.clone(),
        );
    }
}

/// What the response side must do for the next response, in request order.
enum Expect {
    /// Forward the broker's response as it is.
    Forward { correlation: i32 },
    /// Decode the broker's response and change it.
    Change {
        correlation: i32,
        api: ApiKey,
        version: i16,
        refused: Vec<Refused>,
    },
    /// The proxy's own response (the request never went upstream).
    Answer(Bytes),
}

impl<P: KeyProvider + 'static> Proxy<P> {
    pub fn new(settings: Settings, crypto: Crypto<P>, metrics: ConnectionMetrics) -> Arc<Self> {
        Arc::new(Self {
            routes: Routes::new(settings.broker_port_base),
            settings,
            crypto,
            listening: Mutex::new(BTreeSet::new()),
            connections: metrics.connections,
            upstream_failures: metrics.upstream_failures,
        })
    }

    /// Binds the bootstrap port; then serves until the process ends.
    pub async fn bind(
        self: &Arc<Self>,
    ) -> Result<std::pin::Pin<Box<dyn Future<Output = ()> + Send>>, ProxyError> {
        let addr = self.settings.listen;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ProxyError::Listen { addr, source })?;
        tracing::info!(%addr, upstream = ?self.settings.upstream, "proxy listening (bootstrap)");
        Ok(Arc::clone(self).accept(listener, Target::Bootstrap))
    }

    /// Boxed: a connection may start listeners, which accept connections.
    fn accept(
        self: Arc<Self>,
        listener: TcpListener,
        target: Target,
    ) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(self.accept_loop(listener, target))
    }

    async fn accept_loop(self: Arc<Self>, listener: TcpListener, target: Target) {
        loop {
            match listener.accept().await {
                Ok((client, _)) => {
                    let this = Arc::clone(&self);
                    tokio::spawn(async move {
                        this.connections.inc();
                        if let Err(e) = Arc::clone(&this).serve(client, target).await {
                            tracing::warn!(?target, error = %kafka_e2ee_telemetry::chain(&e), "connection closed");
                        }
                        this.connections.dec();
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        }
    }

    /// Listeners for `nodes`, bound before any client learns their ports.
    async fn ensure_listeners(self: &Arc<Self>, nodes: &[i32]) -> Result<(), ProxyError> {
        for &node in nodes {
            if self.lock_listening().contains(&node) {
                continue;
            }
            let port = self.routes.local_port(node)?;
            let addr: SocketAddr = SocketAddr::from(([127, 0, 0, 1], port));
            let listener = match TcpListener::bind(addr).await {
                Ok(l) => l,
                // Another connection bound it a moment ago.
                Err(_) if self.lock_listening().contains(&node) => continue,
                Err(source) => return Err(ProxyError::Listen { addr, source }),
            };
            if self.lock_listening().insert(node) {
                tracing::info!(node, %addr, "proxy listening (broker)");
                tokio::spawn(Arc::clone(self).accept(listener, Target::Broker(node)));
            }
        }
        Ok(())
    }

    fn lock_listening(&self) -> std::sync::MutexGuard<'_, BTreeSet<i32>> {
        self.listening
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    async fn connect(&self, target: Target) -> Result<(UpstreamRead, UpstreamWrite), ProxyError> {
        let candidates = match target {
            Target::Bootstrap => self.settings.upstream.clone(),
            Target::Broker(node) => vec![
                self.routes
                    .upstream(node)
                    .ok_or(ProxyError::UnknownNode(node))?,
            ],
        };
        let mut last = None;
        for address in &candidates {
            match self.settings.connector.connect(address).await {
                Ok(halves) => return Ok(halves),
                Err(e) => {
                    self.upstream_failures
                        .get_or_create(&UpstreamFailureLabels { reason: e.reason() })
                        .inc();
                    tracing::warn!(error = %kafka_e2ee_telemetry::chain(&e), "upstream connection failed");
                    last = Some(e);
                }
            }
        }
        Err(ProxyError::Upstream {
            tried: candidates.join(","),
            source: last,
        })
    }

    async fn serve(self: Arc<Self>, client: TcpStream, target: Target) -> Result<(), ProxyError> {
        let _ = client.set_nodelay(true);
        let (mut upstream_read, mut upstream_write) = self.connect(target).await?;
        let (mut client_read, mut client_write) = client.into_split();
        let (expect_tx, mut expect_rx) = mpsc::channel::<Expect>(64);
        let requests = async {
            while let Some(frame) = frame::read(&mut client_read).await? {
                let (expect, forward) = self.request(frame).await?;
                if let Some(expect) = expect {
                    // Closed only when the response side ended (its error is the one returned).
                    if expect_tx.send(expect).await.is_err() {
                        break;
                    }
                }
                if let Some(bytes) = forward {
                    frame::write(&mut upstream_write, &bytes).await?;
                }
            }
            Ok::<(), ProxyError>(())
        };
        let responses = async {
            while let Some(expect) = expect_rx.recv().await {
                let out = match expect {
                    Expect::Answer(bytes) => bytes,
                    Expect::Forward { correlation } => {
                        next_response(&mut upstream_read, correlation).await?
                    }
                    Expect::Change {
                        correlation,
                        api,
                        version,
                        refused,
                    } => {
                        let frame = next_response(&mut upstream_read, correlation).await?;
                        self.response(api, version, frame, &refused).await?
                    }
                };
                frame::write(&mut client_write, &out).await?;
            }
            Ok::<(), ProxyError>(())
        };
        tokio::select! {
            r = requests => r,
            r = responses => r,
        }
    }

    /// What to expect back, and what to send upstream, for one request.
    async fn request(&self, frame: Bytes) -> Result<(Option<Expect>, Option<Bytes>), ProxyError> {
        let (api, version, correlation) =
            frame::request_ids(&frame).ok_or(ProxyError::Protocol {
                what: "request",
                detail: "shorter than its header".into(),
            })?;
        let Ok(key) = ApiKey::try_from(api) else {
            return Ok((Some(Expect::Forward { correlation }), Some(frame)));
        };
        if let Some((lo, hi)) = versions::decoded_range(api) {
            if key == ApiKey::ApiVersions && version > hi {
                // As a broker does: a v0 answer naming the versions it speaks.
                return Ok((
                    Some(Expect::Answer(unsupported_api_versions(correlation, hi)?)),
                    None,
                ));
            }
            if !(lo..=hi).contains(&version) {
                return Err(ProxyError::Version {
                    api: key,
                    version,
                    lo,
                    hi,
                });
            }
        } else {
            return Ok((Some(Expect::Forward { correlation }), Some(frame)));
        }
        if key != ApiKey::Produce {
            let expect = Expect::Change {
                correlation,
                api: key,
                version,
                refused: Vec::new(),
            };
            return Ok((Some(expect), Some(frame)));
        }
        let mut buf = frame;
        let header = RequestHeader::decode(&mut buf, key.request_header_version(version))
            .map_err(protocol("produce request header"))?;
        let mut produce =
            ProduceRequest::decode(&mut buf, version).map_err(protocol("produce request"))?;
        let refused = seal_request(&self.crypto, &mut produce).await;
        let acks_zero = produce.acks == 0;
        if produce.topic_data.is_empty() {
            // Nothing left to send: the proxy answers (acks=0 expects no answer at all).
            let answer = (!acks_zero)
                .then(|| {
                    let mut response = ProduceResponse::default();
                    merge_refused(&mut response, &refused);
                    encode_response(ApiKey::Produce, version, correlation, &response)
                        .map(Expect::Answer)
                })
                .transpose()?;
            return Ok((answer, None));
        }
        let mut out = BytesMut::new();
        header
            .encode(&mut out, key.request_header_version(version))
            .map_err(protocol("produce request header"))?;
        produce
            .encode(&mut out, version)
            .map_err(protocol("produce request"))?;
        let expect = (!acks_zero).then_some(Expect::Change {
            correlation,
            api: key,
            version,
            refused,
        });
        Ok((expect, Some(out.freeze())))
    }

    /// The response the client gets for the broker's `frame`.
    async fn response(
        self: &Arc<Self>,
        api: ApiKey,
        version: i16,
        frame: Bytes,
        refused: &[Refused],
    ) -> Result<Bytes, ProxyError> {
        let header_version = api.response_header_version(version);
        let mut buf = frame.clone();
        let header = ResponseHeader::decode(&mut buf, header_version)
            .map_err(protocol("response header"))?;
        let correlation = header.correlation_id;
        match api {
            ApiKey::ApiVersions => {
                let Ok(mut r) = ApiVersionsResponse::decode(&mut buf.clone(), version) else {
                    // A broker that does not speak this version answers in v0 with an error;
                    // the client retries lower. Nothing in it needs changing.
                    return Ok(frame);
                };
                if r.error_code != 0 {
                    return Ok(frame);
                }
                clamp(&mut r);
                encode_response(api, version, correlation, &r)
            }
            ApiKey::Metadata => {
                let mut r = MetadataResponse::decode(&mut buf, version)
                    .map_err(protocol("metadata response"))?;
                let new = self.routes.metadata(&mut r)?;
                self.ensure_listeners(&new).await?;
                encode_response(api, version, correlation, &r)
            }
            ApiKey::FindCoordinator => {
                let mut r = FindCoordinatorResponse::decode(&mut buf, version)
                    .map_err(protocol("find coordinator response"))?;
                let new = self.routes.find_coordinator(&mut r)?;
                self.ensure_listeners(&new).await?;
                encode_response(api, version, correlation, &r)
            }
            ApiKey::DescribeCluster => {
                let mut r = DescribeClusterResponse::decode(&mut buf, version)
                    .map_err(protocol("describe cluster response"))?;
                let new = self.routes.describe_cluster(&mut r)?;
                self.ensure_listeners(&new).await?;
                encode_response(api, version, correlation, &r)
            }
            ApiKey::Fetch => {
                let mut r =
                    FetchResponse::decode(&mut buf, version).map_err(protocol("fetch response"))?;
                open_response(&self.crypto, &mut r).await;
                encode_response(api, version, correlation, &r)
            }
            ApiKey::Produce => {
                if refused.is_empty() {
                    return Ok(frame);
                }
                let mut r = ProduceResponse::decode(&mut buf, version)
                    .map_err(protocol("produce response"))?;
                merge_refused(&mut r, refused);
                encode_response(api, version, correlation, &r)
            }
            _ => Ok(frame),
        }
    }
}

async fn next_response(
    upstream: &mut (impl tokio::io::AsyncRead + Unpin),
    correlation: i32,
) -> Result<Bytes, ProxyError> {
    let frame = frame::read(upstream).await?.ok_or(ProxyError::Protocol {
        what: "broker connection",
        detail: "closed with a request unanswered".into(),
    })?;
    match frame::response_correlation(&frame) {
        Some(c) if c == correlation => Ok(frame),
        other => Err(ProxyError::Protocol {
            what: "response",
            detail: format!("correlation id {other:?} where {correlation} was next"),
        }),
    }
}

fn encode_response(
    api: ApiKey,
    version: i16,
    correlation: i32,
    body: &impl Encodable,
) -> Result<Bytes, ProxyError> {
    let mut out = BytesMut::new();
    ResponseHeader::default()
        .with_correlation_id(correlation)
        .encode(&mut out, api.response_header_version(version))
        .map_err(protocol("response header"))?;
    body.encode(&mut out, version)
        .map_err(protocol("response"))?;
    Ok(out.freeze())
}

fn unsupported_api_versions(correlation: i32, max: i16) -> Result<Bytes, ProxyError> {
    let body = ApiVersionsResponse::default()
        .with_error_code(code::UNSUPPORTED_VERSION)
        .with_api_keys(vec![
            ApiVersion::default()
                .with_api_key(ApiKey::ApiVersions as i16)
                .with_min_version(0)
                .with_max_version(max),
        ]);
    encode_response(ApiKey::ApiVersions, 0, correlation, &body)
}

/// The address a client uses for the bootstrap listener, as the injected environment names it.
pub fn bootstrap_address(settings: &Settings) -> String {
    format!("{LOCAL_HOST}:{}", settings.listen.port())
}
