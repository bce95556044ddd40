//! Who may drive the agent: its HTTPS API reached from another namespace
//! (the client's) with the real lbctl and curl, token roles, tenants and
//! their quotas, and the audit log of every attempted change.

use std::{
    os::unix::fs::PermissionsExt as _,
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail, ensure};
use lb_tests::{lab::Lab, pki::Ca, procs::Lbd};

use crate::{API_PORT, Env, LB_ADDR, remote_lbctl, start_agent, text};

const TOKENS: &str = "tokens:
  - {id: viewer, token: viewer-token-0000001, role: read}
  - {id: oncall, token: oncall-token-0000002, role: operate}
  - {id: root, token: root-admin-token-003, role: admin}
  - {id: acme-ci, token: acme-admin-token-004, role: admin, tenant: acme}
  - {id: globex-ci, token: globex-admin-token05, role: admin, tenant: globex}
";

/// Two tenants: acme's shop (the lab's aws backends) and globex's portal
/// (gcp), beside nothing of the default tenant.
fn tenant_config(portal_backend: &str) -> String {
    format!(
        r#"node: {{name: sec-lb, cloud: aws, region: eu-west-1}}
interfaces: [{{name: lb0, xdp_mode: driver}}]
limits: {{max_vips: 8, max_backends: 64, ring_size: 251, conntrack_size: 65536}}
tenants:
  acme: {{max_vips: 2, max_backends: 2}}
  globex: {{max_vips: 1}}
vips:
  - name: shop
    tenant: acme
    address: 10.100.0.1
    port: 80
    health_check: {{type: tcp, interval: 300ms, timeout: 200ms, rise: 1, fall: 2}}
    backends:
      - {{address: 10.20.0.11, forwarding: l2-dsr, labels: {{cloud: aws, region: eu-west-1}}}}
      - {{address: 10.20.0.12, forwarding: l2-dsr, labels: {{cloud: aws, region: eu-west-1}}}}
  - name: portal
    tenant: globex
    address: 10.100.0.4
    port: 80
    health_check: {{type: tcp, interval: 300ms, timeout: 200ms, rise: 1, fall: 2}}
    backends:
      - {{address: {portal_backend}, forwarding: ipip, labels: {{cloud: gcp, region: europe-west1}}}}
"#
    )
}

/// The API block: HTTPS on the LB host's address, the tokens file, and
/// the client CA when `mtls`.
fn api_extra(env: &Env, mtls: bool) -> Result<String> {
    let tokens = env.file("tokens.yaml", TOKENS)?;
    let ca = if mtls {
        format!(", client_ca_file: {}", env.ca.cert.display())
    } else {
        String::new()
    };
    Ok(format!(
        "tcp_listen: \"{LB_ADDR}:{API_PORT}\", tokens_file: {}, tls: {{cert_file: {}, key_file: {}{ca}}}",
        tokens.display(),
        env.server.cert.display(),
        env.server.key.display()
    ))
}

fn token(env: &Env, name: &str) -> Result<PathBuf> {
    let t = TOKENS
        .lines()
        .find(|l| l.contains(&format!("id: {name},")))
        .and_then(|l| l.split("token: ").nth(1))
        .and_then(|r| r.split(',').next())
        .context("no such token")?;
    env.file(&format!("{name}.token"), t)
}

fn ca_args(env: &Env) -> Vec<String> {
    vec!["--ca-file".into(), env.ca.cert.display().to_string()]
}

/// `--ca-file` and a client certificate for mTLS.
fn mtls_args(env: &Env, client: &lb_tests::pki::Pair) -> Vec<String> {
    let mut a = ca_args(env);
    a.extend([
        "--client-cert".into(),
        client.cert.display().to_string(),
        "--client-key".into(),
        client.key.display().to_string(),
    ]);
    a
}

fn lbctl(lab: &Lab, env: &Env, who: &str, args: &[&str]) -> Result<std::process::Output> {
    let ca = ca_args(env);
    let ca: Vec<&str> = ca.iter().map(String::as_str).collect();
    remote_lbctl(lab, &token(env, who)?, &ca, args)
}

