//! The agent's HTTP/JSON API: on a Unix socket (mode 0600) by default, and
//! optionally on TCP (HTTPS, optionally mTLS), where every request needs a
//! bearer token whose role and tenant decide what it may see and do (see
//! [`auth`]); every change attempted is in the audit log. Every
//! write is validated like the configuration file and applied atomically: a
//! refused request changes nothing and answers 4xx with the field path.
//! [`openapi`] generates `docs/openapi.yaml` from the handlers'
//! attributes; tests keep it, [`ROUTES`] and the router equal.
//! Bodies are the types of [`wire`].

pub mod auth;
pub mod openapi;
pub mod tls;
pub mod wire;

use std::{os::unix::fs::PermissionsExt as _, sync::Arc, time::Duration};

use auth::Auth;
use axum::{
    Extension, Json, Router,
    body::Bytes,
    extract::{Path, State},
    http::StatusCode,
    middleware,
    response::{IntoResponse, Response},
    routing::{get, post, put},
};
use wire::{
    AgentState, Drill, DrillRequest, DrillStarted, DrillStopped, ErrorBody, Health, HoldRequest,
    NodeState, WeightRequest,
};

use super::{
    SetupError,
    shared::{ChangeError, Shared},
};
use crate::core::{
    access::Principal,
    balancer::VipState,
    config::{self, AdminState, BackendInput, Config, FieldError},
    events::Event,
    sources::{FailSelector, Override},
    tables::Tables,
};

/// Every route, for the OpenAPI cross-check.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/v1/health"),
    ("GET", "/v1/whoami"),
    ("GET", "/v1/state"),
    ("GET", "/v1/events"),
    ("PUT", "/v1/vips/{vip}/backends"),
    ("DELETE", "/v1/vips/{vip}/backends"),
    ("POST", "/v1/vips/{vip}/backends/{backend}/drain"),
    ("POST", "/v1/vips/{vip}/backends/{backend}/undrain"),
    ("POST", "/v1/vips/{vip}/backends/{backend}/maintenance"),
    ("PUT", "/v1/vips/{vip}/backends/{backend}/weight"),
    ("GET", "/v1/drill"),
    ("POST", "/v1/drill"),
    ("DELETE", "/v1/drill"),
    ("GET", "/v1/node"),
    ("POST", "/v1/node/drain"),
    ("POST", "/v1/node/undrain"),
    ("PUT", "/v1/node/hold"),
    ("DELETE", "/v1/node/hold"),
];

/// An error answer: `{"error": ..., "errors": [{"path", "message"}]}`.
pub struct ApiError {
    status: StatusCode,
    message: String,
    fields: Vec<FieldError>,
}

impl ApiError {
    fn bad(fields: Vec<FieldError>) -> Self {
        let message = fields
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("; ");
        Self {
            status: StatusCode::BAD_REQUEST,
            message,
            fields,
        }
    }
    fn field(path: &str, message: impl Into<String>) -> Self {
        Self::bad(vec![FieldError {
            path: path.into(),
            message: message.into(),
        }])
    }
    fn not_found(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            message: message.into(),
            fields: vec![],
        }
    }
}

