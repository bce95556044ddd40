//! Prometheus for real: the shipped alert rules through `promtool` (their
//! syntax and their unit tests), and a real Prometheus server scraping a
//! running `lbd`, queried through its HTTP API.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail, ensure};
use lb_tests::{
    netns::Netns,
    procs::{Lbd, TempDir},
};
use serde_json::Value;

use super::{Env, SHOP_ON_LO};

fn rules_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/prometheus")
}

fn promtool(args: &[&str]) -> Result<String> {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(rules_dir())
        .output()
        .context("run promtool (cargo xtask setup installs Debian's prometheus)")?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(out.status.success(), "promtool {args:?} failed:\n{text}");
    Ok(text)
}

pub fn the_shipped_alert_rules_pass_promtool_check_and_their_unit_tests(_: &mut Env) -> Result<()> {
    let check = promtool(&["check", "rules", "lb-rules.yml"])?;
    ensure!(check.contains("SUCCESS: 9 rules found"), "{check}");
    let test = promtool(&["test", "rules", "lb-rules.test.yml"])?;
    ensure!(test.contains("SUCCESS"), "{test}");
    Ok(())
}

/// A Prometheus server in a namespace; killed when dropped.
struct Prometheus {
    child: Child,
    _dir: TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn query(ns: &Netns, path: &str) -> Result<Value> {
    let out = ns.exec(
        "curl",
        &[
            "-s",
            "--max-time",
            "2",
            &format!("http://127.0.0.1:9090{path}"),
        ],
    )?;
    serde_json::from_str(&out).with_context(|| format!("{path}: {out}"))
}

/// Polls `path` until `ok` holds.
fn wait(ns: &Netns, path: &str, within: Duration, ok: impl Fn(&Value) -> bool) -> Result<Value> {
    let deadline = Instant::now() + within;
    let mut last = Value::Null;
    while Instant::now() < deadline {
        if let Ok(v) = query(ns, path) {
            if ok(&v) {
                return Ok(v);
            }
            last = v;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    bail!("{path} within {within:?}: last answer {last}")
}

pub fn a_real_prometheus_scrapes_lbd_evaluates_the_shipped_rules_and_runs_the_dashboard_queries(
    _: &mut Env,
) -> Result<()> {
    let ns = Netns::new("prom")?;
    let config = format!("metrics: {{listen: \"127.0.0.1:9478\"}}\n{SHOP_ON_LO}");
    let _agent = Lbd::start(&ns, &config, &[])?;
    let dir = TempDir::new("prom")?;
    let config = dir.0.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\nrule_files: [{}]\nscrape_configs:\n  - job_name: lb\n    static_configs: [{{targets: ['127.0.0.1:9478']}}]\n",
            rules_dir().join("lb-rules.yml").display()
        ),
    )?;
    let log = std::fs::File::create(dir.0.join("prometheus.log"))?;
    let child = Command::new("nsenter")
        .arg(format!("--net=/var/run/netns/{}", ns.name()))
        .arg("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.0.join("data").display()
        ))
        .args(["--web.listen-address=127.0.0.1:9090", "--log.level=warn"])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .context("start prometheus")?;
    let _prom = Prometheus { child, _dir: dir };
    let within = Duration::from_secs(30);
    let series = |v: &Value| v["data"]["result"].as_array().cloned().unwrap_or_default();
    wait(
        &ns,
        "/api/v1/query?query=up%7Bjob%3D%22lb%22%7D",
        within,
        |v| series(v).iter().any(|s| s["value"][1] == "1"),
    )?;
    // The connection table's capacity as configured (conntrack_size).
    wait(
        &ns,
        &format!(
            "/api/v1/query?query={}",
            url(r#"lb_map_capacity{map="CONNTRACK"}"#)
        ),
        within,
        |v| series(v).iter().any(|s| s["value"][1] == "4096"),
    )?;
    let healthy = wait(&ns, "/api/v1/query?query=lb_backend_healthy", within, |v| {
        series(v).len() == 2 && series(v).iter().all(|s| s["value"][1] == "1")
    })?;
    for s in series(&healthy) {
        ensure!(s["metric"]["vip"] == "shop", "{s}");
    }
    wait(&ns, "/api/v1/query?query=lb_build_info", within, |v| {
        series(v)
            .iter()
            .any(|s| s["metric"]["version"] == env!("CARGO_PKG_VERSION"))
    })?;
    // The shipped rules loaded and evaluate without error against the
    // agent's real series; none fires for a healthy agent.
    let rules = wait(&ns, "/api/v1/rules", within, |v| {
        v["data"]["groups"][0]["rules"].as_array().is_some_and(|r| {
            r.len() == 9
                && r.iter()
                    .all(|r| r["lastEvaluation"] != "0001-01-01T00:00:00Z")
        })
    })?;
    for r in rules["data"]["groups"][0]["rules"]
        .as_array()
        .into_iter()
        .flatten()
    {
        ensure!(
            r["health"] == "ok",
            "rule {} is {}: {}",
            r["name"],
            r["health"],
            r["lastError"]
        );
        ensure!(
            r["state"] == "inactive",
            "rule {} is {} for a healthy agent",
            r["name"],
            r["state"]
        );
    }
    grafana_queries_are_valid_promql_on_lbd_metrics(&ns)
}

/// Percent-encodes a query for a URL.
fn url(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The shipped dashboard (`packaging/grafana/lb.json`): every panel's
/// query, with its variables at "All", is valid PromQL to the real
/// Prometheus; every `lb_` metric it names is one lbd defines; and the
/// traffic and health panels show this agent's series.
fn grafana_queries_are_valid_promql_on_lbd_metrics(ns: &Netns) -> Result<()> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/grafana/lb.json");
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(&path)?).context("lb.json")?;
    let defined = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../lb-userspace/src/daemon/metrics.rs"),
    )?;
    let mut with_data = 0;
    let panels = dashboard["panels"].as_array().context("panels")?;
    for p in panels {
        for t in p["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"].as_str().context("expr")?;
            let q = expr.replace("$instance", ".*").replace("$vip", ".*");
            for name in q
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| w.starts_with("lb_"))
            {
                ensure!(
                    defined.contains(&format!("\"{name}")),
                    "panel {}: lbd has no metric {name}",
                    p["title"]
                );
            }
            let v = query(ns, &format!("/api/v1/query?query={}", url(&q)))?;
            ensure!(v["status"] == "success", "panel {}: {q}: {v}", p["title"]);
            if v["data"]["result"]
                .as_array()
                .is_some_and(|r| !r.is_empty())
            {
                with_data += 1;
            }
        }
    }
    for title in [
        "Agents up",
        "Healthy backends",
        "Packets per second by VIP",
        "Connection table fill",
        "Packets by verdict, and the steps on the way",
    ] {
        let p = panels
            .iter()
            .find(|p| p["title"] == title)
            .with_context(|| title.to_string())?;
        let q = p["targets"][0]["expr"]
            .as_str()
            .context("expr")?
            .replace("$instance", ".*")
            .replace("$vip", ".*");
        wait(
            ns,
            &format!("/api/v1/query?query={}", url(&q)),
            Duration::from_secs(30),
            |v| {
                v["data"]["result"]
                    .as_array()
                    .is_some_and(|r| !r.is_empty())
            },
        )
        .with_context(|| format!("panel {title} shows nothing"))?;
    }
    println!(
        "    grafana: {} panels, every query valid PromQL, {with_data} with data now",
        panels.len()
    );
    Ok(())
}
