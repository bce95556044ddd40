//! The OpenAPI document is generated from the handlers (`lbd openapi`):
//! the committed `docs/openapi.yaml` must be that output, and every answer
//! a running agent gives — successes and refusals, on every documented
//! route — must fit the schema the document gives for it.

use std::{collections::BTreeSet, path::Path, process::Command};

use anyhow::{Context as _, Result, bail, ensure};
use lb_tests::{
    netns::Netns,
    openapi::{response_schema, violations},
    procs::{Lbd, bin},
};
use serde_json::Value;

use super::{Env, SHOP_ON_LO};

/// (method, documented path, concrete path, body, expected status).
#[rustfmt::skip]
const CALLS: &[(&str, &str, &str, Option<&str>, u16)] = &[
    ("GET", "/v1/health", "/v1/health", None, 200),
    ("GET", "/v1/whoami", "/v1/whoami", None, 200),
    ("GET", "/v1/state", "/v1/state", None, 200),
    ("PUT", "/v1/vips/{vip}/backends", "/v1/vips/shop/backends", Some(r#"[{"address": "10.0.1.1", "weight": 5}, {"address": "10.0.1.3", "labels": {"cloud": "aws"}}]"#), 200),
    ("PUT", "/v1/vips/{vip}/backends", "/v1/vips/shop/backends", Some(r#"[{"address": "nope"}]"#), 400),
    ("PUT", "/v1/vips/{vip}/backends", "/v1/vips/nope/backends", Some("[]"), 404),
    ("POST", "/v1/vips/{vip}/backends/{backend}/drain", "/v1/vips/shop/backends/10.0.1.1/drain", None, 200),
    ("POST", "/v1/vips/{vip}/backends/{backend}/drain", "/v1/vips/shop/backends/10.9.9.9/drain", None, 404),
    ("POST", "/v1/vips/{vip}/backends/{backend}/drain", "/v1/vips/shop/backends/not-an-ip/drain", None, 400),
    ("POST", "/v1/vips/{vip}/backends/{backend}/undrain", "/v1/vips/shop/backends/10.0.1.1/undrain", None, 200),
    ("POST", "/v1/vips/{vip}/backends/{backend}/maintenance", "/v1/vips/shop/backends/10.0.1.3/maintenance", None, 200),
    ("PUT", "/v1/vips/{vip}/backends/{backend}/weight", "/v1/vips/shop/backends/10.0.1.1/weight", Some(r#"{"weight": 7}"#), 200),
    ("PUT", "/v1/vips/{vip}/backends/{backend}/weight", "/v1/vips/shop/backends/10.0.1.1/weight", Some(r#"{"weight": -1}"#), 400),
    ("DELETE", "/v1/vips/{vip}/backends", "/v1/vips/shop/backends", None, 200),
    ("POST", "/v1/drill", "/v1/drill", Some(r#"{"fail": "backend=10.0.1.1", "dry_run": true}"#), 200),
    ("POST", "/v1/drill", "/v1/drill", Some(r#"{"fail": "backend=10.0.1.1", "duration_secs": 30}"#), 200),
    ("POST", "/v1/drill", "/v1/drill", Some(r#"{"fail": "backend=10.0.1.1", "duration_secs": 30}"#), 409),
    ("POST", "/v1/drill", "/v1/drill", Some(r#"{"fail": "zone=nowhere", "dry_run": true}"#), 400),
    ("GET", "/v1/state", "/v1/state", None, 200),
    ("DELETE", "/v1/drill", "/v1/drill", None, 200),
    ("GET", "/v1/drill", "/v1/drill", None, 200),
    ("GET", "/v1/events", "/v1/events", None, 200),
    ("POST", "/v1/node/drain", "/v1/node/drain", None, 200),
    ("POST", "/v1/node/undrain", "/v1/node/undrain", None, 200),
    ("PUT", "/v1/node/hold", "/v1/node/hold", Some(r#"{"secs": 5}"#), 200),
    ("PUT", "/v1/node/hold", "/v1/node/hold", Some(r#"{"secs": 0}"#), 400),
    ("DELETE", "/v1/node/hold", "/v1/node/hold", None, 200),
    ("GET", "/v1/node", "/v1/node", None, 200),
];

fn committed() -> Result<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.yaml");
    std::fs::read_to_string(&path).with_context(|| path.display().to_string())
}

pub fn the_committed_openapi_document_is_generated_and_every_live_answer_fits_its_schema(
    _: &mut Env,
) -> Result<()> {
    let out = Command::new(bin("lbd")?).arg("openapi").output()?;
    ensure!(
        out.status.success(),
        "lbd openapi: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let generated = String::from_utf8(out.stdout)?;
    ensure!(
        generated == committed()?,
        "docs/openapi.yaml differs from `lbd openapi`; regenerate it"
    );
    let doc: Value = serde_norway::from_str(&generated).context("the document is YAML")?;

    let ns = Netns::new("oapi")?;
    let agent = Lbd::start(&ns, SHOP_ON_LO, &[])?;
    let mut problems = Vec::new();
    let mut exercised = BTreeSet::new();
    for &(method, path, uri, body, expected) in CALLS {
        let (status, answer) = agent.api_answer(method, uri, body)?;
        if status != expected {
            problems.push(format!(
                "{method} {uri}: {status}, expected {expected}: {answer}"
            ));
            continue;
        }
        let Some(schema) = response_schema(&doc, method, path, status) else {
            problems.push(format!(
                "{method} {path}: status {status} is not documented"
            ));
            continue;
        };
        for v in violations(&doc, schema, &answer) {
            problems.push(format!("{method} {uri} {status}: {v}"));
        }
        exercised.insert((method.to_lowercase(), path.to_string()));
    }
    // The drill's report and the events are not empty: their items were checked.
    let (_, drill) = agent.api_answer("GET", "/v1/drill", None)?;
    ensure!(
        drill["last"]["vips"]
            .as_array()
            .is_some_and(|v| !v.is_empty()),
        "{drill}"
    );
    let (_, events) = agent.api_answer("GET", "/v1/events", None)?;
    ensure!(events.as_array().is_some_and(|e| !e.is_empty()), "{events}");

    let documented: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .context("paths")?
        .iter()
        .flat_map(|(p, item)| {
            item.as_object()
                .into_iter()
                .flat_map(|ops| ops.keys())
                .map(move |m| (m.clone(), p.clone()))
        })
        .collect();
    let missed: Vec<_> = documented.difference(&exercised).collect();
    if !problems.is_empty() || !missed.is_empty() {
        bail!(
            "{} answers do not fit the document:\n  {}\nroutes not exercised: {missed:?}",
            problems.len(),
            problems.join("\n  ")
        );
    }
    println!(
        "    {} calls on {} routes fit docs/openapi.yaml",
        CALLS.len(),
        exercised.len()
    );
    Ok(())
}