impl From<ChangeError> for ApiError {
    fn from(e: ChangeError) -> Self {
        match e {
            ChangeError::Invalid(fields) => Self::bad(fields),
            ChangeError::NotFound(m) => Self::not_found(m),
            ChangeError::Conflict(m) => Self {
                status: StatusCode::CONFLICT,
                message: m,
                fields: vec![],
            },
            ChangeError::Apply(e) => Self {
                status: StatusCode::CONFLICT,
                message: e.to_string(),
                fields: vec![],
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.message,
            errors: self.fields.iter().map(Into::into).collect(),
        };
        (self.status, Json(body)).into_response()
    }
}

type ApiResult<T> = Result<Json<T>, ApiError>;

pub fn router<T: Tables + Send + 'static>(shared: Arc<Shared<T>>, auth: Auth) -> Router {
    Router::new()
        .route("/v1/health", get(health::<T>))
        .route("/v1/whoami", get(auth::whoami))
        .route("/v1/state", get(state::<T>))
        .route("/v1/events", get(events::<T>))
        .route(
            "/v1/vips/{vip}/backends",
            put(replace_backends::<T>).delete(revert_backends::<T>),
        )
        .route("/v1/vips/{vip}/backends/{backend}/drain", post(drain::<T>))
        .route(
            "/v1/vips/{vip}/backends/{backend}/undrain",
            post(undrain::<T>),
        )
        .route(
            "/v1/vips/{vip}/backends/{backend}/maintenance",
            post(maintenance::<T>),
        )
        .route("/v1/vips/{vip}/backends/{backend}/weight", put(weight::<T>))
        .route(
            "/v1/drill",
            get(drill_get::<T>)
                .post(drill_start::<T>)
                .delete(drill_stop::<T>),
        )
        .route("/v1/node", get(node::<T>))
        .route("/v1/node/drain", post(node_drain::<T>))
        .route("/v1/node/undrain", post(node_undrain::<T>))
        .route("/v1/node/hold", put(hold::<T>).delete(hold_end::<T>))
        .fallback(|| async { ApiError::not_found("no such route (see docs/openapi.yaml)") })
        .layer(middleware::from_fn_with_state(
            (shared.clone(), auth),
            auth::guard::<T>,
        ))
        .with_state(shared)
}

/// VIPs, backends, health, policy state, table digests, drill, feed and
/// reload counts.
#[utoipa::path(get, path = "/v1/state", tag = "agent", responses((status = 200, description = "Current state.", body = AgentState)))]
async fn state<T: Tables + Send + 'static>(
    State(s): State<Arc<Shared<T>>>,
    Extension(p): Extension<Principal>,
) -> Json<AgentState> {
    let etcd = s.etcd_status.lock().expect("not poisoned").clone();
    // Its own statement: a guard in the struct expression would be held
    // while the other fields take their locks.
    let mut state = s.balancer().state();
    state.vips.retain(|v| p.sees(&v.tenant));
    Json(AgentState {
        state,
        drill: s.drill(),
        etcd,
        reloads: s.reloads(),
        node_control: node_state(&s),
    })
}

/// Liveness.
#[utoipa::path(get, path = "/v1/health", tag = "agent", responses((status = 200, description = "The agent answers.", body = Health)))]
async fn health<T: Tables + Send + 'static>(State(s): State<Arc<Shared<T>>>) -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        started_at: s.started_at,
        interfaces: s.attachments.clone(),
    })
}

/// Withdraw every VIP of this host from its routers and keep forwarding
/// (kept across restarts, until undrain).
#[utoipa::path(post, path = "/v1/node/drain", tag = "node", responses((status = 200, description = "The node state.", body = NodeState)))]
async fn node_drain<T: Tables + Send + 'static>(
    State(s): State<Arc<Shared<T>>>,
) -> Json<NodeState> {
    s.set_drained(true);
    Json(node_state(&s))
}

/// Announce again what should be announced.
#[utoipa::path(post, path = "/v1/node/undrain", tag = "node", responses((status = 200, description = "The node state.", body = NodeState)))]
async fn node_undrain<T: Tables + Send + 'static>(
    State(s): State<Arc<Shared<T>>>,
) -> Json<NodeState> {
    s.set_drained(false);
    Json(node_state(&s))
}

/// End a restart hold.
#[utoipa::path(delete, path = "/v1/node/hold", tag = "node", responses((status = 200, description = "The node state.", body = NodeState)))]
async fn hold_end<T: Tables + Send + 'static>(State(s): State<Arc<Shared<T>>>) -> Json<NodeState> {
    s.hold(None);
    Json(node_state(&s))
}

fn node_state<T: Tables + Send + 'static>(s: &Shared<T>) -> NodeState {
    let control = s.node.lock().expect("not poisoned").clone();
    NodeState {
        holding: control.holding(),
        control,
        announce: s.announce.lock().expect("not poisoned").clone(),
    }
}

