//! The client side of SASL PLAIN and SCRAM (RFC 5802, RFC 7677) for the proxy's own
//! authentication to the broker, when it holds the credentials (docs/proxy.md "Upstream
//! security"). Pure functions over messages: the exchange itself is in [`crate::upstream`].

use std::num::NonZeroU32;
use std::str::FromStr;

use aws_lc_rs::{digest, hmac, pbkdf2};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use zeroize::{Zeroize, Zeroizing};

/// Kafka's SASL mechanisms the proxy speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    Plain,
    ScramSha256,
    ScramSha512,
}

impl Mechanism {
    /// The name as Kafka's SaslHandshake carries it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Plain => "PLAIN",
            Self::ScramSha256 => "SCRAM-SHA-256",
            Self::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

impl FromStr for Mechanism {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_uppercase().as_str() {
            "PLAIN" => Ok(Self::Plain),
            "SCRAM-SHA-256" => Ok(Self::ScramSha256),
            "SCRAM-SHA-512" => Ok(Self::ScramSha512),
            _ => Err(format!(
                "SASL mechanism {s:?} is not supported (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512)"
            )),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScramError {
    #[error("the broker's SCRAM message is malformed: {0}")]
    Malformed(&'static str),
    #[error("the broker's nonce does not extend ours")]
    NonceMismatch,
    #[error(
        "the broker asks for {0} PBKDF2 iterations (accepted: {MIN_ITERATIONS}-{MAX_ITERATIONS})"
    )]
    Iterations(u32),
    #[error("the broker refused the credentials: {0}")]
    Refused(String),
    #[error(
        "the broker's signature is wrong: it does not know the password (or is not the broker)"
    )]
    ServerSignature,
}

/// RFC 7677's floor; Kafka's own limits are 4,096-16,384.
pub const MIN_ITERATIONS: u32 = 4096;
/// A broker must not make the proxy burn seconds of CPU per connection.
pub const MAX_ITERATIONS: u32 = 65536;

/// PLAIN's single message (RFC 4616): no authorization identity.
pub fn plain_message(username: &str, password: &str) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(username.len() + password.len() + 2));
    out.push(0);
    out.extend_from_slice(username.as_bytes());
    out.push(0);
    out.extend_from_slice(password.as_bytes());
    out
}

/// One SCRAM exchange, client side.
pub struct Scram {
    mechanism: Mechanism,
    password: Zeroizing<String>,
    nonce: String,
    first_bare: String,
    server_signature: Option<Vec<u8>>,
}

impl std::fmt::Debug for Scram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scram")
            .field("mechanism", &self.mechanism)
            .finish_non_exhaustive()
    }
}

impl Scram {
    /// `nonce`: printable ASCII without ',' (a fresh random one per exchange; see [`fresh_nonce`]).
    pub fn new(mechanism: Mechanism, username: &str, password: &str, nonce: String) -> Self {
        let user = username.replace('=', "=3D").replace(',', "=2C");
        Self {
            mechanism,
            password: Zeroizing::new(password.to_owned()),
            first_bare: format!("n={user},r={nonce}"),
            nonce,
            server_signature: None,
        }
    }

    /// client-first-message (no channel binding).
    pub fn client_first(&self) -> String {
        format!("n,,{}", self.first_bare)
    }

