//! The API's request and answer bodies, shared by the server and
//! `lb::client`, so both sides read and write the same types.

use serde::{Deserialize, Serialize};

use crate::{
    core::{
        balancer::{DrillPreview, State},
        config::FieldError,
    },
    daemon::{
        announce::{AnnounceStatus, NodeControl},
        drill::{DrillReport, DrillRun},
        shared::{Attachment, FeedStatus, Reloads},
    },
};

/// `GET /v1/health`: the agent answers, and which agent it is.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Health {
    /// Always `ok`.
    pub status: String,
    /// The agent's version (`lbd --version`).
    #[serde(default)]
    pub version: String,
    /// When this agent started, seconds since the Unix epoch.
    #[serde(default)]
    pub started_at: f64,
    /// The interfaces the balancer is attached to, and how.
    #[serde(default)]
    pub interfaces: Vec<Attachment>,
}

/// `GET /v1/state`: the balancer's state and the agent's around it.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AgentState {
    #[serde(flatten)]
    pub state: State,
    pub drill: Option<DrillRun>,
    pub etcd: Option<FeedStatus>,
    pub reloads: Reloads,
    /// Drained, restart hold, announcements (`node` is the node's name,
    /// from the flattened state).
    #[serde(default)]
    pub node_control: NodeState,
}

/// `GET /v1/node`: what the operator decided for this LB host and which
/// VIP addresses it announces, and why.
#[derive(Clone, Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NodeState {
    #[serde(flatten)]
    pub control: NodeControl,
    /// An exit now keeps the routes (a restart hold is in force).
    pub holding: bool,
    /// `None`: no route control configured (`announce:` absent).
    pub announce: Option<AnnounceStatus>,
}

impl Health {
    /// How long the agent has run at `now` (seconds since the Unix epoch).
    pub fn uptime(&self, now: f64) -> std::time::Duration {
        std::time::Duration::from_secs_f64((now - self.started_at).max(0.0))
    }
}

/// `PUT /v1/node/hold`.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HoldRequest {
    pub secs: f64,
}

/// `PUT .../weight`.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WeightRequest {
    pub weight: i64,
}

/// `POST /v1/drill`.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DrillRequest {
    /// `cloud=X`, `region=Y`, `zone=Z` or `backend=ADDR`.
    pub fail: String,
    #[serde(default)]
    pub duration_secs: Option<f64>,
    /// Only preview the split.
    #[serde(default)]
    pub dry_run: bool,
}

/// `POST /v1/drill`: what was started (nothing for a dry run) and the
/// split it gives.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DrillStarted {
    pub dry_run: bool,
    pub fail: String,
    pub drill: Option<DrillRun>,
    pub preview: Vec<DrillPreview>,
}

/// `GET /v1/drill`: the running drill, and the report of the last one
/// that ended.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Drill {
    pub drill: Option<DrillRun>,
    pub last: Option<DrillReport>,
}

/// `DELETE /v1/drill`: the drill stopped, and its report.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DrillStopped {
    pub stopped: Option<DrillRun>,
    pub report: Option<DrillReport>,
}

/// Every refusal: the message, and each field at fault.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: String,
    pub errors: Vec<FieldErrorBody>,
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FieldErrorBody {
    pub path: String,
    pub message: String,
}

impl From<&FieldError> for FieldErrorBody {
    fn from(e: &FieldError) -> Self {
        Self {
            path: e.path.clone(),
            message: e.message.clone(),
        }
    }
}

/// `GET /v1/whoami`: who the API takes the caller for.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WhoAmI {
    pub who: String,
    pub role: crate::core::access::Role,
    pub tenant: Option<String>,
}
