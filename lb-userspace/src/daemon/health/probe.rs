//! The probes: TCP connect, HTTP(S) GET with an expected status, UDP echo,
//! DNS query, each bounded by the check's timeout.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpStream, UdpSocket},
    time::timeout,
};

use rustls::DigitallySignedStruct;

use super::Target;
use crate::core::config::Probe;

/// A failed probe: why, and whether the backend answered at all (a
/// connection, a datagram back) before failing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub reason: String,
    pub reachable: bool,
}

/// Runs one probe.
pub async fn probe(t: &Target) -> Result<(), Failure> {
    let addr = SocketAddr::new(t.backend, t.port);
    let deadline = t.check.timeout;
    let answered = AtomicBool::new(false);
    let connect = || async {
        let s = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("tcp connect {addr}: {e}"))?;
        answered.store(true, Ordering::Relaxed);
        Ok::<_, String>(s)
    };
    let run = async {
        match &t.check.probe {
            Probe::None => Ok(()),
            Probe::Tcp => connect().await.map(|_| ()),
            Probe::Http {
                path,
                expect_status,
                host,
            } => {
                http_get(
                    connect().await?,
                    addr,
                    path,
                    *expect_status,
                    host.as_deref(),
                )
                .await
            }
            Probe::Https {
                path,
                expect_status,
                host,
            } => {
                let name = host.clone().unwrap_or_else(|| t.backend.to_string());
                let server_name = rustls::pki_types::ServerName::try_from(name.clone())
                    .map_err(|e| format!("tls name {name}: {e}"))?;
                let tls = tls_connector()
                    .connect(server_name, connect().await?)
                    .await
                    .map_err(|e| format!("tls handshake {addr}: {e}"))?;
                http_get(tls, addr, path, *expect_status, host.as_deref()).await
            }
            Probe::Udp { payload } => {
                udp_exchange(addr, payload.as_bytes(), &answered, |_| Ok(())).await
            }
            Probe::Dns { query } => {
                let id = fastrand::u16(..);
                let msg = dns_query(id, query);
                udp_exchange(addr, &msg, &answered, |resp| dns_check(id, resp)).await
            }
        }
    };
    let result = match timeout(deadline, run).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer from {addr} within {deadline:?}")),
    };
    result.map_err(|reason| Failure {
        reason,
        reachable: answered.load(Ordering::Relaxed),
    })
}

async fn http_get<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    mut s: S,
    addr: SocketAddr,
    path: &str,
    expect: u16,
    host: Option<&str>,
) -> Result<(), String> {
    let host = host.map(str::to_string).unwrap_or_else(|| addr.to_string());
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: lbd-health\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| format!("http write {addr}: {e}"))?;
    let mut buf = vec![0u8; 512];
    let mut got = 0;
    // Only the status line matters.
    while !buf[..got].windows(2).any(|w| w == b"\r\n") && got < buf.len() {
        let n = s
            .read(&mut buf[got..])
            .await
            .map_err(|e| format!("http read {addr}: {e}"))?;
        if n == 0 {
            break;
        }
        got += n;
    }
    let line = String::from_utf8_lossy(&buf[..got]);
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| {
            format!(
                "http {addr}: no status line in {:?}",
                line.lines().next().unwrap_or("")
            )
        })?;
    if status == expect {
        Ok(())
    } else {
        Err(format!("http {addr}{path}: status {status}, want {expect}"))
    }
}

async fn udp_exchange(
    addr: SocketAddr,
    msg: &[u8],
    answered: &AtomicBool,
    check: impl Fn(&[u8]) -> Result<(), String>,
) -> Result<(), String> {
    let bind: SocketAddr = if addr.is_ipv4() {
        "0.0.0.0:0".parse().unwrap()
    } else {
        "[::]:0".parse().unwrap()
    };
    let sock = UdpSocket::bind(bind)
        .await
        .map_err(|e| format!("udp bind: {e}"))?;
    sock.connect(addr)
        .await
        .map_err(|e| format!("udp connect {addr}: {e}"))?;
    sock.send(msg)
        .await
        .map_err(|e| format!("udp send {addr}: {e}"))?;
    let mut buf = vec![0u8; 1500];
    let n = sock
        .recv(&mut buf)
        .await
        .map_err(|e| format!("udp receive from {addr}: {e}"))?;
    answered.store(true, Ordering::Relaxed);
    check(&buf[..n])
}

/// A DNS query for `name` (type A, recursion desired).
pub fn dns_query(id: u16, name: &str) -> Vec<u8> {
    let mut m = Vec::with_capacity(32 + name.len());
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name
        .trim_end_matches('.')
        .split('.')
        .filter(|l| !l.is_empty())
    {
        m.push(label.len().min(63) as u8);
        m.extend_from_slice(&label.as_bytes()[..label.len().min(63)]);
    }
    m.push(0);
    m.extend_from_slice(&[0, 1, 0, 1]);
    m
}

/// A response to our query that is not a server failure or refusal.
pub fn dns_check(id: u16, resp: &[u8]) -> Result<(), String> {
    if resp.len() < 12 {
        return Err(format!("dns: {} byte reply", resp.len()));
    }
    if u16::from_be_bytes([resp[0], resp[1]]) != id || resp[2] & 0x80 == 0 {
        return Err("dns: reply does not answer our query".into());
    }
    match resp[3] & 0x0f {
        2 => Err("dns: SERVFAIL".into()),
        5 => Err("dns: REFUSED".into()),
        _ => Ok(()),
    }
}

/// TLS for HTTPS checks. Backends are addressed by IP and often carry
/// internal certificates, so the check verifies that TLS works and the
/// HTTP status, not the certificate chain.
fn tls_connector() -> tokio_rustls::TlsConnector {
    static CONFIG: std::sync::OnceLock<Arc<rustls::ClientConfig>> = std::sync::OnceLock::new();
    let cfg = CONFIG.get_or_init(|| {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default versions")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
            .with_no_client_auth();
        Arc::new(cfg)
    });
    tokio_rustls::TlsConnector::from(cfg.clone())
}

#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

type Cert<'a> = rustls::pki_types::CertificateDer<'a>;
type Signed = Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error>;

impl rustls::client::danger::ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &Cert<'_>,
        _: &[Cert<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    // The signatures are still checked: TLS works with the key it shows.
    fn verify_tls12_signature(&self, m: &[u8], c: &Cert<'_>, d: &DigitallySignedStruct) -> Signed {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(&self, m: &[u8], c: &Cert<'_>, d: &DigitallySignedStruct) -> Signed {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