    /// client-final-message for the broker's server-first-message.
    pub fn client_final(&mut self, server_first: &[u8]) -> Result<String, ScramError> {
        let server_first =
            std::str::from_utf8(server_first).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        if let Some(e) = attribute(server_first, 'e') {
            return Err(ScramError::Refused(e.to_owned()));
        }
        let nonce = attribute(server_first, 'r').ok_or(ScramError::Malformed("no nonce"))?;
        if !nonce.starts_with(&self.nonce) || nonce.len() == self.nonce.len() {
            return Err(ScramError::NonceMismatch);
        }
        let salt = attribute(server_first, 's')
            .and_then(|s| B64.decode(s).ok())
            .ok_or(ScramError::Malformed("no salt"))?;
        let iterations: u32 = attribute(server_first, 'i')
            .and_then(|i| i.parse().ok())
            .ok_or(ScramError::Malformed("no iteration count"))?;
        if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations) {
            return Err(ScramError::Iterations(iterations));
        }
        let (pbkdf, hmac_alg, digest_alg) = match self.mechanism {
            Mechanism::ScramSha512 => (
                pbkdf2::PBKDF2_HMAC_SHA512,
                hmac::HMAC_SHA512,
                &digest::SHA512,
            ),
            _ => (
                pbkdf2::PBKDF2_HMAC_SHA256,
                hmac::HMAC_SHA256,
                &digest::SHA256,
            ),
        };
        let mut salted = Zeroizing::new(vec![0u8; digest_alg.output_len()]);
        let rounds = NonZeroU32::new(iterations).ok_or(ScramError::Iterations(iterations))?;
        pbkdf2::derive(pbkdf, rounds, &salt, self.password.as_bytes(), &mut salted);
        let salted_key = hmac::Key::new(hmac_alg, &salted);
        let mut client_key = hmac::sign(&salted_key, b"Client Key").as_ref().to_vec();
        let stored_key = digest::digest(digest_alg, &client_key);
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{server_first},{without_proof}", self.first_bare);
        let client_signature = hmac::sign(
            &hmac::Key::new(hmac_alg, stored_key.as_ref()),
            auth_message.as_bytes(),
        );
        let proof: Vec<u8> = client_key
            .iter()
            .zip(client_signature.as_ref())
            .map(|(k, s)| k ^ s)
            .collect();
        client_key.zeroize();
        let server_key = hmac::sign(&salted_key, b"Server Key");
        self.server_signature = Some(
            hmac::sign(
                &hmac::Key::new(hmac_alg, server_key.as_ref()),
                auth_message.as_bytes(),
            )
            .as_ref()
            .to_vec(),
        );
        Ok(format!("{without_proof},p={}", B64.encode(proof)))
    }

    /// Checks the broker's server-final-message: it proves the broker knows the password.
    pub fn verify_final(&self, server_final: &[u8]) -> Result<(), ScramError> {
        let server_final =
            std::str::from_utf8(server_final).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        if let Some(e) = attribute(server_final, 'e') {
            return Err(ScramError::Refused(e.to_owned()));
        }
        let got = attribute(server_final, 'v')
            .and_then(|v| B64.decode(v).ok())
            .ok_or(ScramError::Malformed("no verifier"))?;
        let expected = self
            .server_signature
            .as_deref()
            .ok_or(ScramError::Malformed("server-final before server-first"))?;
        // Constant time is not needed: the value is the broker's, checked once.
        if got == expected {
            Ok(())
        } else {
            Err(ScramError::ServerSignature)
        }
    }
}

/// 24 random bytes, base64: the client nonce.
pub fn fresh_nonce() -> String {
    let mut bytes = [0u8; 24];
    // The system RNG failing is not recoverable; an all-zero nonce would still be unique per
    // server nonce, but fail loudly instead.
    if aws_lc_rs::rand::fill(&mut bytes).is_err() {
        tracing::error!("the system random number generator failed");
    }
    B64.encode(bytes)
}

