//! Inbound TLS: the server configuration for voxproxy's own listener (ALPN `h2` and `http/1.1`,
//! optional client certificates), reloadable without dropping connections, and `tls init`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::server::Io;

/// Loading the TLS files failed.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file cannot be read or parsed.
    #[error("{setting} {}: {reason}", path.display())]
    File {
        setting: &'static str,
        path: PathBuf,
        reason: String,
    },
    /// rustls refused the combination.
    #[error("{setting}: {source}")]
    Config {
        setting: &'static str,
        #[source]
        source: rustls::Error,
    },
}

/// The paths of the TLS files.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// Certificate chain (PEM).
    pub cert: PathBuf,
    /// Private key (PEM).
    pub key: PathBuf,
    /// CA for client certificates (PEM).
    pub client_ca: Option<PathBuf>,
}

fn file_err(setting: &'static str, path: &Path, reason: impl Into<String>) -> TlsError {
    TlsError::File {
        setting,
        path: path.to_owned(),
        reason: reason.into(),
    }
}

fn load_certs(
    setting: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_err(setting, path, format!("cannot read: {e}")))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_err(setting, path, format!("not PEM certificates: {e}")))?;
    if certs.is_empty() {
        return Err(file_err(setting, path, "holds no certificate"));
    }
    Ok(certs)
}

/// Build the server configuration from the files.
pub fn server_config(files: &TlsFiles) -> Result<ServerConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let certs = load_certs("tls_cert", &files.cert)?;
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| file_err("tls_key", &files.key, format!("not a PEM private key: {e}")))?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|source| TlsError::Config {
            setting: "tls_cert",
            source,
        })?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in load_certs("tls_client_ca", ca)? {
                roots.add(cert).map_err(|source| TlsError::Config {
                    setting: "tls_client_ca",
                    source,
                })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| file_err("tls_client_ca", ca, e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|source| TlsError::Config {
            setting: "tls_key",
            source,
        })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Inbound TLS for one listener; the configuration is swapped on reload, so new handshakes use
/// new certificates while open connections carry on.
#[derive(Debug)]
pub struct Inbound {
    /// The files, read again on reload.
    pub files: TlsFiles,
    config: ArcSwap<ServerConfig>,
}

impl Inbound {
    /// Load the files.
    pub fn new(files: TlsFiles) -> Result<Inbound, TlsError> {
        let config = server_config(&files)?;
        Ok(Inbound {
            files,
            config: ArcSwap::from_pointee(config),
        })
    }

    /// Re-read the files; on failure the old configuration stays in force.
    pub fn reload(&self) -> Result<(), TlsError> {
        let config = server_config(&self.files)?;
        self.config.store(Arc::new(config));
        Ok(())
    }

    /// Complete a handshake; returns the stream and the client's verified certificate, if any.
    pub async fn accept(
        &self,
        io: Box<dyn Io>,
    ) -> std::io::Result<(
        tokio_rustls::server::TlsStream<Box<dyn Io>>,
        Option<Arc<CertificateDer<'static>>>,
    )> {
        let acceptor = tokio_rustls::TlsAcceptor::from(self.config.load_full());
        let stream = acceptor.accept(io).await?;
        let peer = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| Arc::new(c.clone().into_owned()));
        Ok((stream, peer))
    }
}

/// `voxproxy tls init`.
pub fn init(
    _dir: &Path,
    _names: &[String],
    _force: bool,
    _out: &mut dyn std::io::Write,
) -> Result<(), crate::app::Failure> {
    Err(crate::app::Failure::Runtime(anyhow::anyhow!(
        "not implemented yet"
    )))
}
