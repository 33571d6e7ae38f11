//! A throwaway certificate authority made with rcgen at test time, and certificates it
//! issues (valid, expired, for another host) written as PEM files: for wiresocket's
//! `[server.tls]` and for TLS Redis Clusters. A client trusting only this CA is built
//! from [`Ca::der`] by the tests that need rustls.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, KeyUsagePurpose};
use rustls_pki_types::CertificateDer;

/// A CA that signs the test certificates; `ca.pem` in its directory.
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
    pub dir: PathBuf,
}

/// Which certificate to make.
pub enum Kind {
    /// For `localhost` and 127.0.0.1, valid now.
    Valid,
    /// For `localhost`, expired yesterday.
    Expired,
    /// Valid now, but for `other.example` only.
    WrongHost,
}

impl Ca {
    /// A new CA whose certificate is written to `dir/ca.pem`.
    pub fn new(dir: &Path) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "wiresocket test CA");
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("ca.pem"), issuer.pem()).unwrap();
        Ca {
            issuer,
            dir: dir.to_path_buf(),
        }
    }

    pub fn ca_path(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// The CA certificate (DER), for a client's root store.
    pub fn der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    /// Writes `<name>.crt` (leaf then CA: a full chain) and `<name>.key`; returns both paths
    /// and the leaf's DER.
    pub fn issue(&self, name: &str, kind: Kind) -> (PathBuf, PathBuf, CertificateDer<'static>) {
        let names = match kind {
            Kind::WrongHost => vec!["other.example".to_string()],
            _ => vec!["localhost".to_string(), "127.0.0.1".to_string()],
        };
        let mut params = CertificateParams::new(names).unwrap();
        let now = time::OffsetDateTime::now_utc();
        match kind {
            Kind::Expired => {
                params.not_before = now - time::Duration::days(30);
                params.not_after = now - time::Duration::days(1);
            }
            _ => {
                params.not_before = now - time::Duration::days(1);
                params.not_after = now + time::Duration::days(30);
            }
        }
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let (crt, keyp) = (
            self.dir.join(format!("{name}.crt")),
            self.dir.join(format!("{name}.key")),
        );
        let mut f = std::fs::File::create(&crt).unwrap();
        f.write_all(cert.pem().as_bytes()).unwrap();
        f.write_all(self.issuer.pem().as_bytes()).unwrap();
        std::fs::write(&keyp, key.serialize_pem()).unwrap();
        (crt, keyp, cert.der().clone())
    }
}
