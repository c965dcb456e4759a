//! TLS for every listener: certificates from PEM files or a self-signed one made on first
//! start, reloadable without dropping connections (SIGHUP), TLS 1.2 and 1.3 only, ring as the
//! crypto provider.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::crypto::ring as provider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Where the certificate comes from.
#[derive(Debug, Clone)]
pub enum CertSource {
    /// PEM files named in the config.
    Files { cert: PathBuf, key: PathBuf },
    /// A self-signed certificate for `hostname`, made once and kept in `dir`.
    SelfSigned { dir: PathBuf, hostname: String },
}

/// Facts about an established TLS session, for `Received:` headers and SASL channel binding.
#[derive(Debug, Clone, Default)]
pub struct TlsInfo {
    /// `TLSv1.3` or `TLSv1.2`.
    pub version: String,
    pub cipher: String,
    /// RFC 9266 `tls-exporter` channel binding (TLS 1.3 only).
    pub exporter: Option<Vec<u8>>,
    /// RFC 5929 `tls-server-end-point`: SHA-256 of our certificate.
    pub server_end_point: Option<Vec<u8>>,
}

impl TlsInfo {
    /// `TLSv1.3 with cipher TLS13_AES_256_GCM_SHA384`, for `Received:` headers.
    pub fn describe(&self) -> String {
        format!("{} with cipher {}", self.version, self.cipher)
    }
}

/// Why TLS could not be set up.
#[derive(Debug)]
pub struct TlsError(pub String);

impl std::fmt::Display for TlsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TlsError {}

fn err(context: &str, e: impl std::fmt::Display) -> TlsError {
    TlsError(format!("{context}: {e}"))
}

struct Loaded {
    key: Arc<CertifiedKey>,
    end_point: Vec<u8>,
}

/// The server's certificate, swappable at run time.
struct Resolver {
    current: RwLock<Arc<Loaded>>,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Resolver")
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().expect("cert lock poisoned").key.clone())
    }
}

/// The TLS acceptor shared by all listeners.
#[derive(Clone)]
pub struct Tls {
    source: CertSource,
    resolver: Arc<Resolver>,
    acceptor: tokio_rustls::TlsAcceptor,
}

fn load(source: &CertSource) -> Result<Loaded, TlsError> {
    let (certs, key) = match source {
        CertSource::Files { cert, key } => read_pem(cert, key)?,
        CertSource::SelfSigned { dir, hostname } => {
            let cert = dir.join("cert.pem");
            let key = dir.join("key.pem");
            if !cert.exists() || !key.exists() {
                generate(dir, hostname, &cert, &key)?;
            }
            read_pem(&cert, &key)?
        }
    };
    let signing =
        provider::sign::any_supported_type(&key).map_err(|e| err("unusable private key", e))?;
    let end_point = ring::digest::digest(&ring::digest::SHA256, certs[0].as_ref())
        .as_ref()
        .to_vec();
    Ok(Loaded {
        key: Arc::new(CertifiedKey::new(certs, signing)),
        end_point,
    })
}

fn read_pem(
    cert: &Path,
    key: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| err(&format!("read {}", cert.display()), e))?
        .collect::<Result<_, _>>()
        .map_err(|e| err(&format!("parse {}", cert.display()), e))?;
    if certs.is_empty() {
        return Err(TlsError(format!("{} holds no certificate", cert.display())));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| err(&format!("read {}", key.display()), e))?;
    Ok((certs, key))
}

fn generate(dir: &Path, hostname: &str, cert: &Path, key: &Path) -> Result<(), TlsError> {
    std::fs::create_dir_all(dir).map_err(|e| err("create tls directory", e))?;
    let generated = rcgen::generate_simple_self_signed(vec![hostname.to_string()])
        .map_err(|e| err("generate a self-signed certificate", e))?;
    // The key first, private from the start; then the certificate, whose presence marks success.
    write_private(key, generated.signing_key.serialize_pem().as_bytes())?;
    std::fs::write(cert, generated.cert.pem()).map_err(|e| err("write certificate", e))?;
    tracing::info!(%hostname, path = %cert.display(), "generated a self-signed certificate");
    Ok(())
}

fn write_private(path: &Path, data: &[u8]) -> Result<(), TlsError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| err("write private key", e))?;
    file.write_all(data)
        .map_err(|e| err("write private key", e))
}

impl Tls {
    /// Loads (or makes) the certificate and builds the acceptor.
    pub fn new(source: CertSource) -> Result<Tls, TlsError> {
        let loaded = load(&source)?;
        let resolver = Arc::new(Resolver {
            current: RwLock::new(Arc::new(loaded)),
        });
        let config =
            rustls::ServerConfig::builder_with_provider(Arc::new(provider::default_provider()))
                .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
                .map_err(|e| err("TLS versions", e))?
                .with_no_client_auth()
                .with_cert_resolver(resolver.clone());
        Ok(Tls {
            source,
            resolver,
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        })
    }

    /// Reads the certificate again; new handshakes use it, open connections are untouched.
    pub fn reload(&self) -> Result<(), TlsError> {
        let loaded = load(&self.source)?;
        *self.resolver.current.write().expect("cert lock poisoned") = Arc::new(loaded);
        Ok(())
    }

    /// The acceptor, for servers outside this crate's driver (the webmail's HTTPS).
    pub fn acceptor(&self) -> &tokio_rustls::TlsAcceptor {
        &self.acceptor
    }

    pub(crate) fn end_point(&self) -> Vec<u8> {
        self.resolver
            .current
            .read()
            .expect("cert lock poisoned")
            .end_point
            .clone()
    }
}

/// Reads the session facts off an established server connection.
pub(crate) fn info(conn: &rustls::ServerConnection, end_point: Vec<u8>) -> TlsInfo {
    let version = match conn.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
        _ => "TLS",
    };
    let cipher = conn
        .negotiated_cipher_suite()
        .map(|s| format!("{:?}", s.suite()))
        .unwrap_or_default();
    let exporter = if version == "TLSv1.3" {
        conn.export_keying_material([0u8; 32], b"EXPORTER-Channel-Binding", None)
            .ok()
            .map(|k| k.to_vec())
    } else {
        None
    };
    TlsInfo {
        version: version.into(),
        cipher,
        exporter,
        server_end_point: Some(end_point),
    }
}
