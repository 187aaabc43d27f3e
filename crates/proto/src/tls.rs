//! Optional TLS for every taskraft port (rustls with the ring provider).
//!
//! A node serves TLS with its certificate and key, and checks the servers it
//! dials (peers, push workers) against the cluster's CA; a client only needs
//! the CA. Certificates must name the address they are dialled at (an IP
//! SAN such as 127.0.0.1). TLS protects the traffic; the cluster token, sent
//! inside it, says who may talk (see [`crate::auth`]).

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// The TLS side of a process: how it dials, and (for servers) how it accepts.
#[derive(Clone)]
pub struct Tls {
    connector: TlsConnector,
    acceptor: Option<TlsAcceptor>,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(ca: &Path) -> Result<rustls::RootCertStore, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).map_err(|e| format!("{}: {e}", ca.display()))? {
        let cert = cert.map_err(|e| format!("{}: {e}", ca.display()))?;
        roots.add(cert).map_err(|e| format!("{}: {e}", ca.display()))?;
    }
    if roots.is_empty() {
        return Err(format!("{}: no certificate found", ca.display()));
    }
    Ok(roots)
}

impl Tls {
    /// A client's TLS: trusts the servers whose certificates `ca` signed.
    pub fn client(ca: &Path) -> Result<Tls, String> {
        let config = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots(ca)?)
            .with_no_client_auth();
        Ok(Tls { connector: TlsConnector::from(Arc::new(config)), acceptor: None })
    }

    /// A server's TLS: presents `cert` (with `key`) and trusts what `ca` signed.
    pub fn server(cert: &Path, key: &Path, ca: &Path) -> Result<Tls, String> {
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
            .and_then(|certs| certs.collect())
            .map_err(|e| format!("{}: {e}", cert.display()))?;
        let private =
            PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
        let config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_no_client_auth()
            .with_single_cert(chain, private)
            .map_err(|e| format!("{}: {e}", cert.display()))?;
        let mut tls = Tls::client(ca)?;
        tls.acceptor = Some(TlsAcceptor::from(Arc::new(config)));
        Ok(tls)
    }

    /// How a server accepts TLS connections (None for a client).
    pub fn acceptor(&self) -> Option<&TlsAcceptor> {
        self.acceptor.as_ref()
    }

    pub(crate) fn connector(&self) -> &TlsConnector {
        &self.connector
    }
}

/// The name a server at `addr` must prove: its IP (or host name).
pub(crate) fn server_name(addr: &str) -> Result<ServerName<'static>, String> {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h).trim_matches(['[', ']']);
    match host.parse::<IpAddr>() {
        Ok(ip) => Ok(ServerName::IpAddress(ip.into())),
        Err(_) => ServerName::try_from(host.to_string()).map_err(|e| format!("{addr}: {e}")),
    }
}