/// This LB host's route control: drained, restart hold, and per VIP
/// address whether it is announced to the routers and why.
#[utoipa::path(get, path = "/v1/node", tag = "node", responses((status = 200, description = "The node state.", body = NodeState)))]
async fn node<T: Tables + Send + 'static>(State(s): State<Arc<Shared<T>>>) -> Json<NodeState> {
    Json(node_state(&s))
}

/// For the next `secs`, an agent exit keeps the routes (a restart or an
/// upgrade follows).
#[utoipa::path(put, path = "/v1/node/hold", tag = "node", request_body = HoldRequest, responses((status = 200, description = "The node state.", body = NodeState), (status = 400, description = "Refused; nothing changed.", body = ErrorBody)))]
async fn hold<T: Tables + Send + 'static>(
    State(s): State<Arc<Shared<T>>>,
    body: Bytes,
) -> ApiResult<NodeState> {
    let h: HoldRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::field("", format!("expected {{\"secs\": N}}: {e}")))?;
    if !(1.0..=3600.0).contains(&h.secs) {
        return Err(ApiError::field(
            "secs",
            format!("must be between 1 and 3600, got {}", h.secs),
        ));
    }
    s.hold(Some(Duration::from_secs_f64(h.secs)));
    Ok(Json(node_state(&s)))
}

/// The most recent decision events (backend up/down, tier switches,
/// fail-over, panic...), oldest first.
#[utoipa::path(get, path = "/v1/events", tag = "agent", responses((status = 200, description = "Oldest first.", body = Vec<Event>)))]
async fn events<T: Tables + Send + 'static>(
    State(s): State<Arc<Shared<T>>>,
    Extension(p): Extension<Principal>,
) -> Json<Vec<Event>> {
    let b = s.balancer();
    if p.tenant.is_none() {
        return Json(b.events.recent().cloned().collect());
    }
    // A tenant sees the events of its own VIPs only.
    let mine: std::collections::BTreeSet<&str> = b
        .config()
        .vips
        .iter()
        .filter(|v| p.sees(&v.tenant))
        .map(|v| v.name.as_str())
        .collect();
    Json(
        b.events
            .recent()
            .filter(|e| e.vip.as_deref().is_some_and(|v| mine.contains(v)))
            .cloned()
            .collect(),
    )
}

fn no_vip(vip: &str) -> ApiError {
    ApiError::not_found(format!("no VIP named {vip:?}"))
}

/// The VIP named `vip` in the running configuration, or 404.
fn known_vip<T: Tables + Send + 'static>(s: &Shared<T>, vip: &str) -> Result<(), ApiError> {
    if s.balancer().config().vips.iter().any(|v| v.name == vip) {
        Ok(())
    } else {
        Err(no_vip(vip))
    }
}

fn vip_view<T: Tables + Send + 'static>(s: &Shared<T>, vip: &str) -> ApiResult<VipState> {
    let state = s.balancer().state();
    state
        .vips
        .into_iter()
        .find(|v| v.name == vip)
        .map(Json)
        .ok_or_else(|| no_vip(vip))
}

/// Replace the VIP's backend list (the control-plane push).
///
/// Same schema as `vips[].backends` in the configuration file; JSON or YAML.
#[utoipa::path(put, path = "/v1/vips/{vip}/backends", tag = "backends", params(("vip" = String, Path, description = "The VIP's name.")),
    request_body = Vec<BackendInput>,
    responses((status = 200, description = "Applied; the VIP's new state.", body = VipState), (status = 400, description = "Refused; nothing changed.", body = ErrorBody), (status = 404, description = "No such VIP or backend (or not the caller's tenant's).", body = ErrorBody)))]
async fn replace_backends<T: Tables + Send + 'static>(
    State(s): State<Arc<Shared<T>>>,
    Path(vip): Path<String>,
    body: Bytes,
) -> ApiResult<VipState> {
    known_vip(&s, &vip)?;
    let text = std::str::from_utf8(&body).map_err(|_| ApiError::field("", "body is not UTF-8"))?;
    let backends = config::parse_backends(text, "request").map_err(|e| ApiError::bad(e.errors))?;
    s.change(&format!("API push to {vip}"), |src| {
        src.pushed.insert(vip.clone(), backends);
        Ok(())
    })?;
    vip_view(&s, &vip)
}

