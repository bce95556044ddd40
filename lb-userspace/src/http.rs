//! One small HTTP/1.1 client for JSON, over TCP or a Unix socket, with a
//! fresh connection per request: `lbctl` talks to the agent's API with it,
//! and the agent to etcd's JSON gateway. Streamed answers (etcd's watch)
//! read the body themselves from [`send`].

use std::{path::PathBuf, time::Duration};

use http_body_util::{BodyExt as _, Full};
use hyper::{Method, Request, Response, StatusCode, body::Bytes, body::Incoming};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;

/// Where the server listens.
#[derive(Clone, Debug)]
pub enum Target {
    Unix(PathBuf),
    /// `host:port`.
    Tcp(String),
    /// `host:port` over TLS, verified by `tls` (its roots, and a client
    /// certificate for mTLS if it has one).
    Https {
        addr: String,
        tls: std::sync::Arc<rustls::ClientConfig>,
    },
}

/// A TLS client that trusts the CA certificates in `ca_file` and, given
/// both, presents `cert_file`/`key_file` (PEM) as its own.
pub fn client_tls(
    ca_file: &std::path::Path,
    client: Option<(&std::path::Path, &std::path::Path)>,
) -> Result<rustls::ClientConfig, String> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject as _};
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in
        CertificateDer::pem_file_iter(ca_file).map_err(|e| format!("{}: {e}", ca_file.display()))?
    {
        let c = c.map_err(|e| format!("{}: {e}", ca_file.display()))?;
        roots
            .add(c)
            .map_err(|e| format!("{}: {e}", ca_file.display()))?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    match client {
        None => Ok(builder.with_no_client_auth()),
        Some((cert, key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .map_err(|e| format!("{}: {e}", cert.display()))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("{}: {e}", cert.display()))?;
            let key =
                PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("client certificate: {e}"))
        }
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Unix(p) => write!(f, "{}", p.display()),
            Target::Tcp(a) => write!(f, "http://{a}"),
            Target::Https { addr, .. } => write!(f, "https://{addr}"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// No answer: connecting, the handshake or sending failed.
    #[error("{0}")]
    Unreachable(String),
    #[error("{0}")]
    Read(String),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// An answer other than 2xx; `body` as received.
    #[error("{status}: {}", String::from_utf8_lossy(.body))]
    Status { status: StatusCode, body: Bytes },
    #[error("not the JSON expected: {error}: {}", String::from_utf8_lossy(.body))]
    Json { error: String, body: Bytes },
}

/// One request.
pub struct Call<'a> {
    pub method: Method,
    pub path: &'a str,
    /// Extra headers (`host` and `content-type` are set here).
    pub headers: &'a [(&'a str, &'a str)],
    pub body: Option<Vec<u8>>,
    /// Bound on connecting and on receiving the answer's head.
    pub timeout: Duration,
}

impl<'a> Call<'a> {
    pub fn new(method: Method, path: &'a str) -> Self {
        Self {
            method,
            path,
            headers: &[],
            body: None,
            timeout: Duration::from_secs(10),
        }
    }
}

async fn exchange<S>(stream: S, req: Request<Full<Bytes>>) -> Result<Response<Incoming>, HttpError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let unreachable = |e: hyper::Error| HttpError::Unreachable(e.to_string());
    let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(unreachable)?;
    tokio::spawn(conn);
    tx.send_request(req).await.map_err(unreachable)
}

/// Sends `call` on a fresh connection; the body of the answer is left to
/// the caller (it may be a stream).
pub async fn send(target: &Target, call: Call<'_>) -> Result<Response<Incoming>, HttpError> {
    let host = match target {
        Target::Unix(_) => "localhost",
        Target::Tcp(a) | Target::Https { addr: a, .. } => a.as_str(),
    };
    let mut builder = Request::builder()
        .method(call.method)
        .uri(call.path)
        .header("host", host);
    if call.body.is_some() {
        builder = builder.header("content-type", "application/json");
    }
    for (k, v) in call.headers {
        builder = builder.header(*k, *v);
    }
    let req = builder
        .body(Full::new(Bytes::from(call.body.unwrap_or_default())))
        .map_err(|e| HttpError::Unreachable(e.to_string()))?;
    let io = |e: std::io::Error| HttpError::Unreachable(e.to_string());
    let answer = async {
        match target {
            Target::Unix(p) => {
                exchange(tokio::net::UnixStream::connect(p).await.map_err(io)?, req).await
            }
            Target::Tcp(a) => {
                exchange(tokio::net::TcpStream::connect(a).await.map_err(io)?, req).await
            }
            Target::Https { addr, tls } => {
                let tcp = tokio::net::TcpStream::connect(addr).await.map_err(io)?;
                let host = addr.rsplit_once(':').map_or(addr.as_str(), |(h, _)| h);
                let host = host.trim_start_matches('[').trim_end_matches(']');
                let name = rustls::pki_types::ServerName::try_from(host.to_string())
                    .map_err(|e| HttpError::Unreachable(format!("{host}: {e}")))?;
                let stream = tokio_rustls::TlsConnector::from(tls.clone())
                    .connect(name, tcp)
                    .await
                    .map_err(|e| HttpError::Unreachable(format!("TLS: {e}")))?;
                exchange(stream, req).await
            }
        }
    };
    tokio::time::timeout(call.timeout, answer)
        .await
        .map_err(|_| HttpError::Timeout(call.timeout))?
}

/// The whole body of an answer, within `within`.
pub async fn body(resp: Response<Incoming>, within: Duration) -> Result<Bytes, HttpError> {
    tokio::time::timeout(within, resp.into_body().collect())
        .await
        .map_err(|_| HttpError::Timeout(within))?
        .map(|b| b.to_bytes())
        .map_err(|e| HttpError::Read(e.to_string()))
}

/// Sends `call` and reads a 2xx answer's JSON body as `T`.
pub async fn json<T: DeserializeOwned>(target: &Target, call: Call<'_>) -> Result<T, HttpError> {
    let within = call.timeout;
    let resp = send(target, call).await?;
    let status = resp.status();
    let bytes = body(resp, within).await?;
    if !status.is_success() {
        return Err(HttpError::Status {
            status,
            body: bytes,
        });
    }
    serde_json::from_slice(&bytes).map_err(|e| HttpError::Json {
        error: e.to_string(),
        body: bytes,
    })
}
