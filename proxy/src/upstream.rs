//! The proxy's connections to the brokers: TCP, TLS with the configured CA (and a client
//! certificate for mTLS), and SASL with credentials the proxy holds (read from a mounted Secret
//! at every connection, so a rotated password is picked up without a restart). Without
//! proxy-held credentials, an application's own SASL requests pass through (docs/proxy.md).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::sasl_authenticate_request::SaslAuthenticateRequest;
use kafka_protocol::messages::sasl_authenticate_response::SaslAuthenticateResponse;
use kafka_protocol::messages::sasl_handshake_request::SaslHandshakeRequest;
use kafka_protocol::messages::sasl_handshake_response::SaslHandshakeResponse;
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use zeroize::Zeroizing;

use crate::frame::{self, FrameError};
use crate::sasl::{Mechanism, Scram, ScramError, fresh_nonce, plain_message};

/// Kafka's `security.protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SecurityProtocol {
    #[default]
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    fn tls(self) -> bool {
        matches!(self, Self::Ssl | Self::SaslSsl)
    }
    fn sasl(self) -> bool {
        matches!(self, Self::SaslPlaintext | Self::SaslSsl)
    }
}

impl FromStr for SecurityProtocol {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_uppercase().as_str() {
            "PLAINTEXT" => Ok(Self::Plaintext),
            "SSL" => Ok(Self::Ssl),
            "SASL_PLAINTEXT" => Ok(Self::SaslPlaintext),
            "SASL_SSL" => Ok(Self::SaslSsl),
            _ => Err(format!(
                "security protocol {s:?} is not one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL"
            )),
        }
    }
}

/// How to reach the brokers. Defaults come from the client configuration's Kafka properties
/// (librdkafka's names, [`UpstreamSettings::from_properties`]); the command line overrides them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpstreamSettings {
    pub protocol: SecurityProtocol,
    /// PEM CA bundle the brokers' certificates must chain to (default: the system's roots).
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate chain and key, for brokers that require mTLS.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// The SASL mechanism the proxy authenticates with; `None` with a SASL protocol: the
    /// application's own SASL requests pass through.
    pub sasl_mechanism: Option<Mechanism>,
    /// A mounted Secret: `username` and `password` (SASL, read at every connection), and
    /// `user.crt`, `user.key`, `ca.crt` (TLS), used where nothing else names them.
    pub credentials_dir: Option<PathBuf>,
    /// Inline credentials from the configuration's properties (`sasl.username`/`sasl.password`).
    pub credentials: Option<(String, Zeroizing<String>)>,
}

