//! Inbound TLS: the server configuration for voxproxy's own listener (ALPN `h2` and `http/1.1`,
//! optional client certificates), reloadable without dropping connections.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// A connection's byte stream (TCP, Unix or TLS).
pub trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static> Io for T {}

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

/// Whether a listener with a client CA insists on a client certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientCerts {
    /// No certificate, no handshake: `tls_client_ca` without gateway clients, where nothing else
    /// could tell who a client is.
    #[default]
    Required,
    /// A certificate, when sent, must chain to the client CA; without one the handshake succeeds
    /// and the gateway authenticates the request another way (or answers 401). For gateway mode,
    /// where a certificate is one of three ways in.
    Optional,
}

/// Build the server configuration from the files; a client CA requires a client certificate.
pub fn server_config(files: &TlsFiles) -> Result<ServerConfig, TlsError> {
    server_config_with(files, ClientCerts::Required)
}

/// Build the server configuration from the files, with `client_certs` deciding whether a client
/// certificate is required when there is a client CA.
pub fn server_config_with(
    files: &TlsFiles,
    client_certs: ClientCerts,
) -> Result<ServerConfig, TlsError> {
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
            let mut verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            if client_certs == ClientCerts::Optional {
                verifier = verifier.allow_unauthenticated();
            }
            let verifier = verifier
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
    /// Whether a client CA makes a certificate mandatory (kept across reloads).
    client_certs: ClientCerts,
    config: ArcSwap<ServerConfig>,
}

impl Inbound {
    /// Load the files; a client CA requires a client certificate.
    pub fn new(files: TlsFiles) -> Result<Inbound, TlsError> {
        Self::with_client_certs(files, ClientCerts::Required)
    }

    /// Load the files; `client_certs` says whether a client CA makes a certificate mandatory
    /// (gateway mode: [`ClientCerts::Optional`]).
    pub fn with_client_certs(
        files: TlsFiles,
        client_certs: ClientCerts,
    ) -> Result<Inbound, TlsError> {
        let config = server_config_with(&files, client_certs)?;
        Ok(Inbound {
            files,
            client_certs,
            config: ArcSwap::from_pointee(config),
        })
    }

    /// Re-read the files; on failure the old configuration stays in force.
    pub fn reload(&self) -> Result<(), TlsError> {
        let config = server_config_with(&self.files, self.client_certs)?;
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
        // Plain HTTP to a TLS listener gets no answer but a closed connection: rustls would
        // answer a non-TLS first byte with an alert record, so look at it first.
        let mut io = io;
        let mut first = [0u8; 1];
        tokio::io::AsyncReadExt::read_exact(&mut io, &mut first).await?;
        if first[0] != TLS_HANDSHAKE_RECORD {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "not a TLS handshake (plain HTTP to the TLS listener?)",
            ));
        }
        let io: Box<dyn Io> = Box::new(Rewind {
            first: Some(first[0]),
            inner: io,
        });
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

/// The content type of a TLS handshake record, the first byte a TLS client sends.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// A stream with its first byte, already read, put back in front.
struct Rewind {
    first: Option<u8>,
    inner: Box<dyn Io>,
}