/// Drop the pushed list; the VIP goes back to its configured backends.
#[utoipa::path(delete, path = "/v1/vips/{vip}/backends", tag = "backends", params(("vip" = String, Path, description = "The VIP's name.")),
    responses((status = 200, description = "Reverted.", body = VipState), (status = 404, description = "No such VIP or backend (or not the caller's tenant's).", body = ErrorBody)))]
async fn revert_backends<T: Tables + Send + 'static>(
    State(s): State<Arc<Shared<T>>>,
    Path(vip): Path<String>,
) -> ApiResult<VipState> {
    known_vip(&s, &vip)?;
    s.change(&format!("API revert of {vip}"), |src| {
        src.pushed.remove(&vip);
        Ok(())
    })?;
    vip_view(&s, &vip)
}

fn set_override<T: Tables + Send + 'static>(
    s: &Shared<T>,
    vip: &str,
    backend: &str,
    what: &str,
    f: impl FnOnce(&mut Override),
) -> ApiResult<VipState> {
    let addr = backend.parse().map_err(|_| {
        ApiError::field(
            "backend",
            format!("expected an IP address, got {backend:?}"),
        )
    })?;
    {
        let b = s.balancer();
        let v = b
            .config()
            .vips
            .iter()
            .find(|v| v.name == vip)
            .ok_or_else(|| no_vip(vip))?;
        if !v.backends.iter().any(|x| x.address == addr) {
            return Err(ApiError::not_found(format!(
                "VIP {vip:?} has no backend {addr}"
            )));
        }
    }
    s.change(&format!("API {what} {vip}/{addr}"), |src| {
        let o = src.overrides.entry((vip.to_string(), addr)).or_default();
        f(o);
        if *o == Override::default() {
            src.overrides.remove(&(vip.to_string(), addr));
        }
        Ok(())
    })?;
    vip_view(s, vip)
}

/// No new flows; established flows stay until they end or the VIP's
/// drain_timeout.
#[utoipa::path(post, path = "/v1/vips/{vip}/backends/{backend}/drain", tag = "backends", params(("vip" = String, Path, description = "The VIP's name."), ("backend" = String, Path, description = "The backend's IP address.")),
    responses((status = 200, description = "Draining.", body = VipState), (status = 400, description = "Refused; nothing changed.", body = ErrorBody), (status = 404, description = "No such VIP or backend (or not the caller's tenant's).", body = ErrorBody)))]
async fn drain<T: Tables + Send + 'static>(
    s: State<Arc<Shared<T>>>,
    p: Path<(String, String)>,
) -> ApiResult<VipState> {
    admin_state(s, p, "drain", AdminState::Draining).await
}

/// Back to active.
#[utoipa::path(post, path = "/v1/vips/{vip}/backends/{backend}/undrain", tag = "backends", params(("vip" = String, Path, description = "The VIP's name."), ("backend" = String, Path, description = "The backend's IP address.")),
    responses((status = 200, description = "Active.", body = VipState), (status = 400, description = "Refused; nothing changed.", body = ErrorBody), (status = 404, description = "No such VIP or backend (or not the caller's tenant's).", body = ErrorBody)))]
async fn undrain<T: Tables + Send + 'static>(
    s: State<Arc<Shared<T>>>,
    p: Path<(String, String)>,
) -> ApiResult<VipState> {
    admin_state(s, p, "undrain", AdminState::Active).await
}

/// Out of service now; established flows stay or move as the VIP's
/// flows_on_backend_down says.
#[utoipa::path(post, path = "/v1/vips/{vip}/backends/{backend}/maintenance", tag = "backends", params(("vip" = String, Path, description = "The VIP's name."), ("backend" = String, Path, description = "The backend's IP address.")),
    responses((status = 200, description = "In maintenance.", body = VipState), (status = 400, description = "Refused; nothing changed.", body = ErrorBody), (status = 404, description = "No such VIP or backend (or not the caller's tenant's).", body = ErrorBody)))]