#[derive(Debug, thiserror::Error)]
pub enum UpstreamConfigError {
    #[error("Kafka property {key}: {message}")]
    Property { key: String, message: String },
    #[error("reading {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} holds no PEM {what}")]
    NoPem { path: PathBuf, what: &'static str },
    #[error("TLS client settings")]
    Tls(#[source] rustls::Error),
    #[error("{0}")]
    Inconsistent(&'static str),
}

impl UpstreamSettings {
    /// The settings librdkafka would take from these properties (`security.protocol`,
    /// `ssl.ca.location`, `ssl.certificate.location`, `ssl.key.location`, `sasl.mechanism(s)`,
    /// `sasl.username`, `sasl.password`).
    pub fn from_properties(props: &BTreeMap<String, String>) -> Result<Self, UpstreamConfigError> {
        let parse_err = |key: &str| {
            let key = key.to_owned();
            move |message: String| UpstreamConfigError::Property { key, message }
        };
        let mut s = Self::default();
        if let Some(p) = props.get("security.protocol") {
            s.protocol = p.parse().map_err(parse_err("security.protocol"))?;
        }
        s.ca_file = props.get("ssl.ca.location").map(PathBuf::from);
        s.cert_file = props.get("ssl.certificate.location").map(PathBuf::from);
        s.key_file = props.get("ssl.key.location").map(PathBuf::from);
        for key in ["sasl.mechanism", "sasl.mechanisms"] {
            if let Some(m) = props.get(key) {
                s.sasl_mechanism = Some(m.parse().map_err(parse_err(key))?);
            }
        }
        if let (Some(u), Some(p)) = (props.get("sasl.username"), props.get("sasl.password")) {
            s.credentials = Some((u.clone(), Zeroizing::new(p.clone())));
        }
        Ok(s)
    }
}

impl UpstreamSettings {
    /// TLS files of the mounted Secret, where the settings name none.
    fn with_secret_files(&self) -> Self {
        let mut s = self.clone();
        let Some(dir) = self
            .credentials_dir
            .as_deref()
            .filter(|_| self.protocol.tls())
        else {
            return s;
        };
        let present = |name: &str| Some(dir.join(name)).filter(|p| p.is_file());
        if s.ca_file.is_none() {
            s.ca_file = present("ca.crt");
        }
        if s.cert_file.is_none()
            && s.key_file.is_none()
            && let (Some(cert), Some(key)) = (present("user.crt"), present("user.key"))
        {
            s.cert_file = Some(cert);
            s.key_file = Some(key);
        }
        s
    }
}

/// Held credentials, read when a connection is made.
#[derive(Debug, Clone)]
enum Credentials {
    Inline(String, Zeroizing<String>),
    Dir(PathBuf),
}

impl Credentials {
    fn read(&self) -> Result<(String, Zeroizing<String>), UpstreamError> {
        match self {
            Self::Inline(u, p) => Ok((u.clone(), p.clone())),
            Self::Dir(dir) => {
                let read = |name: &str| {
                    let path = dir.join(name);
                    std::fs::read_to_string(&path)
                        .map(|s| Zeroizing::new(s.trim_end_matches(['\r', '\n']).to_owned()))
                        .map_err(|source| UpstreamError::Credentials { path, source })
                };
                Ok((read("username")?.to_string(), read("password")?))
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("connecting to {address}")]
    Connect {
        address: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{address} did not complete the connection (TCP, TLS, SASL) within {after:?}")]
    Timeout {
        address: String,
        after: std::time::Duration,
    },
    #[error("{address} is not a valid TLS server name")]
    ServerName { address: String },
    #[error("TLS handshake with {address}")]
    Tls {
        address: String,
        #[source]
        source: std::io::Error,
    },
    #[error("reading the Kafka credential {path}")]
    Credentials {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{address} does not enable SASL {mechanism} (it offers {offered:?}; error code {code})"
    )]
    MechanismRefused {
        address: String,
        mechanism: &'static str,
        offered: Vec<String>,
        code: i16,
    },
    #[error("SASL {mechanism} authentication to {address} failed (error code {code}): {message}")]
    Authentication {
        address: String,
        mechanism: &'static str,
        code: i16,
        message: String,
    },
    #[error("SASL {mechanism} with {address}")]
    Scram {
        address: String,
        mechanism: &'static str,
        #[source]
        source: ScramError,
    },
    #[error("SASL exchange with {address}: {detail}")]
    Protocol { address: String, detail: String },
    #[error("SASL exchange with {address}")]
    Frame {
        address: String,
        #[source]
        source: FrameError,
    },
}

impl UpstreamError {
    /// The metric label for this failure.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Connect { .. } | Self::Timeout { .. } => "connect",
            Self::ServerName { .. } | Self::Tls { .. } => "tls",
            Self::Credentials { .. } => "credentials",
            Self::MechanismRefused { .. } | Self::Authentication { .. } | Self::Scram { .. } => {
                "authentication"
            }
            Self::Protocol { .. } | Self::Frame { .. } => "protocol",
        }
    }
}

/// How long a broker connection may take to be ready (TCP, TLS, SASL).
pub const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

pub type UpstreamRead = Box<dyn AsyncRead + Unpin + Send>;
pub type UpstreamWrite = Box<dyn AsyncWrite + Unpin + Send>;

/// Makes upstream connections as the settings say.
#[derive(Clone)]
pub struct Connector {
    tls: Option<tokio_rustls::TlsConnector>,
    sasl: Option<(Mechanism, Credentials)>,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("tls", &self.tls.is_some())
            .field("sasl", &self.sasl.as_ref().map(|(m, _)| m.name()))
            .finish()
    }
}

impl Connector {
    /// Reads the CA and client certificate now, so a wrong path fails at start-up.
    pub fn new(settings: &UpstreamSettings) -> Result<Self, UpstreamConfigError> {
        let p = settings.protocol;
        let settings = &settings.with_secret_files();
        if !p.tls() && (settings.ca_file.is_some() || settings.cert_file.is_some()) {
            return Err(UpstreamConfigError::Inconsistent(
                "a CA or client certificate is configured but the security protocol has no TLS (SSL or SASL_SSL)",
            ));
        }
        if settings.cert_file.is_some() != settings.key_file.is_some() {
            return Err(UpstreamConfigError::Inconsistent(
                "a client certificate needs both its certificate and its key",
            ));
        }
        let tls = p
            .tls()
            .then(|| tls_config(settings))
            .transpose()?
            .map(|c| tokio_rustls::TlsConnector::from(Arc::new(c)));
        let inline: Option<Credentials> = settings
            .credentials
            .as_ref()
            .map(|(u, pw)| Credentials::Inline(u.clone(), pw.clone()));
        // The Secret may hold only TLS files: its username and password count only when a
        // mechanism asks for them.
        let credentials = match (&settings.credentials_dir, settings.sasl_mechanism) {
            (Some(dir), Some(_)) => Some(Credentials::Dir(dir.clone())),
            _ => inline,
        };
        let sasl = match (p.sasl(), settings.sasl_mechanism, credentials) {
            (true, Some(m), Some(c)) => Some((m, c)),
            // SASL without held credentials: the application authenticates through the proxy.
            (true, None, None) => None,
            (true, None, Some(_)) => {
                return Err(UpstreamConfigError::Inconsistent(
                    "sasl.username and sasl.password are configured without a SASL mechanism",
                ));
            }
            (true, Some(_), None) => {
                return Err(UpstreamConfigError::Inconsistent(
                    "a SASL mechanism is configured without credentials (a credentials directory, or sasl.username and sasl.password)",
                ));
            }
            (false, _, Some(_)) | (false, Some(_), _) => {
                return Err(UpstreamConfigError::Inconsistent(
                    "SASL is configured but the security protocol is not SASL_PLAINTEXT or SASL_SSL",
                ));
            }
            (false, None, None) => None,
        };
        Ok(Self { tls, sasl })
    }

    /// Connects, completes TLS and SASL, and splits the stream; all within
    /// [`CONNECT_TIMEOUT`], so a broker that accepts but never answers cannot hold a client's
    /// connection (and this task) forever.
    pub async fn connect(
        &self,
        address: &str,
    ) -> Result<(UpstreamRead, UpstreamWrite), UpstreamError> {
        tokio::time::timeout(CONNECT_TIMEOUT, self.connect_now(address))
            .await
            .unwrap_or_else(|_| {
                Err(UpstreamError::Timeout {
                    address: address.to_owned(),
                    after: CONNECT_TIMEOUT,
                })
            })
    }

    async fn connect_now(
        &self,
        address: &str,
    ) -> Result<(UpstreamRead, UpstreamWrite), UpstreamError> {
        let tcp = TcpStream::connect(address)
            .await
            .map_err(|source| UpstreamError::Connect {
                address: address.to_owned(),
                source,
            })?;
        let _ = tcp.set_nodelay(true);
        let Some(tls) = &self.tls else {
            let mut tcp = tcp;
            self.authenticate(&mut tcp, address).await?;
            let (r, w) = tcp.into_split();
            return Ok((Box::new(r), Box::new(w)));
        };
        let host = host_of(address);
        let name =
            ServerName::try_from(host.to_owned()).map_err(|_| UpstreamError::ServerName {
                address: address.to_owned(),
            })?;
        let mut stream = tls
            .connect(name, tcp)
            .await
            .map_err(|source| UpstreamError::Tls {
                address: address.to_owned(),
                source,
            })?;
        self.authenticate(&mut stream, address).await?;
        let (r, w) = tokio::io::split(stream);
        Ok((Box::new(r), Box::new(w)))
    }

    async fn authenticate(
        &self,
        stream: &mut (impl AsyncRead + AsyncWrite + Unpin),
        address: &str,
    ) -> Result<(), UpstreamError> {
        let Some((mechanism, credentials)) = &self.sasl else {
            return Ok(());
        };
        let (username, password) = credentials.read()?;
        let mut exchange = Exchange {
            stream,
            address,
            mechanism: *mechanism,
            correlation: 0,
        };
        exchange.handshake().await?;
        match mechanism {
            Mechanism::Plain => {
                exchange
                    .authenticate(Bytes::copy_from_slice(&plain_message(&username, &password)))
                    .await?;
            }
            Mechanism::ScramSha256 | Mechanism::ScramSha512 => {
                let mut scram = Scram::new(*mechanism, &username, &password, fresh_nonce());
                let server_first = exchange
                    .authenticate(Bytes::from(scram.client_first()))
                    .await?;
                let scram_err = |source| UpstreamError::Scram {
                    address: address.to_owned(),
                    mechanism: mechanism.name(),
                    source,
                };
                let client_final = scram.client_final(&server_first).map_err(scram_err)?;
                let server_final = exchange.authenticate(Bytes::from(client_final)).await?;
                scram.verify_final(&server_final).map_err(scram_err)?;
            }
        }
        tracing::debug!(
            address,
            mechanism = mechanism.name(),
            "authenticated upstream"
        );
        Ok(())
    }
}

/// The proxy's own SaslHandshake (v1) and SaslAuthenticate (v1) requests on a new connection.
struct Exchange<'a, S> {
    stream: &'a mut S,
    address: &'a str,
    mechanism: Mechanism,
    correlation: i32,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Exchange<'_, S> {
    async fn handshake(&mut self) -> Result<(), UpstreamError> {
        let request = SaslHandshakeRequest::default()
            .with_mechanism(StrBytes::from_static_str(self.mechanism.name()));
        let mut body = self.call(ApiKey::SaslHandshake, 1, &request).await?;
        let response = SaslHandshakeResponse::decode(&mut body, 1).map_err(|e| self.bad(e))?;
        if response.error_code != 0 {
            return Err(UpstreamError::MechanismRefused {
                address: self.address.to_owned(),
                mechanism: self.mechanism.name(),
                offered: response.mechanisms.iter().map(|m| m.to_string()).collect(),
                code: response.error_code,
            });
        }
        Ok(())
    }

    async fn authenticate(&mut self, auth_bytes: Bytes) -> Result<Bytes, UpstreamError> {
        let request = SaslAuthenticateRequest::default().with_auth_bytes(auth_bytes);
        let mut body = self.call(ApiKey::SaslAuthenticate, 1, &request).await?;
        let response = SaslAuthenticateResponse::decode(&mut body, 1).map_err(|e| self.bad(e))?;
        if response.error_code != 0 {
            return Err(UpstreamError::Authentication {
                address: self.address.to_owned(),
                mechanism: self.mechanism.name(),
                code: response.error_code,
                message: response
                    .error_message
                    .map(|m| m.to_string())
                    .unwrap_or_default(),
            });
        }
        Ok(response.auth_bytes)
    }

    async fn call(
        &mut self,
        api: ApiKey,
        version: i16,
        body: &impl Encodable,
    ) -> Result<Bytes, UpstreamError> {
        self.correlation += 1;
        let mut out = BytesMut::new();
        RequestHeader::default()
            .with_request_api_key(api as i16)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation)
            .with_client_id(Some(StrBytes::from_static_str("kafka-e2ee-proxy")))
            .encode(&mut out, api.request_header_version(version))
            .map_err(|e| self.bad(e))?;
        body.encode(&mut out, version).map_err(|e| self.bad(e))?;
        let frame_err = |source| UpstreamError::Frame {
            address: self.address.to_owned(),
            source,
        };
        frame::write(self.stream, &out).await.map_err(frame_err)?;
        let mut frame = frame::read(self.stream)
            .await
            .map_err(|source| UpstreamError::Frame {
                address: self.address.to_owned(),
                source,
            })?
            .ok_or_else(|| UpstreamError::Protocol {
                address: self.address.to_owned(),
                detail: "the broker closed the connection".into(),
            })?;
        let header = ResponseHeader::decode(&mut frame, api.response_header_version(version))
            .map_err(|e| self.bad(e))?;
        if header.correlation_id != self.correlation {
            return Err(UpstreamError::Protocol {
                address: self.address.to_owned(),
                detail: format!(
                    "correlation id {} where {} was sent",
                    header.correlation_id, self.correlation
                ),
            });
        }
        Ok(frame)
    }

