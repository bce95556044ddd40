//! The API over in-memory tables: every documented route exists, every
//! route is documented, writes validate and apply atomically.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Instant,
};

use axum::{
    body::Body,
    http::{Method, Request, StatusCode},
};
use tower::ServiceExt as _;

use super::*;
use crate::core::{balancer::Balancer, sources::Sources, tables::MemoryTables};

pub(super) const CFG: &str = r#"
node: {cloud: aws, region: r1}
limits: {max_vips: 4, max_backends: 16, ring_size: 251}
vips:
  - name: web
    address: 10.100.0.1
    port: 80
    backends:
      - {address: 10.0.1.1, labels: {cloud: aws, region: r1}}
      - {address: 10.0.1.2, labels: {cloud: gcp, region: r2}}
"#;

/// An agent's shared state over in-memory tables, for router tests.
pub(super) fn shared() -> Arc<Shared<MemoryTables>> {
    let c = config::parse(CFG, "t").unwrap();
    let b = Balancer::new(MemoryTables::new(c.limits), c.clone(), Instant::now()).unwrap();
    Arc::new(Shared::new(b, Sources::new(c), None, None))
}

async fn call(
    app: &Router,
    method: Method,
    uri: &str,
    body: &str,
) -> (StatusCode, serde_json::Value) {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .body(Body::from(body.to_string()))
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    )
}

async fn get(app: &Router, uri: &str) -> (StatusCode, serde_json::Value) {
    call(app, Method::GET, uri, "").await
}

async fn delete(app: &Router, uri: &str) -> (StatusCode, serde_json::Value) {
    call(app, Method::DELETE, uri, "").await
}

async fn post(app: &Router, uri: &str, body: &str) -> (StatusCode, serde_json::Value) {
    call(app, Method::POST, uri, body).await
}

async fn put(app: &Router, uri: &str, body: &str) -> (StatusCode, serde_json::Value) {
    call(app, Method::PUT, uri, body).await
}

fn openapi_routes() -> BTreeSet<(String, String)> {
    let text = include_str!("../../../../docs/openapi.yaml");
    let doc: serde_norway::Value = serde_norway::from_str(text).unwrap();
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_mapping().unwrap() {
        for (method, _) in item.as_mapping().unwrap() {
            let m = method.as_str().unwrap();
            if m != "parameters" {
                out.insert((m.to_uppercase(), path.as_str().unwrap().to_string()));
            }
        }
    }
    out
}

#[test]
fn openapi_documents_exactly_the_routes() {
    let documented = openapi_routes();
    let served: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(
        documented, served,
        "docs/openapi.yaml and api::ROUTES differ"
    );
}

#[test]
fn committed_openapi_document_is_the_generated_one() {
    let committed = include_str!("../../../../docs/openapi.yaml");
    let generated = super::openapi::yaml();
    assert!(
        committed == generated,
        "docs/openapi.yaml is not what the handlers generate; run \
         `cargo run -p lb-userspace --bin lbd -- openapi > docs/openapi.yaml`"
    );
}

