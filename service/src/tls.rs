//! TLS to a Mazu service with a pinned key instead of a CA.
//!
//! Mazu's point is that no CA is trusted for identity, so its clients do not
//! trust one for the curator either: they pin the SHA-256 of the curator's
//! SubjectPublicKeyInfo ([`SpkiPin`], base64, the form Envoy's
//! `verify_certificate_spki` takes). The server's certificate is self-signed
//! and regenerated from its key file at every start; only the key matters,
//! so names and validity periods are not checked ([`pinned_client_config`]).
//! The handshake still proves that the server holds the pinned key.
//!
//! [`TlsListener`] is the server side for `axum::serve`: handshakes run
//! concurrently, each bounded in time, so a client that stalls its handshake
//! holds one task and one permit, never the accept loop.

use core::fmt;
use core::net::SocketAddr;
use core::str::FromStr;
use core::time::Duration;
use std::sync::Arc;

use base64ct::{Base64, Encoding as _};
use p256::pkcs8::EncodePrivateKey as _;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest as _, Sha256};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// The names the self-signed certificate carries. Clients pin the key, not a
/// name; these only keep TLS stacks that insist on a name (or log it) happy.
pub const CERTIFICATE_NAMES: [&str; 2] = ["mazu-curator", "localhost"];

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The 32 secret bytes are not a valid P-256 scalar (probability about
    /// 2^-128 for random bytes: the key file is not a key).
    #[error("the key file's 32 bytes are not a valid P-256 secret key")]
    InvalidKey,
    /// The certificate or the TLS configuration could not be built.
    #[error("cannot build the TLS configuration: {0}")]
    Config(String),
}

/// A pin: SHA-256 of a DER SubjectPublicKeyInfo.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SpkiPin(pub [u8; 32]);

impl SpkiPin {
    /// The pin of a DER SubjectPublicKeyInfo.
    pub fn of_spki(spki_der: &[u8]) -> Self {
        Self(Sha256::digest(spki_der).into())
    }
}

impl fmt::Display for SpkiPin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&Base64::encode_string(&self.0))
    }
}

impl fmt::Debug for SpkiPin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SpkiPin({self})")
    }
}

/// A pin that does not parse.
#[derive(Debug, thiserror::Error)]
#[error(
    "a TLS pin is the base64 SHA-256 of the server's SubjectPublicKeyInfo (44 characters, as \
     Envoy's verify_certificate_spki and the curator's --tls-pin-file write it)"
)]
pub struct PinParseError;

impl FromStr for SpkiPin {
    type Err = PinParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 32];
        match Base64::decode(s.trim(), &mut out) {
            Ok(decoded) if decoded.len() == 32 => Ok(Self(out)),
            _ => Err(PinParseError),
        }
    }
}

/// A server's TLS identity: its configuration and the pin clients need.
#[derive(Clone)]
pub struct ServerTls {
    config: Arc<rustls::ServerConfig>,
    pin: SpkiPin,
    certificate_pem: String,
}

impl fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerTls").field("pin", &self.pin).finish()
    }
}

impl ServerTls {
    /// A P-256 key from 32 secret bytes (a key file of
    /// [`crate::files::load_or_create_key`]) and a fresh self-signed
    /// certificate for it, valid for [`CERTIFICATE_NAMES`].
    pub fn from_secret(secret: &[u8; 32]) -> Result<Self, TlsError> {
        let key = p256::SecretKey::from_bytes(secret.into()).map_err(|_| TlsError::InvalidKey)?;
        let pkcs8 = key
            .to_pkcs8_der()
            .map_err(|e| TlsError::Config(e.to_string()))?;
        let pkcs8 = PrivatePkcs8KeyDer::from(pkcs8.as_bytes().to_vec());
        let key_pair =
            rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&pkcs8, &rcgen::PKCS_ECDSA_P256_SHA256)
                .map_err(|e| TlsError::Config(e.to_string()))?;
        let params = rcgen::CertificateParams::new(
            CERTIFICATE_NAMES
                .iter()
                .map(|n| (*n).to_owned())
                .collect::<Vec<_>>(),
        )
        .map_err(|e| TlsError::Config(e.to_string()))?;
        let certificate = params
            .self_signed(&key_pair)
            .map_err(|e| TlsError::Config(e.to_string()))?;
        let pin = SpkiPin::of_spki(&key_pair.public_key_der());
        let certificate_pem = certificate.pem();
        let config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(vec![certificate.der().clone()], PrivateKeyDer::Pkcs8(pkcs8))
            .map_err(|e| TlsError::Config(e.to_string()))?;
        Ok(Self {
            config: Arc::new(config),
            pin,
            certificate_pem,
        })
    }

    /// What clients pin.
    pub fn pin(&self) -> SpkiPin {
        self.pin
    }

    /// The self-signed certificate (PEM), for clients that take a
    /// certificate to trust rather than a pin.
    pub fn certificate_pem(&self) -> &str {
        &self.certificate_pem
    }

    /// The rustls server configuration.
    pub fn config(&self) -> Arc<rustls::ServerConfig> {
        self.config.clone()
    }
}