/// The value of `key=` in a SCRAM message.
fn attribute(message: &str, key: char) -> Option<&str> {
    message
        .split(',')
        .find_map(|part| part.strip_prefix(key)?.strip_prefix('='))
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 7677 section 3.
    const NONCE: &str = "rOprNGfwEbeRWgbNEkqO";
    const SERVER_FIRST: &str =
        "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
    const CLIENT_FINAL: &str = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
    const SERVER_FINAL: &str = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

    fn rfc_exchange() -> Scram {
        Scram::new(Mechanism::ScramSha256, "user", "pencil", NONCE.into())
    }

    #[test]
    fn scram_sha_256_matches_rfc_7677() {
        let mut scram = rfc_exchange();
        assert_eq!(scram.client_first(), "n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
        assert_eq!(
            scram.client_final(SERVER_FIRST.as_bytes()).unwrap(),
            CLIENT_FINAL
        );
        scram.verify_final(SERVER_FINAL.as_bytes()).unwrap();
    }

    #[test]
    fn a_broker_without_the_password_is_caught() {
        let mut scram = rfc_exchange();
        scram.client_final(SERVER_FIRST.as_bytes()).unwrap();
        let forged = format!("v={}", B64.encode([7u8; 32]));
        assert_eq!(
            scram.verify_final(forged.as_bytes()),
            Err(ScramError::ServerSignature)
        );
        assert_eq!(
            scram.verify_final(b"e=invalid-proof"),
            Err(ScramError::Refused("invalid-proof".into()))
        );
    }

    #[test]
    fn hostile_server_first_messages_are_refused() {
        let cases = [
            ("e=unknown-user", ScramError::Refused("unknown-user".into())),
            ("r=someone-else,s=AAAA,i=4096", ScramError::NonceMismatch),
            // The broker must add its own part to the nonce.
            (
                "r=rOprNGfwEbeRWgbNEkqO,s=AAAA,i=4096",
                ScramError::NonceMismatch,
            ),
            (
                "r=rOprNGfwEbeRWgbNEkqOx,i=4096",
                ScramError::Malformed("no salt"),
            ),
            (
                "r=rOprNGfwEbeRWgbNEkqOx,s=AAAA,i=1",
                ScramError::Iterations(1),
            ),
            (
                "r=rOprNGfwEbeRWgbNEkqOx,s=AAAA,i=100000000",
                ScramError::Iterations(100_000_000),
            ),
        ];
        for (message, want) in cases {
            assert_eq!(
                rfc_exchange().client_final(message.as_bytes()),
                Err(want),
                "{message}"
            );
        }
    }

    #[test]
    fn sha_512_proves_and_verifies_with_its_own_digest() {
        // No published vector: check the exchange against an independent server-side
        // computation with the same primitives (RFC 5802 section 3).
        let mut scram = Scram::new(Mechanism::ScramSha512, "u,=", "p", "abc".into());
        assert_eq!(scram.client_first(), "n,,n=u=2C=3D,r=abc");
        let server_first = "r=abcdef,s=c2FsdA==,i=4096";
        let client_final = scram.client_final(server_first.as_bytes()).unwrap();
        let proof = B64.decode(attribute(&client_final, 'p').unwrap()).unwrap();
        assert_eq!(proof.len(), 64);
        let mut salted = [0u8; 64];
        pbkdf2::derive(
            pbkdf2::PBKDF2_HMAC_SHA512,
            NonZeroU32::new(4096).unwrap(),
            b"salt",
            b"p",
            &mut salted,
        );
        let key = hmac::Key::new(hmac::HMAC_SHA512, &salted);
        let auth = format!("n=u=2C=3D,r=abc,{server_first},c=biws,r=abcdef");
        let stored = digest::digest(&digest::SHA512, hmac::sign(&key, b"Client Key").as_ref());
        let signature = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA512, stored.as_ref()),
            auth.as_bytes(),
        );
        let client_key: Vec<u8> = proof
            .iter()
            .zip(signature.as_ref())
            .map(|(p, s)| p ^ s)
            .collect();
        assert_eq!(
            digest::digest(&digest::SHA512, &client_key).as_ref(),
            stored.as_ref()
        );
        let server_key = hmac::sign(&key, b"Server Key");
        let v = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA512, server_key.as_ref()),
            auth.as_bytes(),
        );
        scram
            .verify_final(format!("v={}", B64.encode(v.as_ref())).as_bytes())
            .unwrap();
    }

    #[test]
    fn plain_is_nul_separated_and_mechanisms_parse() {
        assert_eq!(plain_message("a", "b").as_slice(), b"\0a\0b");
        assert_eq!("scram-sha-512".parse(), Ok(Mechanism::ScramSha512));
        assert!(
            "GSSAPI"
                .parse::<Mechanism>()
                .unwrap_err()
                .contains("GSSAPI")
        );
        assert_ne!(fresh_nonce(), fresh_nonce());
    }
}
