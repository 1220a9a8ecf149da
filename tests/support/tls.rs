//! Test PKI: a throw-away CA and a server certificate it signed, made with
//! rcgen and written as PEM files for Dovecot (`ssl_cert`/`ssl_key`) and for
//! clients (`ca.pem`).

use std::fs;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

/// Paths of the PEM files written by [`write_test_pki`].
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The CA certificate (what clients must trust).
    pub ca_pem: PathBuf,
    /// The server certificate (leaf only), SAN: DNS `localhost` and [`NETNS_SERVER_NAME`], IP
    /// 127.0.0.1.
    pub cert_pem: PathBuf,
    /// The server's private key (PKCS#8), mode 0600.
    pub key_pem: PathBuf,
}

/// The name under which a network-namespace testbed's client reaches the server over TLS
/// (see `netns::Testbed::resolve_server_name`).
pub const NETNS_SERVER_NAME: &str = "imap.mailpulse.test";

/// Creates `dir` and writes `ca.pem`, `server.pem` and `server.key` into it.
pub fn write_test_pki(dir: &Path) -> TlsFiles {
    fs::create_dir_all(dir).expect("create TLS dir");

    // The CA: self-signed, allowed to sign certificates.
    let ca_key = KeyPair::generate().expect("generate CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "mailpulse test CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key).expect("self-sign CA");
    let issuer = Issuer::new(ca_params, ca_key);

    // The server certificate, valid for "localhost" and 127.0.0.1.
    let server_key = KeyPair::generate().expect("generate server key");
    let mut params =
        CertificateParams::new(vec!["localhost".to_string(), NETNS_SERVER_NAME.to_string()])
            .expect("server params");
    params
        .subject_alt_names
        .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    let server_cert = params
        .signed_by(&server_key, &issuer)
        .expect("sign server certificate");

    let files = TlsFiles {
        ca_pem: dir.join("ca.pem"),
        cert_pem: dir.join("server.pem"),
        key_pem: dir.join("server.key"),
    };
    fs::write(&files.ca_pem, ca_cert.pem()).expect("write ca.pem");
    fs::write(&files.cert_pem, server_cert.pem()).expect("write server.pem");
    fs::write(&files.key_pem, server_key.serialize_pem()).expect("write server.key");
    // Dovecot refuses a private key others can read.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&files.key_pem, fs::Permissions::from_mode(0o600))
            .expect("chmod server.key");
    }
    files
}