async fn maintenance<T: Tables + Send + 'static>(
    s: State<Arc<Shared<T>>>,
    p: Path<(String, String)>,
) -> ApiResult<VipState> {
    admin_state(s, p, "maintenance", AdminState::Maintenance).await
}

/// Drain, undrain, maintenance: the backend's admin state.
async fn admin_state<T: Tables + Send + 'static>(
    State(s): State<Arc<Shared<T>>>,
    Path((vip, backend)): Path<(String, String)>,
    what: &str,
    state: AdminState,
) -> ApiResult<VipState> {
    set_override(&s, &vip, &backend, what, |o| o.state = Some(state))
}

/// Set the backend's weight (a ratio against the others).
#[utoipa::path(put, path = "/v1/vips/{vip}/backends/{backend}/weight", tag = "backends", params(("vip" = String, Path, description = "The VIP's name."), ("backend" = String, Path, description = "The backend's IP address.")),
    request_body = WeightRequest,
    responses((status = 200, description = "Applied.", body = VipState), (status = 400, description = "Refused; nothing changed.", body = ErrorBody), (status = 404, description = "No such VIP or backend (or not the caller's tenant's).", body = ErrorBody)))]
async fn weight<T: Tables + Send + 'static>(
    State(s): State<Arc<Shared<T>>>,
    Path((vip, backend)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<VipState> {
    let w: WeightRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::field("", format!("expected {{\"weight\": N}}: {e}")))?;
    if !(0..=65535).contains(&w.weight) {
        return Err(ApiError::field(
            "weight",
            format!("must be 0..=65535, got {}", w.weight),
        ));
    }
    set_override(&s, &vip, &backend, "weight", |o| {
        o.weight = Some(w.weight as u32)
    })
}

/// The running failover drill, if any, and the report of the last one
/// that ended.
#[utoipa::path(get, path = "/v1/drill", tag = "drill", responses((status = 200, description = "The running drill and the last report.", body = Drill)))]
async fn drill_get<T: Tables + Send + 'static>(State(s): State<Arc<Shared<T>>>) -> Json<Drill> {
    Json(Drill {
        drill: s.drill(),
        last: s.last_drill(),
    })
}

/// Preview (dry_run) or start a failover drill that reverts by itself.
#[utoipa::path(post, path = "/v1/drill", tag = "drill", request_body = DrillRequest, responses(
    (status = 200, description = "The per-VIP split now and during the drill; the drill when started.", body = DrillStarted),
    (status = 400, description = "Invalid, or the selector matches no backend (field `fail`); nothing changed.", body = ErrorBody),
    (status = 409, description = "A drill is already running.", body = ErrorBody)))]
async fn drill_start<T: Tables + Send + 'static>(
    State(s): State<Arc<Shared<T>>>,
    body: Bytes,
) -> ApiResult<DrillStarted> {
    let d: DrillRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::field(
            "",
            format!(
                "expected {{\"fail\": \"cloud=X\", \"duration_secs\": N, \"dry_run\": bool}}: {e}"
            ),
        )
    })?;
    let fail = FailSelector::parse(&d.fail).map_err(|e| ApiError::field("fail", e))?;
    let preview = s.preview_drill(&fail)?;
    let mut answer = DrillStarted {
        dry_run: d.dry_run,
        fail: fail.to_string(),
        drill: None,
        preview,
    };
    if d.dry_run {
        return Ok(Json(answer));
    }
    let secs = d.duration_secs.unwrap_or(60.0);
    if !(1.0..=86400.0).contains(&secs) {
        return Err(ApiError::field(
            "duration_secs",
            format!("must be between 1 and 86400, got {secs}"),
        ));
    }
    answer.drill = Some(s.start_drill(fail, Duration::from_secs_f64(secs))?);
    Ok(Json(answer))
}

