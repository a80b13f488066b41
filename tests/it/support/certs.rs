//! Test-time keys and certificates: a CA and a server certificate for 127.0.0.1 (rcgen), and
//! Voximplant credentials files with fresh RSA keys (aws-lc-rs). Nothing here is committed.

use std::path::{Path, PathBuf};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::KeyPair as _;
use rcgen::{
    BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// A CA and a server certificate signed by it.
pub struct Pki {
    /// CA certificate, PEM.
    pub ca_pem: String,
    /// Server certificate, PEM.
    pub cert_pem: String,
    /// Server key, PEM.
    pub key_pem: String,
    /// The CA, to sign more certificates (client certificates).
    ca: Issuer<'static, KeyPair>,
}

impl Pki {
    /// A fresh CA and a server certificate for `localhost`, `127.0.0.1`, `::1` and `extra`.
    pub fn new(extra: &[&str]) -> Pki {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "voxproxy test CA");
        let ca_key = KeyPair::generate().unwrap();
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let ca = Issuer::new(ca_params, ca_key);
        let mut names = vec![
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
            "::1".to_owned(),
        ];
        names.extend(extra.iter().map(|s| s.to_string()));
        let (cert_pem, key_pem) = Self::leaf(&ca, names, ExtendedKeyUsagePurpose::ServerAuth);
        Pki {
            ca_pem: ca_cert.pem(),
            cert_pem,
            key_pem,
            ca,
        }
    }

    fn leaf(
        ca: &Issuer<'static, KeyPair>,
        names: Vec<String>,
        eku: ExtendedKeyUsagePurpose,
    ) -> (String, String) {
        let mut params = CertificateParams::new(names).unwrap();
        params.extended_key_usages = vec![eku];
        params.use_authority_key_identifier_extension = true;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "voxproxy test");
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, ca).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// A client certificate for DNS name `name`: (cert PEM, key PEM).
    pub fn client_cert(&self, name: &str) -> (String, String) {
        Self::leaf(
            &self.ca,
            vec![name.to_owned()],
            ExtendedKeyUsagePurpose::ClientAuth,
        )
    }

    /// Write `ca.pem`, `cert.pem`, `key.pem` into `dir`.
    pub fn write(&self, dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
        let ca = dir.join("ca.pem");
        let cert = dir.join("cert.pem");
        let key = dir.join("key.pem");
        std::fs::write(&ca, &self.ca_pem).unwrap();
        std::fs::write(&cert, &self.cert_pem).unwrap();
        std::fs::write(&key, &self.key_pem).unwrap();
        (ca, cert, key)
    }
}

/// A fresh RSA-2048 key: PKCS#8 DER and the public key (PKCS#1 DER) for verification.
pub struct RsaKey {
    /// PKCS#8 DER of the private key.
    pub pkcs8: Vec<u8>,
    /// PKCS#1 `RSAPublicKey` DER.
    pub public_der: Vec<u8>,
}

impl RsaKey {
    /// Generate a key.
    pub fn generate() -> RsaKey {
        let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let pkcs8 = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&pair)
            .unwrap()
            .as_ref()
            .to_vec();
        let public_der = pair.public_key().as_ref().to_vec();
        RsaKey { pkcs8, public_der }
    }

    /// PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`).
    pub fn pkcs8_pem(&self) -> String {
        pem("PRIVATE KEY", &self.pkcs8)
    }

    /// A jsonwebtoken key that verifies tokens signed with this key.
    pub fn decoding_key(&self) -> jsonwebtoken::DecodingKey {
        jsonwebtoken::DecodingKey::from_rsa_der(&self.public_der)
    }

    /// A jsonwebtoken key that signs with this key (to play an app that signs its own JWTs).
    pub fn encoding_key(&self) -> jsonwebtoken::EncodingKey {
        jsonwebtoken::EncodingKey::from_rsa_pem(self.pkcs8_pem().as_bytes()).unwrap()
    }
}

/// PEM-encode DER (the library's own encoder).
pub use voxproxy::credentials::pem_encode as pem;

/// A Voximplant credentials file and its key.
pub struct Creds {
    /// Where it was written.
    pub path: PathBuf,
    /// The account id.
    pub account: u64,
    /// The key id.
    pub key_id: String,
    /// The key.
    pub key: RsaKey,
}

impl Creds {
    /// Write a credentials file for `account` with a fresh key, mode 0600.
    pub fn write(dir: &Path, file: &str, account: u64) -> Creds {
        let key = RsaKey::generate();
        let key_id = format!("kid-{account}-{}", &uuid::Uuid::new_v4().to_string()[..8]);
        let path = dir.join(file);
        Self::write_json(&path, account, &key_id, &key);
        Creds {
            path,
            account,
            key_id,
            key,
        }
    }

    /// Write the JSON of a credentials file (atomically: temp file, then rename over).
    pub fn write_json(path: &Path, account: u64, key_id: &str, key: &RsaKey) {
        use std::os::unix::fs::PermissionsExt;
        let json = serde_json::json!({
            "account_email": "ops@example.com",
            "account_id": account,
            "key_id": key_id,
            "private_key": key.pkcs8_pem(),
        });
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(&json).unwrap()).unwrap();
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    }
}
