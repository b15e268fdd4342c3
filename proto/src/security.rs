//! Who may talk to a wasmgrid process: every call carries the cluster's shared token
//! (`authorization: Bearer …`), checked in constant time on every service, and every
//! connection can be TLS (rustls), verified against a CA of the cluster's choosing.
//!
//! One [`Security`] is loaded at start-up from the files named by `--auth-token-file`,
//! `--tls-cert`, `--tls-key` and `--tls-ca`; servers take their TLS config and token check
//! from it, clients their endpoints and token interceptor.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use subtle::ConstantTimeEq;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::service::Interceptor;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity, ServerTlsConfig};
use tonic::{Request, Status};

/// The metadata key the token travels in.
pub const AUTH_METADATA: &str = "authorization";

/// A channel whose every call carries the token (when there is one).
pub type AuthChannel = InterceptedService<Channel, AddToken>;

#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    #[error("cannot read {what} {path}: {source}")]
    Read { what: &'static str, path: PathBuf, source: std::io::Error },
    #[error("auth token file {0} is empty")]
    EmptyToken(PathBuf),
    #[error("auth token in {0} must be printable ASCII without spaces")]
    BadToken(PathBuf),
    #[error("{0} needs {1} too")]
    Incomplete(&'static str, &'static str),
    #[error("bad address {0}: {1}")]
    Address(String, String),
    #[error("TLS setup: {0}")]
    Tls(String),
    #[error("{what} {path} is not usable: {problem}")]
    Pem { what: &'static str, path: PathBuf, problem: String },
}

/// Where the secrets are, as given by flags or config files.
#[derive(Debug, Clone, Default)]
pub struct SecurityFiles {
    pub auth_token_file: Option<PathBuf>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub tls_ca: Option<PathBuf>,
}

/// The loaded secrets of one process. `Security::default()` is an open cluster: no token,
/// plaintext.
#[derive(Clone, Default)]
pub struct Security {
    token: Option<Arc<str>>,
    identity: Option<Identity>,
    ca: Option<Certificate>,
}

impl std::fmt::Debug for Security {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token itself.
        f.debug_struct("Security")
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .field("tls_identity", &self.identity.is_some())
            .field("tls_ca", &self.ca.is_some())
            .finish()
    }
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, SecurityError> {
    std::fs::read(path).map_err(|source| SecurityError::Read { what, path: path.to_path_buf(), source })
}

/// Reads a token file: surrounding whitespace is ignored; the rest must be printable ASCII.
pub fn read_token_file(path: &Path) -> Result<String, SecurityError> {
    let bytes = read("auth token file", path)?;
    let text = String::from_utf8(bytes).map_err(|_| SecurityError::BadToken(path.to_path_buf()))?;
    let token = text.trim();
    if token.is_empty() {
        return Err(SecurityError::EmptyToken(path.to_path_buf()));
    }
    if !printable(token) {
        return Err(SecurityError::BadToken(path.to_path_buf()));
    }
    Ok(token.to_string())
}

/// A token travels in an HTTP header: printable ASCII, no spaces.
fn printable(token: &str) -> bool {
    token.bytes().all(|b| b.is_ascii_graphic())
}

/// The PEM certificates in `path`, checked here so that a wrong file is named at start-up
/// rather than found by the TLS layer, which only says "transport error".
fn certificates(what: &'static str, path: &Path) -> Result<Vec<u8>, SecurityError> {
    use rustls_pki_types::pem::PemObject;
    let bytes = read(what, path)?;
    let bad = |problem: String| SecurityError::Pem { what, path: path.to_path_buf(), problem };
    let certs = rustls_pki_types::CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(e.to_string()))?;
    if certs.is_empty() {
        return Err(bad("it holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into()));
    }
    Ok(bytes)
}

/// The PEM private key in `path`, checked like [`certificates`].
fn private_key(path: &Path) -> Result<Vec<u8>, SecurityError> {
    use rustls_pki_types::pem::PemObject;
    let bytes = read("TLS key", path)?;
    rustls_pki_types::PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| SecurityError::Pem {
        what: "TLS key",
        path: path.to_path_buf(),
        problem: format!("no PEM private key in it ({e})"),
    })?;
    Ok(bytes)
}

impl Security {
    /// Loads every file named; a certificate needs its key and the other way round.
    pub fn load(files: &SecurityFiles) -> Result<Self, SecurityError> {
        let token = files.auth_token_file.as_deref().map(read_token_file).transpose()?;
        let identity = match (&files.tls_cert, &files.tls_key) {
            (Some(cert), Some(key)) => {
                Some(Identity::from_pem(certificates("TLS certificate", cert)?, private_key(key)?))
            }
            (Some(_), None) => return Err(SecurityError::Incomplete("tls-cert", "tls-key")),
            (None, Some(_)) => return Err(SecurityError::Incomplete("tls-key", "tls-cert")),
            (None, None) => None,
        };
        let ca = files
            .tls_ca
            .as_deref()
            .map(|p| certificates("TLS CA certificate", p).map(Certificate::from_pem))
            .transpose()?;
        Ok(Self { token: token.map(Arc::from), identity, ca })
    }

    /// Uses `token` (from `WASMGRID_TOKEN`, say) when no token file gave one.
    pub fn with_token_fallback(mut self, token: Option<String>) -> Result<Self, SecurityError> {
        if self.token.is_none() {
            if let Some(t) = token.map(|t| t.trim().to_string()).filter(|t| !t.is_empty()) {
                if !printable(&t) {
                    return Err(SecurityError::BadToken(PathBuf::from("WASMGRID_TOKEN")));
                }
                self.token = Some(Arc::from(t));
            }
        }
        Ok(self)
    }

    /// True when this process calls others over TLS.
    pub fn tls_client(&self) -> bool {
        self.ca.is_some()
    }

    /// The TLS config of this process's listeners, if it has a certificate.
    pub fn server_tls(&self) -> Option<ServerTlsConfig> {
        self.identity.clone().map(|id| ServerTlsConfig::new().identity(id))
    }

    /// An endpoint for `host:port`: TLS (verified against the CA) when a CA is configured.
    pub fn endpoint(&self, host: &str, port: u16) -> Result<Endpoint, SecurityError> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let shown = format!("{host}:{port}");
        let Some(ca) = &self.ca else {
            return Endpoint::from_shared(format!("http://{shown}"))
                .map_err(|e| SecurityError::Address(shown, e.to_string()));
        };
        let tls = ClientTlsConfig::new().ca_certificate(ca.clone()).domain_name(bare.to_string());
        Endpoint::from_shared(format!("https://{shown}"))
            .map_err(|e| SecurityError::Address(shown.clone(), e.to_string()))?
            .tls_config(tls)
            .map_err(|e| SecurityError::Tls(format!("{shown}: {e}")))
    }

    /// The interceptor that puts the token on outgoing calls.
    pub fn add_token(&self) -> AddToken {
        AddToken(self.token.as_ref().and_then(|t| format!("Bearer {t}").parse().ok()))
    }

    /// The interceptor that refuses incoming calls without the token.
    pub fn check_token(&self) -> CheckToken {
        CheckToken(self.token.as_ref().map(|t| Arc::from(format!("Bearer {t}").into_bytes())))
    }

    /// Wraps `channel` so every call carries the token.
    pub fn wrap(&self, channel: Channel) -> AuthChannel {
        InterceptedService::new(channel, self.add_token())
    }
}

/// Adds `authorization: Bearer <token>` to every outgoing call.
#[derive(Clone, Default)]
pub struct AddToken(Option<MetadataValue<Ascii>>);

impl Interceptor for AddToken {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(value) = &self.0 {
            request.metadata_mut().insert(AUTH_METADATA, value.clone());
        }
        Ok(request)
    }
}

/// Refuses calls whose token is missing or wrong, comparing in constant time. Open when the
/// process has no token.
#[derive(Clone, Default)]
pub struct CheckToken(Option<Arc<[u8]>>);

impl Interceptor for CheckToken {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let Some(expected) = &self.0 else { return Ok(request) };
        match request.metadata().get(AUTH_METADATA) {
            None => Err(Status::unauthenticated(
                "this cluster requires an auth token: pass --auth-token-file (or set WASMGRID_TOKEN)",
            )),
            Some(given) if bool::from(given.as_bytes().ct_eq(expected)) => Ok(request),
            Some(_) => Err(Status::unauthenticated("wrong auth token")),
        }
    }
}