    fn bad(&self, e: impl std::fmt::Display) -> UpstreamError {
        UpstreamError::Protocol {
            address: self.address.to_owned(),
            detail: e.to_string(),
        }
    }
}

fn tls_config(settings: &UpstreamSettings) -> Result<rustls::ClientConfig, UpstreamConfigError> {
    let mut roots = rustls::RootCertStore::empty();
    match &settings.ca_file {
        Some(path) => {
            for cert in pem_certificates(path, "CA certificate")? {
                roots.add(cert).map_err(UpstreamConfigError::Tls)?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
            if roots.is_empty() {
                return Err(UpstreamConfigError::Inconsistent(
                    "TLS without a CA file, and the system has no CA certificates",
                ));
            }
        }
    }
    let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
    match (&settings.cert_file, &settings.key_file) {
        (Some(cert), Some(key)) => {
            let chain = pem_certificates(cert, "certificate")?;
            let key_pem = read(key)?;
            let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| {
                UpstreamConfigError::NoPem {
                    path: key.clone(),
                    what: "private key",
                }
            })?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(UpstreamConfigError::Tls)
        }
        _ => Ok(builder.with_no_client_auth()),
    }
}

fn read(path: &Path) -> Result<Zeroizing<Vec<u8>>, UpstreamConfigError> {
    std::fs::read(path)
        .map(Zeroizing::new)
        .map_err(|source| UpstreamConfigError::Read {
            path: path.to_owned(),
            source,
        })
}

