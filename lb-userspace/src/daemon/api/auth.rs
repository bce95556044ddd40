//! Who a request is, whether it may do what it asks, and the audit record
//! of every change it attempts. One middleware in front of every route:
//! handlers see the [`Principal`] as an extension and never check roles.

use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
    time::SystemTime,
};

use axum::{
    Json,
    body::Body,
    extract::{ConnectInfo, Request, State},
    http::{Method, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};

use super::{ApiError, Shared};
use crate::{
    core::{
        access::{Need, Principal, Role, Tokens, need},
        tables::Tables,
    },
    daemon::audit::Record,
};

/// How requests on one listener are authenticated.
#[derive(Clone)]
pub enum Auth {
    /// The Unix socket (0600): the peer's credentials, admin.
    Local,
    /// The TCP listener: a bearer token.
    Tokens(Arc<TokenSource>),
}

/// The tokens, re-read from their file when it changes.
pub struct TokenSource {
    file: Option<PathBuf>,
    /// The file's modification time and what it held then.
    cached: Mutex<(Option<SystemTime>, Tokens)>,
}

impl TokenSource {
    /// Fixed tokens (`api.token_file`, tests).
    pub fn fixed(tokens: Tokens) -> Self {
        Self {
            file: None,
            cached: Mutex::new((None, tokens)),
        }
    }

    /// The tokens of `file`, checked against the configured tenants.
    pub fn from_file(
        file: PathBuf,
        tenants: &std::collections::BTreeSet<String>,
    ) -> Result<Self, String> {
        let (mtime, tokens) = read_tokens(&file, tenants)?;
        Ok(Self {
            file: Some(file),
            cached: Mutex::new((mtime, tokens)),
        })
    }

    /// The current tokens: re-read if the file changed; a file that no
    /// longer reads or validates keeps the last good tokens (and says so).
    fn current<T: Tables + Send + 'static>(&self, s: &Shared<T>) -> Tokens {
        let mut cached = self.cached.lock().expect("not poisoned");
        if let Some(file) = &self.file {
            let mtime = std::fs::metadata(file).and_then(|m| m.modified()).ok();
            if mtime != cached.0 {
                let tenants = s.balancer().config().tenants.keys().cloned().collect();
                match read_tokens(file, &tenants) {
                    Ok(next) => {
                        tracing::info!(file = %file.display(), "API tokens reloaded");
                        *cached = next;
                    }
                    Err(e) => {
                        tracing::warn!(file = %file.display(), error = %e, "API tokens file rejected; keeping the previous tokens");
                        cached.0 = mtime;
                    }
                }
            }
        }
        cached.1.clone()
    }
}

fn read_tokens(
    file: &PathBuf,
    tenants: &std::collections::BTreeSet<String>,
) -> Result<(Option<SystemTime>, Tokens), String> {
    let mtime = std::fs::metadata(file).and_then(|m| m.modified()).ok();
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("api.tokens_file {}: {e}", file.display()))?;
    let tokens = Tokens::parse(&text, tenants).map_err(|errors| {
        let msgs: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        format!("api.tokens_file {}: {}", file.display(), msgs.join("; "))
    })?;
    Ok((mtime, tokens))
}

/// The Unix socket peer, as the listener saw it.
#[derive(Clone, Copy, Debug)]
pub struct PeerCred {
    pub uid: u32,
    pub pid: Option<i32>,
}

/// The TCP peer's address.
#[derive(Clone, Copy, Debug)]
pub struct PeerAddr(pub std::net::SocketAddr);

fn refuse(status: StatusCode, message: String) -> ApiError {
    ApiError {
        status,
        message,
        fields: vec![],
    }
}

/// The middleware: authenticate, authorise, run, audit.
pub async fn guard<T: Tables + Send + 'static>(
    State((shared, auth)): State<(Arc<Shared<T>>, Auth)>,
    mut req: Request,
    next: Next,
) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let action = format!("{method} {path}");
    let writes = method != Method::GET && method != Method::HEAD;
    let from = req
        .extensions()
        .get::<ConnectInfo<PeerAddr>>()
        .map(|c| c.0.0.to_string());
    let principal = match &auth {
        Auth::Local => {
            let peer = req.extensions().get::<ConnectInfo<PeerCred>>().map(|c| c.0);
            Some(match peer {
                Some(p) => Principal::local(p.uid, p.pid),
                // In-process callers (tests) have no socket.
                None => Principal {
                    who: "local".into(),
                    role: Role::Admin,
                    tenant: None,
                },
            })
        }
        Auth::Tokens(src) => {
            let header = req
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok());
            src.current(&shared).principal(header)
        }
    };
    let audit = |p: Option<&Principal>, result: Result<String, String>| {
        if !writes {
            return;
        }
        let mut r = Record::new(
            p.map_or("anonymous".into(), |p| p.who.clone()),
            "api",
            &action,
        );
        r.from = from.clone();
        r.tenant = p.and_then(|p| p.tenant.clone());
        shared.audit(&match result {
            Ok(d) => r.accepted(d),
            Err(e) => r.rejected(e),
        });
    };
    let Some(principal) = principal else {
        let e = "missing or wrong bearer token".to_string();
        audit(None, Err(e.clone()));
        return refuse(StatusCode::UNAUTHORIZED, e).into_response();
    };
    if let Err(e) = authorise(&shared, &principal, &need(method.as_str(), &path)) {
        audit(Some(&principal), Err(e.message.clone()));
        return e.into_response();
    }
    req.extensions_mut().insert(principal.clone());
    let resp = next.run(req).await;
    if !writes {
        return resp;
    }
    // The answer's error text, for the audit record of a refusal.
    let (parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    if parts.status.is_success() {
        audit(Some(&principal), Ok(String::new()));
    } else {
        let message = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
            .unwrap_or_else(|| parts.status.to_string());
        audit(Some(&principal), Err(message));
    }
    Response::from_parts(parts, Body::from(bytes))
}

/// Whether `p` may do what `n` needs; refusals as they are answered. A
/// VIP another tenant owns is not found, so names do not leak.
fn authorise<T: Tables + Send + 'static>(
    s: &Shared<T>,
    p: &Principal,
    n: &Need,
) -> Result<(), ApiError> {
    if let Some(tenant) = &p.tenant {
        if n.host_wide {
            return Err(refuse(
                StatusCode::FORBIDDEN,
                format!(
                    "{} is scoped to tenant {tenant:?}: this route acts on the whole host",
                    p.who
                ),
            ));
        }
        if let Some(vip) = &n.vip {
            let owned = s
                .balancer()
                .config()
                .vips
                .iter()
                .any(|v| &v.name == vip && &v.tenant == tenant);
            if !owned {
                return Err(super::no_vip(vip));
            }
        }
    }
    if p.role < n.role {
        return Err(refuse(
            StatusCode::FORBIDDEN,
            format!(
                "{} has role {}; this needs {}",
                p.who,
                p.role.name(),
                n.role.name()
            ),
        ));
    }
    Ok(())
}

/// Who the API takes the caller for (token id or peer credentials), its
/// role and tenant.
#[utoipa::path(get, path = "/v1/whoami", tag = "agent", responses((status = 200, description = "The caller.", body = super::wire::WhoAmI)))]
pub async fn whoami(axum::Extension(p): axum::Extension<Principal>) -> Json<super::wire::WhoAmI> {
    Json(super::wire::WhoAmI {
        who: p.who,
        role: p.role,
        tenant: p.tenant,
    })
}