#[tokio::test]
async fn every_documented_route_is_served() {
    let app = router(shared(), Auth::Local);
    for (method, path) in openapi_routes() {
        let uri = path
            .replace("{vip}", "web")
            .replace("{backend}", "10.0.1.1");
        let body = match (method.as_str(), path.as_str()) {
            ("PUT", p) if p.ends_with("/weight") => r#"{"weight": 5}"#,
            ("PUT", "/v1/node/hold") => r#"{"secs": 30}"#,
            ("PUT", _) => "[{address: 10.0.1.1}]",
            ("POST", "/v1/drill") => r#"{"fail": "cloud=aws", "dry_run": true}"#,
            _ => "",
        };
        let (status, json) = call(
            &app,
            Method::from_bytes(method.as_bytes()).unwrap(),
            &uri,
            body,
        )
        .await;
        assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        assert!(
            !json["error"]
                .as_str()
                .unwrap_or("")
                .contains("no such route"),
            "{method} {path} is documented but not served: {json}"
        );
        assert!(status.is_success(), "{method} {uri}: {status} {json}");
    }
    let (status, json) = get(&app, "/v1/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(json["error"].as_str().unwrap().contains("no such route"));
}

#[tokio::test]
async fn pushing_a_backend_list_validates_and_applies_atomically() {
    let s = shared();
    let app = router(s.clone(), Auth::Local);
    let (status, json) = put(
        &app,
        "/v1/vips/web/backends",
        "[{address: 10.0.1.7, weight: 3}]",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{json}");
    assert_eq!(json["backends"][0]["address"], "10.0.1.7");
    let digest = json["digest"].clone();
    // A bad push answers 400 with the field path and changes nothing.
    let (status, json) = put(
        &app,
        "/v1/vips/web/backends",
        "[{address: 10.0.1.8}, {address: 10.0.1.9, weight: -1}]",
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(json["errors"][0]["path"], "backends[1].weight");
    assert_eq!(json["errors"][0]["message"], "must be 0..=65535, got -1");
    let (_, state) = get(&app, "/v1/state").await;
    assert_eq!(
        state["vips"][0]["digest"], digest,
        "the running state is untouched"
    );
    assert_eq!(state["vips"][0]["backends"].as_array().unwrap().len(), 1);
    // Too many backends for the limits: refused as a whole.
    let many: Vec<String> = (1..=17)
        .map(|i| format!("{{address: 10.0.2.{i}}}"))
        .collect();
    let (status, json) = put(
        &app,
        "/v1/vips/web/backends",
        &format!("[{}]", many.join(", ")),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{json}");
    assert!(
        json["error"]
            .as_str()
            .unwrap()
            .contains("limits.max_backends")
    );
    // Revert to the configured list.
    let (status, json) = delete(&app, "/v1/vips/web/backends").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json["backends"].as_array().unwrap().len(), 2);
    let (status, _) = put(&app, "/v1/vips/nope/backends", "[]").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn admin_states_and_weights() {
    let s = shared();
    let app = router(s.clone(), Auth::Local);
    let (status, json) = post(&app, "/v1/vips/web/backends/10.0.1.2/drain", "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json["backends"][1]["state"], "draining");
    assert_eq!(json["backends"][1]["ring_share"], 0.0);
    let (_, json) = post(&app, "/v1/vips/web/backends/10.0.1.2/undrain", "").await;
    assert_eq!(json["backends"][1]["state"], "active");
    let (_, json) = post(&app, "/v1/vips/web/backends/10.0.1.1/maintenance", "").await;
    assert_eq!(json["backends"][0]["state"], "maintenance");
    let (status, json) = put(
        &app,
        "/v1/vips/web/backends/10.0.1.2/weight",
        r#"{"weight": -1}"#,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(json["error"], "weight: must be 0..=65535, got -1");
    let (status, json) = put(
        &app,
        "/v1/vips/web/backends/10.0.1.2/weight",
        r#"{"weight": 7}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json["backends"][1]["weight"], 7);
    let (status, json) = post(&app, "/v1/vips/web/backends/10.9.9.9/drain", "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        json["error"]
            .as_str()
            .unwrap()
            .contains("has no backend 10.9.9.9")
    );
    let (status, _) = post(&app, "/v1/vips/web/backends/not-an-ip/drain", "").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // The overrides survive a reload of the base configuration.
    s.change("test reload", |src| {
        src.file = config::parse(CFG, "t").unwrap();
        Ok(())
    })
    .unwrap();
    let (_, state) = get(&app, "/v1/state").await;
    assert_eq!(state["vips"][0]["backends"][0]["state"], "maintenance");
}

#[tokio::test]
async fn drills_preview_start_refuse_a_second_and_stop() {
    let s = shared();
    let app = router(s.clone(), Auth::Local);
    let (status, json) = post(
        &app,
        "/v1/drill",
        r#"{"fail": "cloud=aws", "dry_run": true}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let b = &json["preview"][0]["backends"];
    assert_eq!(b[0]["now"], 1.0, "all local while healthy");
    assert_eq!(b[0]["during"], 0.0);
    assert_eq!(b[1]["during"], 1.0, "gcp takes over during the drill");
    let (_, state) = get(&app, "/v1/state").await;
    assert!(state["drill"].is_null(), "a dry run changes nothing");
    let (status, json) = post(
        &app,
        "/v1/drill",
        r#"{"fail": "cloud=aws", "duration_secs": 30}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{json}");
    let (_, state) = get(&app, "/v1/state").await;
    assert_eq!(
        state["vips"][0]["backends"][0]["ring_share"], 0.0,
        "aws out during the drill: {state}"
    );
    let (status, _) = post(&app, "/v1/drill", r#"{"fail": "cloud=gcp"}"#).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, json) = post(&app, "/v1/drill", r#"{"fail": "planet=mars"}"#).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(json["errors"][0]["path"], "fail");
    let (_, json) = delete(&app, "/v1/drill").await;
    assert_eq!(json["stopped"]["fail"], "cloud=aws");
    let (_, state) = get(&app, "/v1/state").await;
    assert_eq!(
        state["vips"][0]["backends"][0]["ring_share"], 1.0,
        "reverted"
    );
}

#[tokio::test]
async fn a_drill_reverts_by_itself() {
    let s = shared();
    let app = router(s.clone(), Auth::Local);
    let (status, _) = post(
        &app,
        "/v1/drill",
        r#"{"fail": "backend=10.0.1.1", "duration_secs": 1}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(s.drill().is_some());
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert!(s.drill().is_none(), "reverted after its duration");
}

/// A tenant of its own, with one VIP, beside the default tenant's `web`.
const TENANT_CFG: &str = r#"
node: {cloud: aws, region: r1}
limits: {max_vips: 4, max_backends: 16, ring_size: 251}
tenants:
  acme: {max_vips: 2}
vips:
  - name: web
    address: 10.100.0.1
    port: 80
    backends:
      - {address: 10.0.1.1, labels: {cloud: aws, region: r1}}
  - name: acme-shop
    tenant: acme
    address: 10.100.0.9
    port: 443
    backends:
      - {address: 10.0.9.1, labels: {cloud: aws, region: r1}}
"#;

const TOKENS: &str = "tokens:
  - {id: ro, token: read-only-token-0001, role: read}
  - {id: ops, token: operator-token-0002, role: operate}
  - {id: root, token: admin-token-0000003, role: admin}
  - {id: acme-ops, token: acme-operator-00004, role: operate, tenant: acme}
";

fn tenant_app() -> Router {
    let c = config::parse(TENANT_CFG, "t").unwrap();
    let b = Balancer::new(MemoryTables::new(c.limits), c.clone(), Instant::now()).unwrap();
    let s = Arc::new(Shared::new(b, Sources::new(c), None, None));
    let tenants = ["acme".to_string()].into();
    let tokens = crate::core::access::Tokens::parse(TOKENS, &tenants).unwrap();
    router(s, Auth::Tokens(Arc::new(auth::TokenSource::fixed(tokens))))
}

async fn as_token(
    app: &Router,
    token: &str,
    method: Method,
    uri: &str,
) -> (StatusCode, serde_json::Value) {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or_default())
}

#[tokio::test]
async fn tcp_requests_need_a_token_and_its_role() {
    let app = tenant_app();
    let (status, _) = get(&app, "/v1/state").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = as_token(&app, "wrong-token-wrong-token", Method::GET, "/v1/state").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, who) = as_token(&app, "read-only-token-0001", Method::GET, "/v1/whoami").await;
    assert_eq!(
        (status, &who["who"], &who["role"]),
        (StatusCode::OK, &"token:ro".into(), &"read".into())
    );
    let drain = "/v1/vips/web/backends/10.0.1.1/drain";
    let (status, json) = as_token(&app, "read-only-token-0001", Method::POST, drain).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{json}");
    assert!(
        json["error"].as_str().unwrap().contains("needs operate"),
        "{json}"
    );
    let (status, _) = as_token(&app, "operator-token-0002", Method::POST, drain).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = as_token(&app, "operator-token-0002", Method::POST, "/v1/node/drain").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "node control needs admin");
    let (status, _) = as_token(&app, "admin-token-0000003", Method::POST, "/v1/node/drain").await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_tenant_token_sees_only_its_own_vips() {
    let app = tenant_app();
    let t = "acme-operator-00004";
    let (_, state) = as_token(&app, t, Method::GET, "/v1/state").await;
    let names: Vec<&str> = state["vips"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["acme-shop"]);
    let (_, state) = as_token(&app, "read-only-token-0001", Method::GET, "/v1/state").await;
    assert_eq!(state["vips"].as_array().unwrap().len(), 2);
    // Another tenant's VIP does not exist for it: 404, the same answer as
    // a VIP nobody has.
    let (status, other) = as_token(
        &app,
        t,
        Method::POST,
        "/v1/vips/web/backends/10.0.1.1/drain",
    )
    .await;
    let (status2, nobody) = as_token(
        &app,
        t,
        Method::POST,
        "/v1/vips/nope/backends/10.0.1.1/drain",
    )
    .await;
    assert_eq!(
        (status, status2),
        (StatusCode::NOT_FOUND, StatusCode::NOT_FOUND)
    );
    assert_eq!(
        other["error"].as_str().unwrap().replace("web", "nope"),
        nobody["error"].as_str().unwrap()
    );
    let (status, _) = as_token(
        &app,
        t,
        Method::POST,
        "/v1/vips/acme-shop/backends/10.0.9.1/drain",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = as_token(&app, t, Method::GET, "/v1/drill").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "drills span tenants");
}

#[tokio::test]
async fn a_drain_withdraws_and_a_hold_is_bounded() {
    let s = shared();
    let app = router(s.clone(), Auth::Local);
    let (status, json) = post(&app, "/v1/node/drain", "").await;
    assert!(status.is_success() && json["drained"] == true, "{json}");
    assert!(s.node.lock().unwrap().drained);
    let (status, json) = put(&app, "/v1/node/hold", r#"{"secs": 7200}"#).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(json["errors"][0]["path"], "secs");
    let (_, json) = put(&app, "/v1/node/hold", r#"{"secs": 60}"#).await;
    assert_eq!(json["holding"], true, "{json}");
    let (_, json) = delete(&app, "/v1/node/hold").await;
    assert_eq!(json["holding"], false, "{json}");
    let (_, json) = post(&app, "/v1/node/undrain", "").await;
    assert_eq!(json["drained"], false, "{json}");
    let kinds: Vec<_> = s
        .balancer()
        .events
        .recent()
        .map(|e| e.kind.name())
        .collect();
    assert!(
        kinds.contains(&"node_drain") && kinds.contains(&"node_undrain"),
        "{kinds:?}"
    );
}

/// With the fleet view, the majority of the live agents' probes decides;
/// without peers (etcd away, views aged out) the local verdict does.
#[test]
fn the_fleet_view_follows_the_majority_and_falls_back_to_the_local_verdict() {
    use crate::daemon::{health::Verdict, shared::Peer, state::unix_now};
    let text = format!("health: {{fleet_view: true}}\n{CFG}");
    let c = config::parse(&text, "t").unwrap();
    let b = Balancer::new(MemoryTables::new(c.limits), c.clone(), Instant::now()).unwrap();
    let s = Shared::new(b, Sources::new(c), None, None);
    let web = s.balancer().vip_by_name("web").unwrap();
    let backend: std::net::IpAddr = "10.0.1.1".parse().unwrap();
    let healthy = |s: &Shared<MemoryTables>| {
        s.balancer().state().vip_by_name("web").unwrap().backends[0].healthy
    };
    s.on_verdict(&Verdict {
        vip: web,
        backend,
        up: true,
        reachable: true,
        reason: "ok".into(),
    });
    assert!(healthy(&s));
    let peer = |up: bool, time: f64| Peer {
        time,
        probes: [(("web".to_string(), backend), up)].into_iter().collect(),
    };
    let two_down: BTreeMap<String, Peer> = [
        ("b".into(), peer(false, unix_now())),
        ("c".into(), peer(false, unix_now())),
    ]
    .into();
    s.set_peers(Some(two_down));
    assert!(!healthy(&s), "two of three see it down");
    let reason = s.balancer().state().vip_by_name("web").unwrap().backends[0]
        .health_reason
        .clone();
    assert!(reason.contains("2 of 3 agents"), "{reason}");
    // The peers' views age out: the local verdict again.
    let stale: BTreeMap<String, Peer> = [
        ("b".into(), peer(false, unix_now() - 60.0)),
        ("c".into(), peer(false, unix_now() - 60.0)),
    ]
    .into();
    s.set_peers(Some(stale));
    assert!(healthy(&s));
}

/// lbctl reads `/v1/state` back into the same type.
#[tokio::test]
async fn the_state_answer_reads_back_into_its_type() {
    let app = router(shared(), Auth::Local);
    let (status, json) = get(&app, "/v1/state").await;
    assert!(status.is_success());
    let back: Result<wire::AgentState, _> = serde_json::from_value(json.clone());
    assert!(back.is_ok(), "{:?}\n{json}", back.err());
}
