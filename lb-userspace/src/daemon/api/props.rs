//! Property test: no request sequence makes the API answer 5xx or panic,
//! and whatever it accepted or refused, the facade and the tables still
//! agree. Bodies are valid requests with one value replaced, random JSON
//! over the API's field names, and bytes that are not JSON at all.

use axum::{
    body::Body,
    http::{Method, Request, header},
};
use proptest::prelude::*;
use serde_json::{Map, Value, json};
use tower::ServiceExt as _;

use super::{tests::shared, *};

/// (method, path template, a valid body).
fn routes() -> Vec<(Method, &'static str, Value)> {
    vec![
        (Method::GET, "/v1/health", Value::Null),
        (Method::GET, "/v1/state", Value::Null),
        (Method::GET, "/v1/events", Value::Null),
        (
            Method::PUT,
            "/v1/vips/{vip}/backends",
            json!([{"address": "10.0.1.3", "weight": 50, "labels": {"cloud": "aws", "region": "r1"}}]),
        ),
        (Method::DELETE, "/v1/vips/{vip}/backends", Value::Null),
        (
            Method::POST,
            "/v1/vips/{vip}/backends/{backend}/drain",
            Value::Null,
        ),
        (
            Method::POST,
            "/v1/vips/{vip}/backends/{backend}/undrain",
            Value::Null,
        ),
        (
            Method::POST,
            "/v1/vips/{vip}/backends/{backend}/maintenance",
            Value::Null,
        ),
        (
            Method::PUT,
            "/v1/vips/{vip}/backends/{backend}/weight",
            json!({"weight": 10}),
        ),
        (Method::GET, "/v1/drill", Value::Null),
        (
            Method::POST,
            "/v1/drill",
            json!({"fail": "cloud=gcp", "duration_secs": 30, "dry_run": false}),
        ),
        (Method::DELETE, "/v1/drill", Value::Null),
        (Method::GET, "/v1/node", Value::Null),
        (Method::POST, "/v1/node/drain", Value::Null),
        (Method::POST, "/v1/node/undrain", Value::Null),
        (Method::PUT, "/v1/node/hold", json!({"secs": 30})),
        (Method::DELETE, "/v1/node/hold", Value::Null),
    ]
}

const KEYS: &[&str] = &[
    "address",
    "port",
    "weight",
    "labels",
    "cloud",
    "region",
    "zone",
    "forwarding",
    "gue_port",
    "mac",
    "fail",
    "duration_secs",
    "dry_run",
    "backends",
    "x",
];

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        prop::sample::select(vec![
            1e300,
            -1e300,
            f64::MAX,
            f64::MIN_POSITIVE,
            -0.5,
            86400.5
        ])
        .prop_map(|f| json!(f)),
        prop::sample::select(vec![
            "cloud=gcp",
            "cloud=",
            "=",
            "backend=10.0.1.1",
            "backend=x",
            "zone=a",
            "10.0.1.1",
            "fd00::1",
            "ipip",
            "gue",
            "l2-dsr",
            "02:00:00:00:00:01",
            "",
            "\u{0}",
        ])
        .prop_map(|s| json!(s)),
        "[ -~]{0,16}".prop_map(Value::String),
    ]
}

fn tree() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 32, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(KEYS), inner), 0..5).prop_map(|kv| {
                Value::Object(
                    kv.into_iter()
                        .map(|(k, v)| (k.to_string(), v))
                        .collect::<Map<_, _>>(),
                )
            }),
        ]
    })
}

/// Replaces the `n`th leaf (in document order) of `v` with `with`.
fn replace_leaf(v: &mut Value, n: &mut usize, with: &Value) -> bool {
    match v {
        Value::Array(a) => a.iter_mut().any(|x| replace_leaf(x, n, with)),
        Value::Object(o) => o.values_mut().any(|x| replace_leaf(x, n, with)),
        leaf => {
            if *n == 0 {
                *leaf = with.clone();
                return true;
            }
            *n -= 1;
            false
        }
    }
}

#[derive(Clone, Debug)]
enum BodyKind {
    /// The route's valid body with one leaf replaced.
    Mutated(usize, Value),
    Random(Value),
    Bytes(Vec<u8>),
}

fn body() -> impl Strategy<Value = BodyKind> {
    prop_oneof![
        3 => (any::<usize>(), prop_oneof![leaf(), tree()]).prop_map(|(n, v)| BodyKind::Mutated(n, v)),
        2 => tree().prop_map(BodyKind::Random),
        1 => prop::collection::vec(any::<u8>(), 0..64).prop_map(BodyKind::Bytes),
    ]
}

fn request() -> impl Strategy<Value = (usize, usize, usize, BodyKind)> {
    (0..routes().len(), 0..4usize, 0..4usize, body())
}

fn segment(choice: usize, known: &'static str) -> &'static str {
    [known, "nope", "%2e%2e", "10.0.1.999"][choice]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn no_request_sequence_gets_a_5xx_or_breaks_the_tables(
        reqs in prop::collection::vec(request(), 1..8)
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let shared = shared();
        let app = router(shared.clone(), Auth::Local);
        rt.block_on(async {
            for (route, vip, backend, kind) in &reqs {
                let (method, template, valid) = routes()[*route].clone();
                let path = template
                    .replace("{vip}", segment(*vip, "web"))
                    .replace("{backend}", segment(*backend, "10.0.1.1"));
                let bytes = match kind {
                    BodyKind::Mutated(n, with) => {
                        let mut v = valid.clone();
                        let mut n = n % 16;
                        replace_leaf(&mut v, &mut n, with);
                        serde_json::to_vec(&v).unwrap()
                    }
                    BodyKind::Random(v) => serde_json::to_vec(v).unwrap(),
                    BodyKind::Bytes(b) => b.clone(),
                };
                let req = Request::builder()
                    .method(method.clone())
                    .uri(&path)
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Body::from(bytes.clone()))
                    .unwrap();
                let resp = app.clone().oneshot(req).await.unwrap();
                prop_assert!(
                    !resp.status().is_server_error(),
                    "{method} {path} {} -> {}",
                    String::from_utf8_lossy(&bytes),
                    resp.status()
                );
            }
            Ok(())
        })?;
        let b = shared.balancer();
        prop_assert!(b.in_sync());
        prop_assert_eq!(b.tables().dangling_slots(), 0);
    }
}
