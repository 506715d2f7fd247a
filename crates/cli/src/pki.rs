//! `lingjing up`'s local certificate authority: a CA made once in the data directory
//! (`ca.pem`, its key `ca-key.pem` 0600) and, at every start, a server certificate for the
//! control API (`control.pem`, `control-key.pem` 0600) valid for the listen address,
//! `localhost`, `127.0.0.1` and `::1`. Clients trust `ca.pem` (the CLI finds it in the data
//! directory; the data planes `up` runs are given it).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use lingjing_client::fs::{tighten_file, write_private};
use lingjing_control::server::TlsFiles;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};

use crate::context::CA_FILE;

/// The CA key file in the data directory.
pub const CA_KEY_FILE: &str = "ca-key.pem";
/// The control API's certificate and key files in the data directory.
pub const SERVER_CERT_FILE: &str = "control.pem";
pub const SERVER_KEY_FILE: &str = "control-key.pem";

/// The files `up` serves and hands out.
pub struct LocalTls {
    /// The CA certificate clients trust.
    pub ca: PathBuf,
    /// The control API's certificate and key.
    pub server: TlsFiles,
}

/// The CA's parameters: the same at every start, so that an issuer rebuilt from them and
/// the kept key signs certificates that chain to the kept `ca.pem`.
fn ca_params() -> anyhow::Result<CertificateParams> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params
        .distinguished_name
        .push(DnType::CommonName, "Lingjing local CA (lingjing up)");
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::days(1);
    params.not_after = now + Duration::days(10 * 365);
    Ok(params)
}

/// Makes the CA if the data directory has none, and a fresh server certificate for
/// `listen`.
pub fn ensure(data_dir: &Path, listen: SocketAddr) -> anyhow::Result<LocalTls> {
    let ca_path = data_dir.join(CA_FILE);
    let ca_key_path = data_dir.join(CA_KEY_FILE);
    tighten_file(&ca_key_path)?;
    let ca_key = match std::fs::read_to_string(&ca_key_path) {
        Ok(pem) if ca_path.is_file() => KeyPair::from_pem(&pem).with_context(|| {
            format!(
                "{} is not a usable key: move it and {} away to make a new CA",
                ca_key_path.display(),
                ca_path.display()
            )
        })?,
        _ => {
            let key = KeyPair::generate()?;
            let cert = ca_params()?.self_signed(&key)?;
            write_private(&ca_key_path, key.serialize_pem().as_bytes())
                .with_context(|| format!("cannot write {}", ca_key_path.display()))?;
            write_private(&ca_path, cert.pem().as_bytes())
                .with_context(|| format!("cannot write {}", ca_path.display()))?;
            tracing::info!(ca = %ca_path.display(), "made a local CA for the control API");
            key
        }
    };
    let issuer = Issuer::new(ca_params()?, ca_key);

    let mut names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    let ip = listen.ip();
    if !ip.is_unspecified() && !names.contains(&ip.to_string()) {
        names.push(ip.to_string());
    }
    let mut params = CertificateParams::new(names)?;
    params
        .distinguished_name
        .push(DnType::CommonName, "Lingjing control plane");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::days(1);
    params.not_after = now + Duration::days(365);
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    let server = TlsFiles {
        cert: data_dir.join(SERVER_CERT_FILE),
        key: data_dir.join(SERVER_KEY_FILE),
    };
    write_private(&server.key, key.serialize_pem().as_bytes())
        .with_context(|| format!("cannot write {}", server.key.display()))?;
    write_private(&server.cert, cert.pem().as_bytes())
        .with_context(|| format!("cannot write {}", server.cert.display()))?;
    Ok(LocalTls {
        ca: ca_path,
        server,
    })
}