fn pem_certificates(
    path: &Path,
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, UpstreamConfigError> {
    let pem = read(path)?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&pem)
        .filter_map(Result::ok)
        .collect();
    if certs.is_empty() {
        return Err(UpstreamConfigError::NoPem {
            path: path.to_owned(),
            what,
        });
    }
    Ok(certs)
}

/// "host:port" or "[v6]:port" to the host.
fn host_of(address: &str) -> &str {
    let host = address.rsplit_once(':').map_or(address, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn librdkafka_properties_become_settings() {
        let s = UpstreamSettings::from_properties(&props(&[
            ("security.protocol", "sasl_ssl"),
            ("ssl.ca.location", "/ca.pem"),
            ("sasl.mechanism", "SCRAM-SHA-512"),
            ("sasl.username", "app"),
            ("sasl.password", "pw"),
        ]))
        .unwrap();
        assert_eq!(s.protocol, SecurityProtocol::SaslSsl);
        assert_eq!(s.ca_file.as_deref(), Some(Path::new("/ca.pem")));
        assert_eq!(s.sasl_mechanism, Some(Mechanism::ScramSha512));
        assert_eq!(s.credentials.as_ref().map(|(u, _)| u.as_str()), Some("app"));
        let bad = UpstreamSettings::from_properties(&props(&[("security.protocol", "TLS")]));
        assert!(bad.unwrap_err().to_string().contains("security.protocol"));
    }

    #[test]
    fn inconsistent_settings_fail_at_start() {
        let cases = [
            UpstreamSettings {
                ca_file: Some("/ca".into()),
                ..Default::default()
            },
            UpstreamSettings {
                protocol: SecurityProtocol::SaslPlaintext,
                sasl_mechanism: Some(Mechanism::Plain),
                ..Default::default()
            },
            UpstreamSettings {
                sasl_mechanism: Some(Mechanism::Plain),
                credentials_dir: Some("/creds".into()),
                ..Default::default()
            },
            UpstreamSettings {
                protocol: SecurityProtocol::Ssl,
                cert_file: Some("/c".into()),
                ..Default::default()
            },
        ];
        for settings in cases {
            assert!(
                matches!(
                    Connector::new(&settings),
                    Err(UpstreamConfigError::Inconsistent(_))
                ),
                "{settings:?}"
            );
        }
        let missing = UpstreamSettings {
            protocol: SecurityProtocol::Ssl,
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..Default::default()
        };
        assert!(matches!(
            Connector::new(&missing),
            Err(UpstreamConfigError::Read { .. })
        ));
        // SASL passthrough: the application authenticates itself.
        let passthrough = UpstreamSettings {
            protocol: SecurityProtocol::SaslPlaintext,
            ..Default::default()
        };
        assert!(Connector::new(&passthrough).unwrap().sasl.is_none());
    }

    #[test]
    fn credentials_are_read_from_the_mounted_secret_each_time() {
        let dir = std::env::temp_dir().join(format!("ke-creds-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("username"), "app\n").unwrap();
        std::fs::write(dir.join("password"), "one").unwrap();
        let creds = Credentials::Dir(dir.clone());
        assert_eq!(creds.read().unwrap().1.as_str(), "one");
        std::fs::write(dir.join("password"), "two\n").unwrap();
        let (user, password) = creds.read().unwrap();
        assert_eq!((user.as_str(), password.as_str()), ("app", "two"));
        std::fs::remove_file(dir.join("password")).unwrap();
        assert!(matches!(
            creds.read(),
            Err(UpstreamError::Credentials { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_mounted_secret_supplies_tls_files_nothing_else_names() {
        let dir = std::env::temp_dir().join(format!("ke-tls-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for f in ["ca.crt", "user.crt", "user.key"] {
            std::fs::write(dir.join(f), "").unwrap();
        }
        let mut settings = UpstreamSettings {
            protocol: SecurityProtocol::Ssl,
            credentials_dir: Some(dir.clone()),
            ..Default::default()
        };
        let s = settings.with_secret_files();
        assert_eq!(s.ca_file, Some(dir.join("ca.crt")));
        assert_eq!(s.cert_file, Some(dir.join("user.crt")));
        assert_eq!(s.key_file, Some(dir.join("user.key")));
        settings.ca_file = Some("/etc/ca.pem".into());
        assert_eq!(
            settings.with_secret_files().ca_file,
            Some(PathBuf::from("/etc/ca.pem"))
        );
        // The (empty) files are read at start: an empty CA is refused, naming it.
        let err = Connector::new(&UpstreamSettings {
            protocol: SecurityProtocol::Ssl,
            credentials_dir: Some(dir.clone()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("ca.crt"), "{err}");
        // Without TLS, a Secret holding only TLS files changes nothing.
        settings.protocol = SecurityProtocol::Plaintext;
        settings.ca_file = None;
        assert!(Connector::new(&settings).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A broker that accepts and then never answers the TLS handshake cannot hold the
    /// connection: the connect gives up after CONNECT_TIMEOUT (time paused, so instantly).
    #[tokio::test(start_paused = true)]
    async fn a_silent_broker_times_out_instead_of_hanging() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let _accepted = tokio::spawn(async move {
            let (socket, _) = listener.accept().await.unwrap();
            std::future::pending::<()>().await;
            drop(socket);
        });
        let ca = std::env::temp_dir().join(format!("ke-silent-ca-{}.pem", std::process::id()));
        let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
        std::fs::write(&ca, cert.cert.pem()).unwrap();
        let connector = Connector::new(&UpstreamSettings {
            protocol: SecurityProtocol::Ssl,
            ca_file: Some(ca.clone()),
            ..Default::default()
        })
        .unwrap();
        let err = connector.connect(&address).await.err().unwrap();
        assert!(matches!(err, UpstreamError::Timeout { .. }), "{err}");
        assert_eq!(err.reason(), "connect");
        std::fs::remove_file(&ca).unwrap();
    }

    #[test]
    fn host_names_for_tls() {
        assert_eq!(host_of("broker-1.kafka:9093"), "broker-1.kafka");
        assert_eq!(host_of("127.0.0.1:9093"), "127.0.0.1");
        assert_eq!(host_of("[::1]:9093"), "::1");
    }
}