/// `curl` from the client namespace to the HTTPS API: (status, body).
fn https(
    lab: &Lab,
    env: &Env,
    who: Option<&str>,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Result<(u16, serde_json::Value)> {
    let mut cmd = Command::new("nsenter");
    cmd.arg(format!("--net=/var/run/netns/{}", lab.client.name()))
        .args([
            "curl",
            "-s",
            "--max-time",
            "5",
            "-o",
            "-",
            "-w",
            "\n%{http_code}",
        ])
        .arg("--cacert")
        .arg(&env.ca.cert)
        .args(["-X", method]);
    if let Some(w) = who {
        let t = std::fs::read_to_string(token(env, w)?)?;
        cmd.args(["-H", &format!("Authorization: Bearer {t}")]);
    }
    if let Some(b) = body {
        cmd.args(["-H", "content-type: application/json", "--data-binary", b]);
    }
    let out = cmd
        .arg(format!("https://{LB_ADDR}:{API_PORT}{path}"))
        .output()?;
    let s = String::from_utf8_lossy(&out.stdout);
    let (body, code) = s.rsplit_once('\n').context("curl output")?;
    Ok((
        code.trim().parse().unwrap_or(0),
        serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
    ))
}

fn vip_names(state: &serde_json::Value) -> Vec<String> {
    state["vips"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v["name"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fn state_of(agent: &Lbd, vip: &str, backend: &str) -> Result<String> {
    let s = agent.api_get("/v1/state")?;
    let v = s["vips"]
        .as_array()
        .and_then(|a| a.iter().find(|v| v["name"] == vip))
        .context("vip")?;
    let b = v["backends"]
        .as_array()
        .and_then(|a| a.iter().find(|b| b["address"] == backend))
        .context("backend")?;
    Ok(b["state"].as_str().unwrap_or("?").to_string())
}

fn tenant_agent(env: &mut Env, mtls: bool) -> Result<Lbd> {
    let extra = api_extra(env, mtls)?;
    let lab = env.lab()?;
    start_agent(lab, &tenant_config("10.32.1.2"), &extra, &[])
}

pub fn the_tcp_api_serves_https_with_its_certificate_and_nothing_in_clear(
    env: &mut Env,
) -> Result<()> {
    let _agent = tenant_agent(env, false)?;
    let lab = env.lab.as_ref().expect("built");
    let o = lbctl(lab, env, "oncall", &["whoami", "-o", "json"])?;
    ensure!(o.status.success(), "lbctl whoami over HTTPS: {}", text(&o));
    let me: serde_json::Value = serde_json::from_slice(&o.stdout)?;
    let me = &me[0];
    ensure!(
        me["who"] == "token:oncall" && me["role"] == "operate",
        "{me}"
    );
    // Plain HTTP to the same port is no API; a client that does not trust
    // the CA is refused by its own TLS.
    let plain = Command::new("nsenter")
        .arg(format!("--net=/var/run/netns/{}", lab.client.name()))
        .args([
            "curl",
            "-s",
            "--max-time",
            "3",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
        ])
        .arg(format!("http://{LB_ADDR}:{API_PORT}/v1/health"))
        .output()?;
    let untrusted = Command::new("nsenter")
        .arg(format!("--net=/var/run/netns/{}", lab.client.name()))
        .args(["curl", "-s", "--max-time", "3"])
        .arg(format!("https://{LB_ADDR}:{API_PORT}/v1/health"))
        .output()?;
    println!(
        "    lbctl whoami over HTTPS: {}; plain HTTP answered {:?}; curl without the CA: exit {}",
        me["who"],
        String::from_utf8_lossy(&plain.stdout),
        untrusted.status.code().unwrap_or(-1)
    );
    ensure!(
        String::from_utf8_lossy(&plain.stdout) != "200",
        "plain HTTP was served"
    );
    ensure!(
        untrusted.status.code() == Some(60),
        "an untrusted certificate was accepted"
    );
    Ok(())
}

pub fn with_mtls_a_client_without_a_certificate_is_refused(env: &mut Env) -> Result<()> {
    let _agent = tenant_agent(env, true)?;
    let lab = env.lab.as_ref().expect("built");
    let bare = lbctl(lab, env, "oncall", &["whoami"])?;
    ensure!(
        !bare.status.success(),
        "served without a client certificate: {}",
        text(&bare)
    );
    let args = mtls_args(env, &env.client);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let with = remote_lbctl(lab, &token(env, "oncall")?, &args, &["whoami"])?;
    println!(
        "    without a client certificate: {}    with one: {}",
        text(&bare).lines().next().unwrap_or(""),
        text(&with).lines().last().unwrap_or("")
    );
    ensure!(
        with.status.success(),
        "refused with a client certificate: {}",
        text(&with)
    );
    // Another CA's client certificate is no better than none.
    let other = Ca::new(&env.files.0, "rogue-ca")?.issue("rogue", "rogue", &["DNS:rogue"])?;
    let args = mtls_args(env, &other);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let rogue = remote_lbctl(lab, &token(env, "oncall")?, &args, &["whoami"])?;
    ensure!(
        !rogue.status.success(),
        "a rogue CA's certificate was accepted"
    );
    Ok(())
}

pub fn a_renewed_certificate_is_served_without_a_restart(env: &mut Env) -> Result<()> {
    let agent = tenant_agent(env, false)?;
    let pid = agent.pid();
    let lab = env.lab.as_ref().expect("built");
    // A new CA and certificate, written over the configured files.
    let dir = env.files.0.join("renewed");
    std::fs::create_dir_all(&dir)?;
    let ca2 = Ca::new(&dir, "api-ca-2026")?;
    let renewed = ca2.issue("api", "lbd", &[&format!("IP:{LB_ADDR}")])?;
    let (cert, key) = (std::fs::read(&renewed.cert)?, std::fs::read(&renewed.key)?);
    let old = (
        std::fs::read(&env.server.cert)?,
        std::fs::read(&env.server.key)?,
    );
    std::fs::write(&env.server.key, &key)?;
    std::fs::write(&env.server.cert, &cert)?;
    let args = ["--ca-file".to_string(), ca2.cert.display().to_string()];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let t0 = Instant::now();
    let result = loop {
        let o = remote_lbctl(lab, &token(env, "viewer")?, &args, &["whoami"])?;
        if o.status.success() {
            break Ok(t0.elapsed());
        }
        if t0.elapsed() > Duration::from_secs(10) {
            break Err(anyhow::anyhow!(
                "renewed certificate not served: {}",
                text(&o)
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let old_ca = lbctl(lab, env, "viewer", &["whoami"])?;
    // Put the scenarios' certificate back.
    std::fs::write(&env.server.key, &old.1)?;
    std::fs::write(&env.server.cert, &old.0)?;
    let took = result?;
    println!("    renewed certificate served after {took:.1?}, same agent (pid {pid:?})");
    ensure!(agent.pid() == pid, "the agent restarted");
    ensure!(
        !old_ca.status.success(),
        "the old certificate is still served"
    );
    Ok(())
}

pub fn a_read_token_cannot_drain_and_an_operator_cannot_replace_backends(
    env: &mut Env,
) -> Result<()> {
    let agent = tenant_agent(env, false)?;
    let lab = env.lab.as_ref().expect("built");
    let drain = ["drain", "shop", "10.20.0.11"];
    let ro = lbctl(lab, env, "viewer", &drain)?;
    ensure!(!ro.status.success(), "a read token drained: {}", text(&ro));
    ensure!(text(&ro).contains("needs operate"), "{}", text(&ro));
    ensure!(
        state_of(&agent, "shop", "10.20.0.11")? == "active",
        "changed by a refused drain"
    );
    let ops = lbctl(lab, env, "oncall", &drain)?;
    ensure!(
        ops.status.success(),
        "an operator could not drain: {}",
        text(&ops)
    );
    ensure!(state_of(&agent, "shop", "10.20.0.11")? == "draining");
    let list = r#"[{"address": "10.20.0.12", "forwarding": "l2-dsr", "labels": {"cloud": "aws", "region": "eu-west-1"}}]"#;
    let (code, body) = https(
        lab,
        env,
        Some("oncall"),
        "PUT",
        "/v1/vips/shop/backends",
        Some(list),
    )?;
    println!(
        "    read token drain: {}    operator drain: ok    operator backend list: {code} {}",
        text(&ro).trim(),
        body["error"]
    );
    ensure!(
        code == 403,
        "an operator replaced a backend list: {code} {body}"
    );
    let (code, _) = https(
        lab,
        env,
        Some("root"),
        "PUT",
        "/v1/vips/shop/backends",
        Some(list),
    )?;
    ensure!(code == 200, "admin could not replace the list: {code}");
    Ok(())
}

pub fn a_tenant_token_sees_only_its_vips_and_others_are_not_found(env: &mut Env) -> Result<()> {
    let _agent = tenant_agent(env, false)?;
    let lab = env.lab.as_ref().expect("built");
    let (_, acme) = https(lab, env, Some("acme-ci"), "GET", "/v1/state", None)?;
    let (_, globex) = https(lab, env, Some("globex-ci"), "GET", "/v1/state", None)?;
    let (_, root) = https(lab, env, Some("root"), "GET", "/v1/state", None)?;
    println!(
        "    acme sees {:?}, globex sees {:?}, root sees {:?}",
        vip_names(&acme),
        vip_names(&globex),
        vip_names(&root)
    );
    ensure!(vip_names(&acme) == ["shop"] && vip_names(&globex) == ["portal"]);
    ensure!(vip_names(&root).len() == 2);
    let other = lbctl(lab, env, "acme-ci", &["drain", "portal", "10.32.1.2"])?;
    let nobody = lbctl(lab, env, "acme-ci", &["drain", "nothing", "10.32.1.2"])?;
    ensure!(!other.status.success() && !nobody.status.success());
    let (a, b) = (text(&other), text(&nobody));
    println!("    acme drains globex's portal: {}", a.trim());
    ensure!(
        a.replace("portal", "nothing") == b,
        "another tenant's VIP answers unlike a missing one: {a:?} vs {b:?}"
    );
    let (code, _) = https(lab, env, Some("acme-ci"), "GET", "/v1/drill", None)?;
    ensure!(
        code == 403,
        "a tenant token reached a host-wide route: {code}"
    );
    Ok(())
}

pub fn a_push_over_a_tenant_quota_is_refused_with_the_field_and_nothing_changes(
    env: &mut Env,
) -> Result<()> {
    let agent = tenant_agent(env, false)?;
    let lab = env.lab.as_ref().expect("built");
    let b = |a: &str| {
        format!(
            r#"{{"address": "{a}", "forwarding": "l2-dsr", "labels": {{"cloud": "aws", "region": "eu-west-1"}}}}"#
        )
    };
    let three = format!(
        "[{}, {}, {}]",
        b("10.20.0.11"),
        b("10.20.0.12"),
        b("10.20.0.13")
    );
    let before = agent.api_get("/v1/state")?["vips"].clone();
    let (code, body) = https(
        lab,
        env,
        Some("acme-ci"),
        "PUT",
        "/v1/vips/shop/backends",
        Some(&three),
    )?;
    println!(
        "    3 backends for acme (quota 2): {code} {}",
        body["error"]
    );
    ensure!(code == 400, "over quota accepted: {code} {body}");
    ensure!(
        body["errors"]
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["path"] == "tenants.acme.max_backends")),
        "{body}"
    );
    ensure!(
        agent.api_get("/v1/state")?["vips"] == before,
        "state changed"
    );
    let two = format!("[{}, {}]", b("10.20.0.11"), b("10.20.0.12"));
    let (code, body) = https(
        lab,
        env,
        Some("acme-ci"),
        "PUT",
        "/v1/vips/shop/backends",
        Some(&two),
    )?;
    ensure!(code == 200, "within quota refused: {code} {body}");
    Ok(())
}

pub fn a_config_sharing_a_backend_across_tenants_is_rejected_and_the_running_state_kept(
    env: &mut Env,
) -> Result<()> {
    let agent = tenant_agent(env, false)?;
    let before = agent.api_get("/v1/state")?["vips"].clone();
    // globex's portal pointed at acme's backend.
    agent.write_config(&tenant_config("10.20.0.11"))?;
    agent.hup();
    let s = agent.wait_for("rejected reload", Duration::from_secs(5), |s| {
        s["reloads"]["rejected"].as_u64() == Some(1)
    })?;
    ensure!(s["vips"] == before, "running state changed");
    let events = agent.api_get("/v1/events")?;
    let why = events
        .as_array()
        .and_then(|e| e.iter().rev().find(|e| e["kind"] == "config_rejected"))
        .map(|e| e["reason"].as_str().unwrap_or("").to_string())
        .context("no config_rejected event")?;
    println!("    {why}");
    ensure!(
        why.contains("vips[1].backends[0].address") && why.contains("tenant \"acme\""),
        "{why}"
    );
    Ok(())
}

fn audit(agent: &Lbd) -> Result<Vec<serde_json::Value>> {
    let file = agent.state_dir().join("audit.log");
    let v = agent.lbctl_json(&["audit", "--file", &file.display().to_string()])?;
    Ok(v.as_array().cloned().unwrap_or_default())
}

pub fn every_change_accepted_or_refused_is_in_the_audit_log_with_who_and_from_where(
    env: &mut Env,
) -> Result<()> {
    let agent = tenant_agent(env, false)?;
    let lab = env.lab.as_ref().expect("built");
    lbctl(lab, env, "viewer", &["drain", "shop", "10.20.0.11"])?;
    lbctl(lab, env, "oncall", &["drain", "shop", "10.20.0.11"])?;
    lbctl(lab, env, "acme-ci", &["weight", "portal", "10.32.1.2", "5"])?;
    https(lab, env, None, "POST", "/v1/node/drain", None)?;
    let local = agent.lbctl(&["undrain", "shop", "10.20.0.11"])?;
    ensure!(local.status.success(), "{}", text(&local));
    agent.write_config(&tenant_config("10.20.0.11"))?;
    agent.hup();
    agent.wait_for("rejected reload", Duration::from_secs(5), |s| {
        s["reloads"]["rejected"].as_u64() == Some(1)
    })?;
    let log = audit(&agent)?;
    for r in &log {
        println!(
            "    {} {:<18} {:<5} {:<15} {:<50} {}",
            r["time"].as_str().unwrap_or(""),
            r["who"].as_str().unwrap_or(""),
            r["source"].as_str().unwrap_or(""),
            r["from"].as_str().unwrap_or("-"),
            r["action"].as_str().unwrap_or(""),
            r["result"].as_str().unwrap_or("")
        );
    }
    let has = |who: &str, action: &str, result: &str| {
        log.iter().any(|r| {
            r["who"].as_str().is_some_and(|w| w.starts_with(who))
                && r["action"].as_str().is_some_and(|a| a.contains(action))
                && r["result"] == result
        })
    };
    let from_client = log
        .iter()
        .filter(|r| r["source"] == "api" && r["who"] == "token:oncall")
        .all(|r| {
            r["from"]
                .as_str()
                .is_some_and(|f| f.starts_with("10.10.0."))
        });
    ensure!(has(
        "token:viewer",
        "POST /v1/vips/shop/backends/10.20.0.11/drain",
        "rejected"
    ));
    ensure!(has(
        "token:oncall",
        "POST /v1/vips/shop/backends/10.20.0.11/drain",
        "accepted"
    ));
    ensure!(has(
        "token:acme-ci",
        "/v1/vips/portal/backends/10.32.1.2/weight",
        "rejected"
    ));
    ensure!(has("anonymous", "POST /v1/node/drain", "rejected"));
    ensure!(has(
        "uid:0 pid:",
        "POST /v1/vips/shop/backends/10.20.0.11/undrain",
        "accepted"
    ));
    ensure!(has("file:", "reload", "rejected"));
    ensure!(from_client, "API records without the client's address");
    let rejected = agent.lbctl_json(&[
        "audit",
        "--rejected",
        "--file",
        &agent.state_dir().join("audit.log").display().to_string(),
    ])?;
    ensure!(
        rejected
            .as_array()
            .is_some_and(|r| r.iter().all(|r| r["result"] == "rejected"))
    );
    Ok(())
}

pub fn the_unix_socket_stays_0600_and_names_its_peer(env: &mut Env) -> Result<()> {
    let agent = tenant_agent(env, false)?;
    let mode = std::fs::metadata(&agent.socket)?.permissions().mode() & 0o777;
    let me = agent.lbctl_json(&["whoami"])?;
    println!("    socket mode {mode:o}; whoami: {}", me[0]["who"]);
    ensure!(mode == 0o600, "socket mode {mode:o}");
    ensure!(
        me[0]["who"]
            .as_str()
            .is_some_and(|w| w.starts_with("uid:0 pid:"))
            && me[0]["role"] == "admin",
        "{me}"
    );
    Ok(())
}

pub fn a_bad_tokens_file_stops_the_start_with_the_field_path(env: &mut Env) -> Result<()> {
    let bad = env.file(
        "bad-tokens.yaml",
        "tokens:\n  - {id: x, token: short, role: read}\n  - {id: y, token: long-enough-token-9, role: read, tenant: nope}\n",
    )?;
    let extra = format!(
        "tcp_listen: \"{LB_ADDR}:{API_PORT}\", tokens_file: {}, tls: {{cert_file: {}, key_file: {}}}",
        bad.display(),
        env.server.cert.display(),
        env.server.key.display()
    );
    let lab = env.lab()?;
    let err = match Lbd::start_with(&lab.lb, &crate::datapath::config(""), &[], &extra) {
        Ok(_) => bail!("lbd started with a bad tokens file"),
        Err(e) => format!("{e:#}"),
    };
    let line = err
        .lines()
        .find(|l| l.contains("tokens_file"))
        .unwrap_or("")
        .trim()
        .to_string();
    println!("    {line}");
    ensure!(
        line.contains("tokens[0].token") && line.contains("tokens[1].tenant"),
        "{err}"
    );
    ensure!(!err.contains("exit status: 101"), "{err}");
    Ok(())
}
