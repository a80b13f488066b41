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

/// How long `tls init`'s certificates (the CA's too) are valid.
const INIT_VALIDITY_DAYS: i64 = 365;
/// The names every `tls init` server certificate holds.
const INIT_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// `voxproxy tls init`: make a local CA (its key discarded once it has signed) and a server
/// certificate and key for `localhost`, `127.0.0.1`, `::1` and `names`, valid for a year, that pass
/// strict X.509 verification (Python 3.13's `VERIFY_X509_STRICT`); then print how to use them.
/// Refuses (exit 2, nothing changed) when any of the three files exists, unless `force`.
pub fn init(
    dir: &Path,
    names: &[String],
    force: bool,
    out: &mut dyn std::io::Write,
) -> Result<(), crate::app::Failure> {
    use crate::app::config_err;
    use anyhow::Context as _;

    let mut sans: Vec<String> = INIT_NAMES.iter().map(|s| (*s).to_owned()).collect();
    for raw in names {
        let name = raw.trim();
        let name = name
            .strip_prefix('[')
            .and_then(|n| n.strip_suffix(']'))
            .unwrap_or(name);
        let canonical = match name.parse::<std::net::IpAddr>() {
            Ok(ip) => ip.to_string(),
            Err(_) => {
                rustls_pki_types::DnsName::try_from(name.to_owned()).map_err(|_| {
                    config_err(anyhow::anyhow!(
                        "--name {raw}: neither a DNS name nor an IP address"
                    ))
                })?;
                name.to_ascii_lowercase()
            }
        };
        if !sans.contains(&canonical) {
            sans.push(canonical);
        }
    }
    let files = [
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    ];
    let existing: Vec<String> = files
        .iter()
        .filter(|f| f.symlink_metadata().is_ok())
        .map(|f| f.display().to_string())
        .collect();
    if !existing.is_empty() && !force {
        return Err(config_err(anyhow::anyhow!(
            "tls init: {} exist(s) already; nothing was changed (use --force to replace all three)",
            existing.join(", ")
        )));
    }

    let issued = make_local_pki(&sans).context("tls init: making the certificates")?;
    std::fs::create_dir_all(dir)
        .with_context(|| format!("tls init: cannot create {}", dir.display()))?;
    // Write all three to temporary names first, then rename: either every file is new or none.
    let contents = [
        (&files[0], issued.ca_pem.as_bytes(), 0o644),
        (&files[1], issued.cert_pem.as_bytes(), 0o600),
        (&files[2], issued.key_pem.as_bytes(), 0o600),
    ];
    let mut staged = Vec::new();
    for (path, bytes, mode) in contents {
        let tmp = tmp_name(path);
        if let Err(e) = write_mode(&tmp, bytes, mode) {
            for t in &staged {
                let _ = std::fs::remove_file(t);
            }
            let _ = std::fs::remove_file(&tmp);
            return Err(anyhow::Error::new(e)
                .context(format!("tls init: cannot write {}", path.display()))
                .into());
        }
        staged.push(tmp);
    }
    for (tmp, path) in staged.iter().zip(&files) {
        std::fs::rename(tmp, path)
            .with_context(|| format!("tls init: cannot write {}", path.display()))?;
    }

    let shown = |p: &Path| p.display().to_string();
    let (ca, cert, key) = (shown(&files[0]), shown(&files[1]), shown(&files[2]));
    let text = format!(
        "wrote {ca} (the local CA; its private key was discarded after signing)
wrote {cert} and {key} (mode 0600): the server certificate for {names}, valid for {INIT_VALIDITY_DAYS} days

Serve TLS with them:
  voxproxy serve --listen 127.0.0.1:8443 --tls-cert {cert} --tls-key {key}
  (or VOXPROXY_TLS_CERT / VOXPROXY_TLS_KEY, or tls_cert / tls_key in the config file)

Make each client trust {ca}:
  Python (httpx, the official client):  SSL_CERT_FILE={ca}
      with VoximplantAPI(\"credentials.json\", endpoint=\"127.0.0.1:8443\").
      REQUESTS_CA_BUNDLE or CURL_CA_BUNDLE, when set, take precedence over SSL_CERT_FILE; and
      SSL_CERT_FILE replaces the system roots for that process (it then trusts only this CA).
  Node:  NODE_EXTRA_CA_CERTS={ca}  (added to Node's built-in roots)
      with new VoximplantApiClient({{pathToCredentials, host: \"127.0.0.1:8443\"}}).
  curl:  curl --cacert {ca} https://127.0.0.1:8443/platform_api/GetAccountInfo/
",
        names = sans.join(", "),
    );
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .context("writing to stdout")?;
    Ok(())
}

/// The PEM texts `tls init` writes; the CA's key is not among them.
struct LocalPki {
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
}

fn make_local_pki(sans: &[String]) -> Result<LocalPki, rcgen::Error> {
    use rcgen::{
        BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose,
        IsCa, Issuer, KeyPair, KeyUsagePurpose,
    };
    let now = time::OffsetDateTime::now_utc();
    // A minute back, so a client whose clock is a little behind accepts it at once.
    let not_before = now - time::Duration::minutes(1);
    let not_after = now + time::Duration::days(INIT_VALIDITY_DAYS);
    let host = std::env::var("HOSTNAME").unwrap_or_default();
    let host: String = host
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '.')
        .take(40)
        .collect();

    let mut ca = CertificateParams::default();
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "voxproxy");
    dn.push(
        DnType::CommonName,
        if host.is_empty() {
            "voxproxy local CA".to_owned()
        } else {
            format!("voxproxy local CA ({host})")
        },
    );
    ca.distinguished_name = dn;
    ca.not_before = not_before;
    ca.not_after = not_after;
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca, ca_key);

    let mut leaf = CertificateParams::new(sans.to_vec())?;
    leaf.is_ca = IsCa::ExplicitNoCa;
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.use_authority_key_identifier_extension = true;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "voxproxy");
    dn.push(DnType::CommonName, "voxproxy");
    leaf.distinguished_name = dn;
    leaf.not_before = not_before;
    leaf.not_after = not_after;
    let key = KeyPair::generate()?;
    let cert = leaf.signed_by(&key, &issuer)?;
    // `issuer` (and the CA key in it) is dropped here: nothing can sign with it again.
    Ok(LocalPki {
        ca_pem: ca_cert.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

fn tmp_name(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

fn write_mode(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    // Explicit, so the umask does not decide.
    f.set_permissions(std::fs::Permissions::from_mode(mode))?;
    f.sync_all()
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

    /// A client CA and a certificate it signed for `name`: (CA PEM, cert PEM, key PEM).
    fn client_pki(name: &str) -> (String, String, String) {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, KeyUsagePurpose};
        let mut ca = CertificateParams::default();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        let ca_key = KeyPair::generate().unwrap();
        let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
        let issuer = Issuer::new(ca, ca_key);
        let mut leaf = CertificateParams::new(vec![name.to_owned()]).unwrap();
        leaf.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate().unwrap();
        let cert = leaf.signed_by(&key, &issuer).unwrap();
        (ca_pem, cert.pem(), key.serialize_pem())
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
        let mut out = Vec::new();
        init(&dir.path().join("tls"), &[], false, &mut out).unwrap();
        let (client_ca, cert, key) = client_pki("ops.apps.internal");
        let ca_path = dir.path().join("client-ca.pem");
        std::fs::write(&ca_path, &client_ca).unwrap();
        let server_ca = std::fs::read_to_string(dir.path().join("tls/ca.pem")).unwrap();
        let files = TlsFiles {
            cert: dir.path().join("tls/cert.pem"),
            key: dir.path().join("tls/key.pem"),
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

    #[test]
    fn init_names_are_checked_and_ip_literals_become_ip_sans() {
        let dir = tempfile::tempdir().unwrap();
        let mut out = Vec::new();
        let err = init(dir.path(), &["bad name!".to_owned()], false, &mut out).unwrap_err();
        assert!(matches!(err, crate::app::Failure::Config(_)));
        assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none());
        init(
            dir.path(),
            &[
                "proxy.internal".to_owned(),
                "[fd00::1]".to_owned(),
                "10.1.2.3".to_owned(),
            ],
            false,
            &mut out,
        )
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("localhost, 127.0.0.1, ::1, proxy.internal, fd00::1, 10.1.2.3"),
            "{text}"
        );
        let pem = std::fs::read(dir.path().join("cert.pem")).unwrap();
        let der = CertificateDer::from_pem_slice(&pem).unwrap();
        let cert = webpki::EndEntityCert::try_from(&der).unwrap();
        for name in [
            "localhost",
            "proxy.internal",
            "127.0.0.1",
            "::1",
            "fd00::1",
            "10.1.2.3",
        ] {
            let sn = rustls_pki_types::ServerName::try_from(name).unwrap();
            assert!(cert.verify_is_valid_for_subject_name(&sn).is_ok(), "{name}");
        }
        let other = rustls_pki_types::ServerName::try_from("other.internal").unwrap();
        assert!(cert.verify_is_valid_for_subject_name(&other).is_err());
    }
}