/// Why a server's TLS identity could not be loaded from its files.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerTlsError {
    /// The key file does not exist and creating it was not asked for.
    #[error(
        "the TLS key file {path} does not exist: pass {create_flag} to generate one (clients then \
         pin its new key), or point --tls-key to the existing key"
    )]
    Missing {
        /// The key file.
        path: std::path::PathBuf,
        /// The flag that creates it.
        create_flag: &'static str,
    },
    /// The key file cannot be read, created or parsed.
    #[error(transparent)]
    Key(crate::files::KeyError),
    /// The TLS configuration cannot be built from the key.
    #[error("TLS: {0}")]
    Tls(#[from] TlsError),
    /// The pin file cannot be written.
    #[error("cannot write the TLS pin file {path}: {source}")]
    PinFile {
        /// The pin file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// A server's TLS identity loaded by [`load_server_tls`].
#[derive(Debug)]
pub struct LoadedServerTls {
    /// The TLS configuration and pin.
    pub tls: ServerTls,
    /// Whether the key file was generated now.
    pub created: bool,
    /// Whether the key file is readable by group or others (unix).
    pub too_open: bool,
}

/// The TLS identity of a server (the curator, a witness) from its key file,
/// the way every Mazu server does it: the key is read, or generated
/// atomically (mode 0600, never over an existing file) when `create`
/// ([`crate::files::load_or_create_key`]); a fresh self-signed certificate
/// is made for it ([`ServerTls::from_secret`]); and its pin, once known, is
/// written atomically to `pin_file` (one line), for clients and scripts to
/// pick up. `create_flag` names the flag that creates a missing key in the
/// error (`None`: the key file's own error).
pub fn load_server_tls(
    key: &std::path::Path,
    create: bool,
    create_flag: Option<&'static str>,
    pin_file: Option<&std::path::Path>,
) -> Result<LoadedServerTls, ServerTlsError> {
    let loaded =
        crate::files::load_or_create_key(key, create).map_err(|e| match (e, create_flag) {
            (crate::files::KeyError::Missing(path), Some(create_flag)) => {
                ServerTlsError::Missing { path, create_flag }
            }
            (e, _) => ServerTlsError::Key(e),
        })?;
    let tls = ServerTls::from_secret(&loaded.secret)?;
    if let Some(path) = pin_file {
        crate::files::write_atomic(path, format!("{}\n", tls.pin()).as_bytes()).map_err(
            |source| ServerTlsError::PinFile {
                path: path.to_path_buf(),
                source,
            },
        )?;
    }
    Ok(LoadedServerTls {
        tls,
        created: loaded.created,
        too_open: loaded.too_open,
    })
}

/// The ring provider: it builds with a C compiler alone (aws-lc needs more
/// of a toolchain). rustls 0.23.48 deprecated it for lacking post-quantum key
/// exchange, which this channel can do without: it carries public log data
/// and bind-first registrations, no secret (docs/trust.md).
#[allow(deprecated)]
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A client configuration that accepts exactly the servers whose
/// certificate carries one of `pins` as its public key (and that prove,
/// in the handshake, that they hold it). Names, issuers and validity
/// periods are not checked: the pin is the whole trust.
pub fn pinned_client_config(pins: &[SpkiPin]) -> Result<rustls::ClientConfig, TlsError> {
    let provider = provider();
    let verifier = PinnedServer {
        pins: pins.to_vec(),
        algorithms: provider.signature_verification_algorithms,
    };
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth())
}

/// A server whose key is not pinned; the message names its pin, so that an
/// operator can tell a rotated key from an impostor.
#[derive(thiserror::Error)]
#[error("the server's TLS key (pin {0}) is not a pinned key")]
struct UnpinnedKey(SpkiPin);

/// rustls prints this error with `{:?}` (inside "invalid peer certificate:
/// Other(..)"): the sentence, not the struct, is what reaches the logs.
impl fmt::Debug for UnpinnedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[derive(Debug)]
struct PinnedServer {
    pins: Vec<SpkiPin>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PinnedServer {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let cert = webpki::EndEntityCert::try_from(end_entity).map_err(|_| {
            rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding)
        })?;
        let pin = SpkiPin::of_spki(cert.subject_public_key_info().as_ref());
        if self.pins.contains(&pin) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::Other(rustls::OtherError(Arc::new(UnpinnedKey(pin)))),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// How a client reaches a Mazu server: TLS with pinned keys, or (only when
/// asked for by name) plain HTTP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientTransport {
    /// TLS; the server's key must be one of these (several during a key
    /// rotation).
    Pinned(Vec<SpkiPin>),
    /// Plain HTTP (a `--insecure-plain-http` flag).
    InsecurePlainHttp,
}

/// A transport that does not fit the flags or the URL.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// Neither a pin nor the insecure flag.
    #[error(
        "no TLS pin for the curator: give its pin (base64 SHA-256 of its public key, from the \
         curator's --tls-pin-file or its start-up log), or --insecure-plain-http for local \
         development"
    )]
    NoPin,
    /// Both a pin and the insecure flag.
    #[error("a TLS pin and --insecure-plain-http exclude each other")]
    Both,
    /// The URL's scheme does not match the transport.
    #[error("{url}: {reason}")]
    Scheme {
        /// The URL.
        url: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// The TLS configuration cannot be built.
    #[error(transparent)]
    Tls(#[from] TlsError),
}

impl ClientTransport {
    /// From a client's flags: pins, or the insecure flag, not both, not
    /// neither.
    pub fn from_flags(
        pins: Vec<SpkiPin>,
        insecure_plain_http: bool,
    ) -> Result<Self, TransportError> {
        match (pins.is_empty(), insecure_plain_http) {
            (true, false) => Err(TransportError::NoPin),
            (false, true) => Err(TransportError::Both),
            (true, true) => Ok(Self::InsecurePlainHttp),
            (false, false) => Ok(Self::Pinned(pins)),
        }
    }

    /// A client's `--curator URL`, `--curator-tls-pin` and
    /// `--insecure-plain-http` flags, checked together: a URL that is
    /// neither `https://` nor `http://`, then the flags
    /// ([`Self::from_flags`]), then the scheme ([`Self::check_url`]).
    pub fn for_url(
        url: &str,
        pins: Vec<SpkiPin>,
        insecure_plain_http: bool,
    ) -> Result<Self, TransportError> {
        if !url.starts_with("https://") && !url.starts_with("http://") {
            return Err(TransportError::Scheme {
                url: url.to_owned(),
                reason: "not an https:// URL (http:// only with --insecure-plain-http)",
            });
        }
        let transport = Self::from_flags(pins, insecure_plain_http)?;
        transport.check_url(url)?;
        Ok(transport)
    }

    /// Refuses a URL whose scheme does not match: `https://` with pins,
    /// `http://` with plain HTTP (so a typo cannot silently drop TLS).
    pub fn check_url(&self, url: &str) -> Result<(), TransportError> {
        let scheme = |reason| {
            Err(TransportError::Scheme {
                url: url.to_owned(),
                reason,
            })
        };
        match self {
            Self::Pinned(_) if !url.starts_with("https://") => {
                scheme("the curator is reached over TLS: use an https:// URL")
            }
            Self::InsecurePlainHttp if !url.starts_with("http://") => {
                scheme("--insecure-plain-http takes an http:// URL")
            }
            _ => Ok(()),
        }
    }

    /// Sets up `builder` for this transport (pinned TLS, HTTPS only).
    pub fn configure(
        &self,
        builder: reqwest::ClientBuilder,
    ) -> Result<reqwest::ClientBuilder, TransportError> {
        Ok(match self {
            Self::Pinned(pins) => builder
                .use_preconfigured_tls(pinned_client_config(pins)?)
                .https_only(true),
            Self::InsecurePlainHttp => builder,
        })
    }
}

/// Limits of a [`TlsListener`].
#[derive(Clone, Copy, Debug)]
pub struct HandshakeLimits {
    /// A handshake not finished in this time is dropped.
    pub timeout: Duration,
    /// At most this many handshakes run at once; connections beyond are
    /// closed at once (and counted in the log), so stalled handshakes cannot
    /// grow without bound.
    pub max_in_flight: usize,
}

impl Default for HandshakeLimits {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            max_in_flight: 256,
        }
    }
}

