//! `voxproxy tls init`: a local CA (its key discarded once it has signed) and a server
//! certificate and key for voxproxy's own listener, valid DER that strict verifiers accept; then
//! how to use them.

use std::path::{Path, PathBuf};

use crate::error::{Failure, config_err};

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
) -> Result<(), Failure> {
    use anyhow::Context as _;

    let sans = subject_names(names)?;
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
    write_all_or_none(&[
        (&files[0], issued.ca_pem.as_bytes(), 0o644),
        (&files[1], issued.cert_pem.as_bytes(), 0o600),
        (&files[2], issued.key_pem.as_bytes(), 0o600),
    ])?;
    super::out::write_out(out, usage(&files, &sans).as_bytes())
}

/// The server certificate's names: `localhost`, `127.0.0.1`, `::1` and each `--name`
/// (canonical, each once); an IP literal becomes an IP SAN.
fn subject_names(names: &[String]) -> Result<Vec<String>, Failure> {
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
    Ok(sans)
}

/// Write every file to a temporary name first, then rename each over its target: either every
/// file is new or none is.
fn write_all_or_none(files: &[(&PathBuf, &[u8], u32)]) -> Result<(), Failure> {
    use anyhow::Context as _;
    let mut staged = Vec::new();
    for (path, bytes, mode) in files {
        let tmp = tmp_name(path);
        if let Err(e) = write_mode(&tmp, bytes, *mode) {
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
    for (tmp, (path, _, _)) in staged.iter().zip(files) {
        std::fs::rename(tmp, path)
            .with_context(|| format!("tls init: cannot write {}", path.display()))?;
    }
    Ok(())
}

/// What `tls init` prints: what it wrote, the settings to use, how each client trusts the CA.
fn usage(files: &[PathBuf; 3], sans: &[String]) -> String {
    let shown = |p: &Path| p.display().to_string();
    let (ca, cert, key) = (shown(&files[0]), shown(&files[1]), shown(&files[2]));
    format!(
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
    )
}

/// OID of the basicConstraints extension (RFC 5280 4.2.1.9).
const BASIC_CONSTRAINTS: &[u64] = &[2, 5, 29, 19];

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
    // basicConstraints cA:FALSE, encoded as DER wants it: an empty SEQUENCE (`30 00`). `cA` is
    // `DEFAULT FALSE`, and X.690 forbids encoding a DEFAULT value; rcgen's `ExplicitNoCa` writes
    // `30 03 01 01 00`, which pyca/cryptography refuses to load.
    leaf.is_ca = IsCa::NoCa;
    leaf.custom_extensions = vec![rcgen::CustomExtension::from_oid_content(
        BASIC_CONSTRAINTS,
        vec![0x30, 0x00],
    )];
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
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject as _;

    use super::*;

    #[test]
    fn init_names_are_checked_and_ip_literals_become_ip_sans() {
        let dir = tempfile::tempdir().unwrap();
        let mut out = Vec::new();
        let err = init(dir.path(), &["bad name!".to_owned()], false, &mut out).unwrap_err();
        assert!(matches!(err, Failure::Config(_)));
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
