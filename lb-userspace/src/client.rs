//! A small client of the agent's API for `lbctl`: HTTP/1.1 over the Unix
//! socket, or over TCP with the bearer token.

use std::path::PathBuf;

use http_body_util::{BodyExt as _, Full};
use hyper::{Method, Request, StatusCode, body::Bytes};
use hyper_util::rt::TokioIo;
use serde_json::Value;

/// Where the agent listens.
#[derive(Clone, Debug)]
pub enum Endpoint {
    Unix(PathBuf),
    Tcp { addr: String, token: String },
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "cannot reach lbd at {endpoint}: {message} (is lbd running? is this the right --socket/--api?)"
    )]
    Unreachable { endpoint: String, message: String },
    #[error("{message}")]
    Refused { status: StatusCode, message: String },
    #[error("bad answer from lbd: {0}")]
    Protocol(String),
}

impl ClientError {
    /// The HTTP status the agent answered with, if it answered.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Self::Refused { status, .. } => Some(*status),
            _ => None,
        }
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Unix(p) => write!(f, "{}", p.display()),
            Endpoint::Tcp { addr, .. } => write!(f, "http://{addr}"),
        }
    }
}

/// One HTTP/1.1 exchange on a freshly connected stream; errors as text.
async fn send<S>(
    stream: std::io::Result<S>,
    req: Request<Full<Bytes>>,
) -> Result<hyper::Response<hyper::body::Incoming>, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let stream = stream.map_err(|e| e.to_string())?;
    let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    tx.send_request(req).await.map_err(|e| e.to_string())
}

pub async fn request(
    ep: &Endpoint,
    method: Method,
    path: &str,
    body: Option<String>,
) -> Result<Value, ClientError> {
    let unreachable = |m: String| ClientError::Unreachable {
        endpoint: ep.to_string(),
        message: m,
    };
    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "lbd");
    if let Endpoint::Tcp { token, .. } = ep {
        builder = builder.header("authorization", format!("Bearer {token}"));
    }
    if body.is_some() {
        builder = builder.header("content-type", "application/json");
    }
    let req = builder
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .map_err(|e| ClientError::Protocol(e.to_string()))?;
    let resp = match ep {
        Endpoint::Unix(p) => send(tokio::net::UnixStream::connect(p).await, req).await,
        Endpoint::Tcp { addr, .. } => send(tokio::net::TcpStream::connect(addr).await, req).await,
    }
    .map_err(unreachable)?;
    let status = resp.status();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| ClientError::Protocol(e.to_string()))?
        .to_bytes();
    let v: Value = serde_json::from_slice(&bytes)
        .map_err(|e| ClientError::Protocol(format!("{e}: {}", String::from_utf8_lossy(&bytes))))?;
    if !status.is_success() {
        let message = v["error"].as_str().unwrap_or("request refused").to_string();
        return Err(ClientError::Refused { status, message });
    }
    Ok(v)
}
