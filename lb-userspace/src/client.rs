//! A typed client of the agent's API for `lbctl`: HTTP/1.1 over the Unix
//! socket, or over TCP with the bearer token; answers read into the same
//! types the server writes (`daemon::api::wire`).

use std::{net::IpAddr, path::PathBuf};

use hyper::{Method, StatusCode};
use serde::{Serialize, de::DeserializeOwned};

use crate::{
    core::{balancer::VipState, events::Event},
    daemon::api::wire::{
        AgentState, Drill, DrillRequest, DrillStarted, DrillStopped, ErrorBody, Health,
        HoldRequest, NodeState, WeightRequest, WhoAmI,
    },
    http::{self, Call, HttpError, Target},
};

/// Where the agent listens.
#[derive(Clone, Debug)]
pub enum Endpoint {
    Unix(PathBuf),
    Tcp {
        addr: String,
        token: String,
        /// HTTPS with this client configuration; `None`: plain HTTP.
        tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    },
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Unix(p) => write!(f, "{}", p.display()),
            Endpoint::Tcp {
                addr, tls: None, ..
            } => write!(f, "http://{addr}"),
            Endpoint::Tcp { addr, .. } => write!(f, "https://{addr}"),
        }
    }
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

/// The agent behind an endpoint.
pub struct Agent {
    endpoint: Endpoint,
}

/// `admin` verbs on one backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdminVerb {
    Drain,
    Undrain,
    Maintenance,
}

impl AdminVerb {
    pub fn path(self) -> &'static str {
        match self {
            AdminVerb::Drain => "drain",
            AdminVerb::Undrain => "undrain",
            AdminVerb::Maintenance => "maintenance",
        }
    }
}

impl Agent {
    pub fn new(endpoint: Endpoint) -> Self {
        Self { endpoint }
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<T, ClientError> {
        let (target, auth) = match &self.endpoint {
            Endpoint::Unix(p) => (Target::Unix(p.clone()), None),
            Endpoint::Tcp { addr, token, tls } => {
                let target = match tls {
                    None => Target::Tcp(addr.clone()),
                    Some(tls) => Target::Https {
                        addr: addr.clone(),
                        tls: tls.clone(),
                    },
                };
                (target, Some(format!("Bearer {token}")))
            }
        };
        let headers: Vec<(&str, &str)> =
            auth.iter().map(|a| ("authorization", a.as_str())).collect();
        let mut call = Call::new(method, path);
        call.headers = &headers;
        call.body = body
            .map(serde_json::to_vec)
            .transpose()
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        http::json(&target, call).await.map_err(|e| match e {
            e @ (HttpError::Unreachable(_) | HttpError::Timeout(_)) => ClientError::Unreachable {
                endpoint: self.endpoint.to_string(),
                message: e.to_string(),
            },
            HttpError::Status { status, body } => ClientError::Refused {
                status,
                message: serde_json::from_slice::<ErrorBody>(&body)
                    .map(|b| b.error)
                    .unwrap_or_else(|_| "request refused".into()),
            },
            other => ClientError::Protocol(other.to_string()),
        })
    }

    pub async fn health(&self) -> Result<Health, ClientError> {
        self.call(Method::GET, "/v1/health", None::<&()>).await
    }

    pub async fn state(&self) -> Result<AgentState, ClientError> {
        self.call(Method::GET, "/v1/state", None::<&()>).await
    }

    pub async fn events(&self) -> Result<Vec<Event>, ClientError> {
        self.call(Method::GET, "/v1/events", None::<&()>).await
    }

    pub async fn whoami(&self) -> Result<WhoAmI, ClientError> {
        self.call(Method::GET, "/v1/whoami", None::<&()>).await
    }

    /// Drains, undrains or puts a backend in maintenance.
    pub async fn admin(
        &self,
        vip: &str,
        backend: IpAddr,
        verb: AdminVerb,
    ) -> Result<VipState, ClientError> {
        let path = format!("/v1/vips/{vip}/backends/{backend}/{}", verb.path());
        self.call(Method::POST, &path, None::<&()>).await
    }

    pub async fn weight(
        &self,
        vip: &str,
        backend: IpAddr,
        weight: i64,
    ) -> Result<VipState, ClientError> {
        let path = format!("/v1/vips/{vip}/backends/{backend}/weight");
        self.call(Method::PUT, &path, Some(&WeightRequest { weight }))
            .await
    }

    pub async fn drill(&self) -> Result<Drill, ClientError> {
        self.call(Method::GET, "/v1/drill", None::<&()>).await
    }

    pub async fn start_drill(&self, req: &DrillRequest) -> Result<DrillStarted, ClientError> {
        self.call(Method::POST, "/v1/drill", Some(req)).await
    }

    pub async fn stop_drill(&self) -> Result<DrillStopped, ClientError> {
        self.call(Method::DELETE, "/v1/drill", None::<&()>).await
    }

    pub async fn node(&self) -> Result<NodeState, ClientError> {
        self.call(Method::GET, "/v1/node", None::<&()>).await
    }

    /// `drained`: withdraw every VIP (true) or announce again (false).
    pub async fn drain_node(&self, drained: bool) -> Result<NodeState, ClientError> {
        let path = if drained {
            "/v1/node/drain"
        } else {
            "/v1/node/undrain"
        };
        self.call(Method::POST, path, None::<&()>).await
    }

    /// Keeps the routes through an exit in the next `secs` (`None`: end it).
    pub async fn hold(&self, secs: Option<f64>) -> Result<NodeState, ClientError> {
        match secs {
            Some(secs) => {
                self.call(Method::PUT, "/v1/node/hold", Some(&HoldRequest { secs }))
                    .await
            }
            None => {
                self.call(Method::DELETE, "/v1/node/hold", None::<&()>)
                    .await
            }
        }
    }
}