impl tokio::io::AsyncRead for Rewind {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if buf.remaining() > 0
            && let Some(b) = self.first.take()
        {
            buf.put_slice(&[b]);
            return std::task::Poll::Ready(Ok(()));
        }
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Rewind {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client_config(ca_pem: &str, client: Option<(String, String)>) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            roots.add(c.unwrap()).unwrap();
        }
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
        Arc::new(match client {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => builder
                .with_client_auth_cert(
                    CertificateDer::pem_slice_iter(cert.as_bytes())
                        .map(Result::unwrap)
                        .collect(),
                    PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
                )
                .unwrap(),
        })
    }

    /// A CA and a certificate it signed for `name` (a client certificate when `client`):
    /// (CA PEM, cert PEM, key PEM).
    fn pki(name: &str, client: bool) -> (String, String, String) {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, KeyUsagePurpose};
        let mut ca = CertificateParams::default();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        let ca_key = KeyPair::generate().unwrap();
        let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
        let issuer = Issuer::new(ca, ca_key);
        let mut leaf = CertificateParams::new(vec![name.to_owned()]).unwrap();
        leaf.extended_key_usages = vec![if client {
            rcgen::ExtendedKeyUsagePurpose::ClientAuth
        } else {
            rcgen::ExtendedKeyUsagePurpose::ServerAuth
        }];
        let key = KeyPair::generate().unwrap();
        let cert = leaf.signed_by(&key, &issuer).unwrap();
        (ca_pem, cert.pem(), key.serialize_pem())
    }

    fn client_pki(name: &str) -> (String, String, String) {
        pki(name, true)
    }

    /// Handshake over an in-memory pipe: the server's view of the client certificate, or the
    /// server's error.
    async fn handshake(
        inbound: &Inbound,
        client: Arc<rustls::ClientConfig>,
    ) -> std::io::Result<Option<Arc<CertificateDer<'static>>>> {
        let (a, b) = tokio::io::duplex(64 * 1024);
        let connector = tokio_rustls::TlsConnector::from(client);
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        let client = tokio::spawn(async move {
            let mut s = connector.connect(name, a).await?;
            // TLS 1.3: the server's verdict on the client certificate arrives after the client's
            // handshake ends; read once so a refusal surfaces here.
            use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
            s.write_all(b"x").await?;
            let mut buf = [0u8; 1];
            let _ = s.read(&mut buf).await;
            Ok::<_, std::io::Error>(())
        });
        let server = inbound.accept(Box::new(b)).await;
        let result = match server {
            Ok((mut stream, peer)) => {
                use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
                let mut buf = [0u8; 1];
                stream.read_exact(&mut buf).await?;
                stream.write_all(b"y").await?;
                Ok(peer)
            }
            Err(e) => Err(e),
        };
        let _ = client.await;
        result
    }

    #[tokio::test]
    async fn a_client_ca_requires_a_certificate_unless_optional() {
        let dir = tempfile::tempdir().unwrap();
        let (server_ca, server_cert, server_key) = pki("localhost", false);
        std::fs::write(dir.path().join("cert.pem"), server_cert).unwrap();
        std::fs::write(dir.path().join("key.pem"), server_key).unwrap();
        let (client_ca, cert, key) = client_pki("ops.apps.internal");
        let ca_path = dir.path().join("client-ca.pem");
        std::fs::write(&ca_path, &client_ca).unwrap();
        let files = TlsFiles {
            cert: dir.path().join("cert.pem"),
            key: dir.path().join("key.pem"),
            client_ca: Some(ca_path),
        };

        let required = Inbound::new(files.clone()).unwrap();
        assert!(
            handshake(&required, client_config(&server_ca, None))
                .await
                .is_err(),
            "no certificate, no handshake"
        );
        let peer = handshake(
            &required,
            client_config(&server_ca, Some((cert.clone(), key.clone()))),
        )
        .await
        .unwrap();
        assert!(peer.is_some());

        let optional = Inbound::with_client_certs(files, ClientCerts::Optional).unwrap();
        let peer = handshake(&optional, client_config(&server_ca, None))
            .await
            .unwrap();
        assert!(peer.is_none(), "no certificate: the gateway decides");
        let peer = handshake(&optional, client_config(&server_ca, Some((cert, key))))
            .await
            .unwrap();
        assert!(peer.is_some());
        optional.reload().unwrap();
        let peer = handshake(&optional, client_config(&server_ca, None))
            .await
            .unwrap();
        assert!(peer.is_none(), "still optional after a reload");
        // A certificate from another CA is refused even when certificates are optional.
        let (_, stranger_cert, stranger_key) = client_pki("ops.apps.internal");
        assert!(
            handshake(
                &optional,
                client_config(&server_ca, Some((stranger_cert, stranger_key)))
            )
            .await
            .is_err()
        );
    }
}
