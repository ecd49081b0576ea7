//! TLS server settings built from a listener's certificates: TLS 1.2 and 1.3 only, ALPN `h2`
//! and `http/1.1`, and the certificate chosen by SNI. Built at startup and on every reload, so
//! certificate changes are picked up; connections keep the settings they started with.

use std::{collections::HashMap, path::Path, sync::Arc};

use rustls::{
    ServerConfig,
    crypto::ring,
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};

use crate::config::{CertKey, ConfigError};

/// Builds the TLS settings for one listener. `path` is the listener's YAML path, for errors.
pub(crate) fn server_config(
    certs: &[CertKey],
    path: &str,
) -> Result<Arc<ServerConfig>, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let mut resolver = SniResolver::default();
    for (i, ck) in certs.iter().enumerate() {
        let item_path = if certs.len() == 1 {
            format!("{path}.tls")
        } else {
            format!("{path}.tls[{i}]")
        };
        match load(ck) {
            Ok((key, names)) => resolver.add(key, &ck.names, names),
            Err(problems) => {
                errors.extend(problems.into_iter().map(|(field, message)| ConfigError {
                    location: None,
                    path: format!("{item_path}.{field}"),
                    message,
                }))
            }
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let fail = |e: rustls::Error| {
        vec![ConfigError {
            location: None,
            path: format!("{path}.tls"),
            message: format!("TLS settings rejected: {e}"),
        }]
    };
    let mut config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(fail)?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Problems with a certificate pair: `(field, message)`, field `cert` or `key`.
type Problems = Vec<(&'static str, String)>;

/// Reads one certificate chain and key; returns them with the DNS names in the certificate,
/// or every problem found as `(field, message)` with field `cert` or `key`.
fn load(ck: &CertKey) -> Result<(Arc<CertifiedKey>, Vec<String>), Problems> {
    let chain = read_chain(ck);
    let key = read_key(ck);
    let (chain, names, key) = match (chain, key) {
        (Ok((chain, names)), Ok(key)) => (chain, names, key),
        (chain, key) => {
            let problems = [
                chain.err().map(|m| ("cert", m)),
                key.err().map(|m| ("key", m)),
            ];
            return Err(problems.into_iter().flatten().collect());
        }
    };
    let certified = CertifiedKey::new(chain, key);
    certified.keys_match().map_err(|_| {
        vec![(
            "key",
            format!(
                "the key in `{}` does not belong to the certificate in `{}`",
                ck.key.display(),
                ck.cert.display()
            ),
        )]
    })?;
    Ok((Arc::new(certified), names))
}

fn read_chain(ck: &CertKey) -> Result<(Vec<CertificateDer<'static>>, Vec<String>), String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&ck.cert)
        .map_err(|e| file_error("certificate", &ck.cert, &e))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_error("certificate", &ck.cert, &e))?;
    let Some(leaf) = chain.first() else {
        return Err(format!(
            "no PEM certificate found in `{}`",
            ck.cert.display()
        ));
    };
    let names = dns_names(leaf).map_err(|e| {
        format!(
            "cannot parse the certificate in `{}`: {e}",
            ck.cert.display()
        )
    })?;
    Ok((chain, names))
}

fn read_key(ck: &CertKey) -> Result<Arc<dyn rustls::sign::SigningKey>, String> {
    // The PEM reader's errors can quote file contents, and this file is a secret: name it only.
    let key = PrivateKeyDer::from_pem_file(&ck.key).map_err(|e| match e {
        rustls_pki_types::pem::Error::Io(io) => {
            format!("cannot read key file `{}`: {io}", ck.key.display())
        }
        _ => format!(
            "no readable PEM private key (PKCS#8, PKCS#1 or SEC1) in `{}`",
            ck.key.display()
        ),
    })?;
    ring::sign::any_supported_type(&key).map_err(|_| {
        format!(
            "the private key in `{}` is not a supported ECDSA, RSA or Ed25519 key",
            ck.key.display()
        )
    })
}

fn file_error(what: &str, path: &Path, e: &rustls_pki_types::pem::Error) -> String {
    match e {
        rustls_pki_types::pem::Error::Io(io) => {
            format!("cannot read {what} file `{}`: {io}", path.display())
        }
        _ => format!("`{}` is not a readable PEM {what} file", path.display()),
    }
}

/// When the leaf certificate in the PEM file `path` expires (notAfter), unix seconds.
pub(crate) fn not_after(path: &Path) -> Option<i64> {
    let leaf = CertificateDer::pem_file_iter(path).ok()?.next()?.ok()?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
    Some(cert.validity().not_after.timestamp())
}

/// The DNS names of a certificate's subject alternative names, lowercase.
fn dns_names(der: &CertificateDer<'_>) -> Result<Vec<String>, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).map_err(|e| e.to_string())?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(d) = n {
                names.push(d.to_ascii_lowercase());
            }
        }
    }
    Ok(names)
}

/// Picks a certificate by the client's SNI name: exact names first, then `*.` wildcards (one
/// label deep), else the listener's first certificate.
#[derive(Debug, Default)]
struct SniResolver {
    exact: HashMap<String, Arc<CertifiedKey>>,
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Option<Arc<CertifiedKey>>,
}

impl SniResolver {
    fn add(&mut self, key: Arc<CertifiedKey>, configured: &[String], from_cert: Vec<String>) {
        let names = if configured.is_empty() {
            from_cert
        } else {
            configured.to_vec()
        };
        for name in names {
            let slot = match name.strip_prefix("*.") {
                Some(suffix) => self.wildcard.entry(suffix.to_string()),
                None => self.exact.entry(name),
            };
            // The first certificate listed for a name wins, as the config reads top to bottom.
            slot.or_insert_with(|| key.clone());
        }
        self.default.get_or_insert(key);
    }

    fn find(&self, sni: Option<&str>) -> Option<Arc<CertifiedKey>> {
        if let Some(name) = sni {
            let name = name.to_ascii_lowercase();
            if let Some(k) = self.exact.get(&name) {
                return Some(k.clone());
            }
            if let Some((_, parent)) = name.split_once('.')
                && let Some(k) = self.wildcard.get(parent)
            {
                return Some(k.clone());
            }
        }
        self.default.clone()
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.find(hello.server_name())
    }
}
