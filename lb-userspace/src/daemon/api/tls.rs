//! HTTPS for the TCP API: certificates from PEM files, re-read when a
//! file changes (checked at each new connection, so a renewed certificate
//! is served without a restart), and optionally client certificates
//! signed by a configured CA (mTLS). Handshakes run off the accept loop,
//! so a slow or silent client holds up no one.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

use axum::extract::connect_info::Connected;
use axum::serve::IncomingStream;
use rustls::{
    RootCertStore, ServerConfig,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject as _},
    server::WebPkiClientVerifier,
};
use tokio::{net::TcpListener, sync::mpsc};
use tokio_rustls::{TlsAcceptor, server::TlsStream};

use super::auth::{PeerAddr, PeerCred};
use crate::core::config::ApiTls;

/// A handshake that has not finished by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The server configuration, rebuilt when one of its files changes.
pub struct TlsSource {
    files: ApiTls,
    cached: Mutex<(Vec<Option<SystemTime>>, Arc<ServerConfig>)>,
}

impl TlsSource {
    /// Reads the files now: a start with unreadable certificates fails.
    pub fn new(files: ApiTls) -> Result<Self, String> {
        let stamp = stamps(&files);
        let cfg = build(&files)?;
        Ok(Self {
            files,
            cached: Mutex::new((stamp, cfg)),
        })
    }

    /// The configuration for the next connection. A change that does not
    /// load keeps serving the last good certificate (and says why).
    pub fn current(&self) -> Arc<ServerConfig> {
        let mut c = self.cached.lock().expect("not poisoned");
        let now = stamps(&self.files);
        if now != c.0 {
            match build(&self.files) {
                Ok(cfg) => {
                    tracing::info!(cert = %self.files.cert_file.display(), "API certificate reloaded");
                    c.1 = cfg;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "API certificate files changed but do not load; serving the previous certificate");
                }
            }
            c.0 = now;
        }
        c.1.clone()
    }
}

fn stamps(f: &ApiTls) -> Vec<Option<SystemTime>> {
    let mut files: Vec<&Path> = vec![&f.cert_file, &f.key_file];
    files.extend(f.client_ca_file.as_deref());
    files
        .iter()
        .map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .collect()
}

fn certs(path: &PathBuf, what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{what} {}: {e}", path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{what} {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{what} {}: no certificate in it", path.display()));
    }
    Ok(certs)
}

fn build(f: &ApiTls) -> Result<Arc<ServerConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = certs(&f.cert_file, "api.tls.cert_file")?;
    let key = PrivateKeyDer::from_pem_file(&f.key_file)
        .map_err(|e| format!("api.tls.key_file {}: {e}", f.key_file.display()))?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match &f.client_ca_file {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for c in certs(ca, "api.tls.client_ca_file")? {
                roots
                    .add(c)
                    .map_err(|e| format!("api.tls.client_ca_file {}: {e}", ca.display()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                .build()
                .map_err(|e| format!("api.tls.client_ca_file {}: {e}", ca.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut cfg = builder
        .with_single_cert(chain, key)
        .map_err(|e| format!("api.tls: certificate and key do not go together: {e}"))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// Accepted TLS connections, handshakes done.
pub struct TlsListener {
    local: SocketAddr,
    ready: mpsc::Receiver<(TlsStream<tokio::net::TcpStream>, SocketAddr)>,
}

impl TlsListener {
    pub fn new(tcp: TcpListener, source: Arc<TlsSource>) -> std::io::Result<Self> {
        let local = tcp.local_addr()?;
        let (tx, ready) = mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let (stream, peer) = match tcp.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        // Out of descriptors and the like: back off, go on.
                        tracing::warn!(error = %e, "API accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                if tx.is_closed() {
                    return;
                }
                let acceptor = TlsAcceptor::from(source.current());
                let tx = tx.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => {
                            tracing::info!(%peer, error = %e, "API TLS handshake refused")
                        }
                        Err(_) => tracing::info!(%peer, "API TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(Self { local, ready })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(c) => c,
            // The accept task ended: nothing more will come.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }
}

impl Connected<IncomingStream<'_, TlsListener>> for PeerAddr {
    fn connect_info(s: IncomingStream<'_, TlsListener>) -> Self {
        PeerAddr(*s.remote_addr())
    }
}

impl Connected<IncomingStream<'_, TcpListener>> for PeerAddr {
    fn connect_info(s: IncomingStream<'_, TcpListener>) -> Self {
        PeerAddr(*s.remote_addr())
    }
}

impl Connected<IncomingStream<'_, tokio::net::UnixListener>> for PeerCred {
    fn connect_info(s: IncomingStream<'_, tokio::net::UnixListener>) -> Self {
        match s.io().peer_cred() {
            Ok(c) => PeerCred {
                uid: c.uid(),
                pid: c.pid(),
            },
            // Unknown peer on a 0600 socket: the agent's own user.
            Err(_) => PeerCred {
                uid: unsafe_geteuid(),
                pid: None,
            },
        }
    }
}

fn unsafe_geteuid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}
