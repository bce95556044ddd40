//! The OpenAPI document of the API, generated from the handlers'
//! `#[utoipa::path]` attributes and the bodies' `ToSchema` derives, so it
//! cannot drift from the code: `lbd openapi` prints it, and a test keeps
//! the committed `docs/openapi.yaml` equal to it.
//!
//! No `utoipa-axum`: its `routes!` names handlers without generics, and
//! every handler here is generic over the tables (`Tables`) so the same
//! router serves the kernel maps and the tests' in-memory ones. The router
//! stays plain axum; [`super::ROUTES`] and the tests tie it to this
//! document.

use utoipa::{
    Modify, OpenApi,
    openapi::security::{Http, HttpAuthScheme, SecurityScheme},
};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "lbd API",
        version = "1",
        description = "The agent's API. Served on a Unix socket (default /run/lb/lbd.sock, mode \
0600; the caller is named by its peer credentials and is admin) and, when `api.tcp_listen` is set, \
on TCP (HTTPS with `api.tls`, optionally mTLS) where every request needs `Authorization: Bearer \
<token>` of a token in `api.tokens_file` (or `api.token_file`). Roles: `read` (every GET), \
`operate` (also drain, undrain, maintenance, weight, drills), `admin` (everything). A token with a \
tenant sees only that tenant's VIPs; any other VIP answers 404, host-wide routes (node, drill) 403. \
401: no or unknown token; 403: the role does not allow the route. Every write, accepted or \
refused, is recorded in the audit log. Every write is validated like the configuration file and \
applied atomically; a refused request changes nothing and answers 4xx with an `ErrorBody` naming \
the field path.",
        license(name = "MIT OR Apache-2.0"),
    ),
    paths(
        super::health,
        super::auth::whoami,
        super::state,
        super::events,
        super::replace_backends,
        super::revert_backends,
        super::drain,
        super::undrain,
        super::maintenance,
        super::weight,
        super::drill_get,
        super::drill_start,
        super::drill_stop,
        super::node,
        super::node_drain,
        super::node_undrain,
        super::hold,
        super::hold_end,
    ),
    tags(
        (name = "agent", description = "The agent: liveness, caller, state, events."),
        (name = "backends", description = "A VIP's backends: pushed lists, admin state, weights."),
        (name = "drill", description = "Failover drills that revert by themselves."),
        (name = "node", description = "This LB host's announcements through BIRD."),
    ),
    modifiers(&BearerOnTcp),
)]
pub struct ApiDoc;

/// The TCP listener's bearer tokens, as a security scheme (the Unix
/// socket needs none, so no operation requires it globally).
struct BearerOnTcp;

impl Modify for BearerOnTcp {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        if let Some(c) = doc.components.as_mut() {
            c.add_security_scheme(
                "bearer",
                SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
            );
        }
    }
}

/// The document as YAML, as `docs/openapi.yaml` holds it.
pub fn yaml() -> String {
    serde_norway::to_string(&ApiDoc::openapi()).expect("an OpenAPI document serializes")
}
