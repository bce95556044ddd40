//! The agent's HTTP/JSON API, on a Unix socket (mode 0600) by default.

use std::{os::unix::fs::PermissionsExt as _, sync::Arc};

use axum::{Json, Router, extract::State, routing::get};

use crate::{
    agent::{AgentError, Shared},
    config::Config,
};

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/state", get(state))
        .route("/v1/events", get(events))
        .with_state(shared)
}

async fn state(State(s): State<Arc<Shared>>) -> Json<serde_json::Value> {
    let b = s.balancer.lock().expect("not poisoned");
    Json(serde_json::to_value(b.state()).unwrap_or_default())
}

async fn events(State(s): State<Arc<Shared>>) -> Json<serde_json::Value> {
    let b = s.balancer.lock().expect("not poisoned");
    Json(serde_json::to_value(b.events.recent().collect::<Vec<_>>()).unwrap_or_default())
}

/// Starts serving the API on the configured socket.
pub async fn spawn(shared: Arc<Shared>, c: &Config) -> Result<(), AgentError> {
    let path = c.api.socket.clone();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| AgentError::Setup(format!("create {}: {e}", dir.display())))?;
    }
    let _ = std::fs::remove_file(&path);
    let listener = tokio::net::UnixListener::bind(&path)
        .map_err(|e| AgentError::Setup(format!("api socket {}: {e}", path.display())))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| AgentError::Setup(format!("chmod {}: {e}", path.display())))?;
    tracing::info!(socket = %path.display(), "serving the API");
    let app = router(shared);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "API server stopped");
        }
    });
    Ok(())
}
