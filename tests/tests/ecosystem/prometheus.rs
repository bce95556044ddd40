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
    ensure!(check.contains("SUCCESS: 8 rules found"), "{check}");
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

pub fn a_real_prometheus_scrapes_lbd_and_evaluates_the_shipped_rules(_: &mut Env) -> Result<()> {
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
            r.len() == 8
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
    Ok(())
}