/// An `axum::serve` listener that completes TLS handshakes off the accept
/// loop. Dropping it stops accepting.
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    acceptor: tokio::task::JoinHandle<()>,
}

impl fmt::Debug for TlsListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsListener")
            .field("local", &self.local)
            .finish()
    }
}

impl TlsListener {
    /// Serves TLS with `tls` on an already bound `listener`.
    pub fn new(
        listener: TcpListener,
        tls: &ServerTls,
        limits: HandshakeLimits,
    ) -> std::io::Result<Self> {
        let local = listener.local_addr()?;
        let acceptor = TlsAcceptor::from(tls.config());
        let (tx, ready) = mpsc::channel(limits.max_in_flight.max(1));
        let permits = Arc::new(Semaphore::new(limits.max_in_flight.max(1)));
        let acceptor = tokio::spawn(accept_loop(listener, acceptor, tx, permits, limits));
        Ok(Self {
            ready,
            local,
            acceptor,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.acceptor.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    ready: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
    permits: Arc<Semaphore>,
    limits: HandshakeLimits,
) {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::warn!(
                %peer,
                max_in_flight = limits.max_in_flight,
                "too many TLS handshakes in flight: connection closed"
            );
            continue;
        };
        let acceptor = acceptor.clone();
        let ready = ready.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match tokio::time::timeout(limits.timeout, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => {
                    let _ = ready.send((stream, peer)).await;
                }
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        });
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(accepted) => accepted,
            // The accept loop only ends when aborted, which happens when this
            // listener is dropped; until then there is always a sender.
            None => core::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pin_round_trips_through_its_text_form_and_garbage_is_refused() {
        let pin = SpkiPin::of_spki(b"some spki");
        assert_eq!(pin.to_string().parse::<SpkiPin>().expect("parses"), pin);
        assert!("".parse::<SpkiPin>().is_err());
        assert!("not base64!".parse::<SpkiPin>().is_err());
        // 31 bytes is not a SHA-256.
        assert!(
            Base64::encode_string(&[0u8; 31])
                .parse::<SpkiPin>()
                .is_err()
        );
    }

    #[test]
    fn the_same_key_gives_the_same_pin_and_another_key_another() {
        let a = ServerTls::from_secret(&[7u8; 32]).expect("key a");
        let again = ServerTls::from_secret(&[7u8; 32]).expect("key a again");
        let b = ServerTls::from_secret(&[8u8; 32]).expect("key b");
        assert_eq!(a.pin(), again.pin());
        assert_ne!(a.pin(), b.pin());
        assert!(
            a.certificate_pem()
                .starts_with("-----BEGIN CERTIFICATE-----")
        );
    }

    #[test]
    fn a_key_file_that_is_not_a_p256_scalar_is_refused() {
        assert!(matches!(
            ServerTls::from_secret(&[0u8; 32]),
            Err(TlsError::InvalidKey)
        ));
        assert!(matches!(
            ServerTls::from_secret(&[0xff; 32]),
            Err(TlsError::InvalidKey)
        ));
    }
}