/// Stop the running drill now (revert).
///
/// The report gives per VIP and backend the packets and new flows measured
/// during the drill, the measured and predicted shares of new flows and
/// their difference.
#[utoipa::path(delete, path = "/v1/drill", tag = "drill", responses((status = 200, description = "The drill stopped and its report.", body = DrillStopped)))]
async fn drill_stop<T: Tables + Send + 'static>(
    State(s): State<Arc<Shared<T>>>,
) -> ApiResult<DrillStopped> {
    let (stopped, report) = s.stop_drill(None)?.unzip();
    Ok(Json(DrillStopped { stopped, report }))
}

/// Starts serving the API on the configured socket (and TCP listener).
pub async fn serve<T: Tables + Send + 'static>(
    shared: Arc<Shared<T>>,
    c: &Config,
) -> Result<(), SetupError> {
    // Everything the TCP listener needs is read first: a bad tokens file
    // or certificate stops the start before any API answers.
    let tcp = match c.api.tcp_listen {
        None => None,
        Some(addr) => {
            let tls = c
                .api
                .tls
                .as_ref()
                .map(|files| tls::TlsSource::new(files.clone()).map_err(SetupError))
                .transpose()?;
            Some((addr, tcp_tokens(c)?, tls))
        }
    };
    let path = c.api.socket.clone();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| SetupError(format!("create {}: {e}", dir.display())))?;
    }
    let _ = std::fs::remove_file(&path);
    let listener = tokio::net::UnixListener::bind(&path)
        .map_err(|e| SetupError(format!("api socket {}: {e}", path.display())))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| SetupError(format!("chmod {}: {e}", path.display())))?;
    tracing::info!(socket = %path.display(), "serving the API");
    let app =
        router(shared.clone(), Auth::Local).into_make_service_with_connect_info::<auth::PeerCred>();
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "API server stopped");
        }
    });
    let Some((addr, tokens, tls)) = tcp else {
        return Ok(());
    };
    let l = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| SetupError(format!("api.tcp_listen {addr}: {e}")))?;
    let app = router(shared, Auth::Tokens(Arc::new(tokens)));
    match tls {
        Some(source) => {
            let mtls = c
                .api
                .tls
                .as_ref()
                .is_some_and(|t| t.client_ca_file.is_some());
            let l = tls::TlsListener::new(l, Arc::new(source))
                .map_err(|e| SetupError(format!("api.tcp_listen {addr}: {e}")))?;
            tracing::info!(%addr, mtls, "serving the API on HTTPS (bearer token required)");
            let app = app.into_make_service_with_connect_info::<auth::PeerAddr>();
            tokio::spawn(async move {
                if let Err(e) = axum::serve(l, app).await {
                    tracing::error!(error = %e, "HTTPS API server stopped");
                }
            });
        }
        None => {
            tracing::warn!(%addr, "serving the API on plain HTTP (loopback only; set api.tls for HTTPS)");
            let app = app.into_make_service_with_connect_info::<auth::PeerAddr>();
            tokio::spawn(async move {
                if let Err(e) = axum::serve(l, app).await {
                    tracing::error!(error = %e, "TCP API server stopped");
                }
            });
        }
    }
    Ok(())
}

/// The TCP API's tokens: the tokens file, or the single admin token of
/// `api.token_file`.
fn tcp_tokens(c: &Config) -> Result<auth::TokenSource, SetupError> {
    if let Some(file) = &c.api.tokens_file {
        let tenants = c.tenants.keys().cloned().collect();
        return auth::TokenSource::from_file(file.clone(), &tenants).map_err(SetupError);
    }
    // The configuration guarantees one of the two with tcp_listen.
    let file = c
        .api
        .token_file
        .clone()
        .ok_or_else(|| SetupError("api.tcp_listen needs api.tokens_file".into()))?;
    let token = std::fs::read_to_string(&file)
        .map_err(|e| SetupError(format!("api.token_file {}: {e}", file.display())))?;
    let tokens = crate::core::access::Tokens::single_admin(token.trim()).map_err(|e| {
        SetupError(format!(
            "api.token_file {}: {}; refusing to serve the API on TCP",
            file.display(),
            e.message
        ))
    })?;
    Ok(auth::TokenSource::fixed(tokens))
}

#[cfg(test)]
mod props;
#[cfg(test)]
mod tests;
