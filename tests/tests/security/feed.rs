//! The etcd feed as production runs it: etcd serving HTTPS, requiring
//! client certificates, with authentication on; the agent connects as its
//! own user. Without the user, with a wrong password or without a client
//! certificate, etcd refuses it and the agent says why.

use std::time::Duration;

use anyhow::{Result, ensure};
use lb_tests::procs::Etcd;

use crate::{Env, datapath::config, start_agent};

const PORT: u16 = 23795;

const FED: &str = r#"{"name": "fed", "address": "10.100.0.3", "port": 80,
  "backends": [{"address": "10.32.1.2", "forwarding": "ipip", "labels": {"cloud": "gcp", "region": "europe-west1"}}]}"#;

fn etcd_status(s: &serde_json::Value) -> (bool, String) {
    (
        s["etcd"]["connected"] == true,
        s["etcd"]["last_error"].as_str().unwrap_or("").to_string(),
    )
}

pub fn the_feed_reads_etcd_over_tls_as_its_user(env: &mut Env) -> Result<()> {
    let lab = env.lab()?;
    let etcd = Etcd::start(&lab.lb, PORT)?;
    etcd.put("/lb/vips/fed", FED)?;
    let mut args = etcd.lbd_args();
    args.extend(["--etcd-prefix".into(), "/lb".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let agent = start_agent(lab, &config(""), "", &args)?;
    // The feed says it is in sync just after it applied what it read.
    let s = agent.wait_for("the etcd VIP, in sync", Duration::from_secs(10), |s| {
        s["etcd"]["connected"] == true
            && s["vips"]
                .as_array()
                .is_some_and(|v| v.iter().any(|v| v["name"] == "fed"))
    })?;
    println!(
        "    {} over TLS as user {}: connected {}, VIP fed loaded",
        etcd.url(),
        Etcd::USER,
        s["etcd"]["connected"]
    );
    ensure!(s["etcd"]["connected"] == true);
    // The agent also publishes its view, as its user.
    let published = (0..50).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        etcd.get("/lb/agents/sec-lb").ok().flatten().is_some()
    });
    ensure!(published, "the agent's view was not published");
    // A bad value is refused and the key keeps its good one; both changes
    // are in the audit log, as etcd's.
    etcd.put(
        "/lb/vips/fed",
        r#"{"name": "fed", "address": "10.100.0.3", "port": 99999}"#,
    )?;
    let s = agent.wait_for("the refusal", Duration::from_secs(10), |s| {
        s["etcd"]["rejected_keys"]["/lb/vips/fed"].is_string()
    })?;
    ensure!(
        s["vips"]
            .as_array()
            .is_some_and(|v| v.iter().any(|v| v["name"] == "fed"))
    );
    let file = agent.state_dir().join("audit.log").display().to_string();
    let log = agent.lbctl_json(&["audit", "--file", &file])?;
    let etcd_records: Vec<_> = log
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["source"] == "etcd")
        .collect();
    for r in &etcd_records {
        println!(
            "    audit: {} {} {} {}",
            r["who"].as_str().unwrap_or(""),
            r["action"].as_str().unwrap_or(""),
            r["result"].as_str().unwrap_or(""),
            r["detail"].as_str().unwrap_or("")
        );
    }
    let has = |result: &str| {
        etcd_records
            .iter()
            .any(|r| r["action"] == "put /lb/vips/fed" && r["result"] == result)
    };
    ensure!(
        has("accepted") && has("rejected"),
        "etcd changes not audited: {log}"
    );
    Ok(())
}

pub fn etcd_refuses_an_agent_without_a_user_or_with_a_wrong_password(env: &mut Env) -> Result<()> {
    let wrong = env.file("wrong.password", "not-the-password")?;
    let lab = env.lab()?;
    let etcd = Etcd::start(&lab.lb, PORT)?;
    etcd.put("/lb/vips/fed", FED)?;
    // A tool with the client certificate but no user is nobody to etcd.
    let anonymous = etcd.try_without_user(&["get", "/lb/vips/fed"]);
    ensure!(anonymous.is_err(), "etcd served a client without a user");
    println!("    etcdctl without a user: {}", anonymous.unwrap_err());
    for (what, drop_flag, password) in [
        ("no user", true, None),
        ("a wrong password", false, Some(&wrong)),
    ] {
        let mut args = etcd.lbd_args();
        if drop_flag {
            // Remove --etcd-user and --etcd-password-file.
            let i = args
                .iter()
                .position(|a| a == "--etcd-user")
                .expect("present");
            args.drain(i..i + 4);
        }
        if let Some(file) = password {
            let i = args
                .iter()
                .position(|a| a == "--etcd-password-file")
                .expect("present");
            args[i + 1] = file.display().to_string();
        }
        args.extend(["--etcd-prefix".into(), "/lb".into()]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let agent = start_agent(lab, &config(""), "", &args)?;
        let s = agent.wait_for("an etcd error", Duration::from_secs(10), |s| {
            !etcd_status(s).1.is_empty()
        })?;
        let (connected, error) = etcd_status(&s);
        println!("    {what}: connected {connected}: {error}");
        ensure!(!connected, "{what}: connected");
        let names: Vec<_> = s["vips"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|v| v["name"].clone())
            .collect();
        ensure!(
            !names.contains(&"fed".into()),
            "{what}: the etcd VIP was read"
        );
        let want = if drop_flag {
            "permission denied"
        } else {
            "authentication failed"
        };
        ensure!(error.contains(want), "{what}: {error}");
    }
    Ok(())
}

pub fn etcd_refuses_an_agent_without_a_client_certificate(env: &mut Env) -> Result<()> {
    let lab = env.lab()?;
    let etcd = Etcd::start(&lab.lb, PORT)?;
    let mut args = etcd.lbd_args();
    let i = args
        .iter()
        .position(|a| a == "--etcd-cert-file")
        .expect("present");
    args.drain(i..i + 4);
    args.extend(["--etcd-prefix".into(), "/lb".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let agent = start_agent(lab, &config(""), "", &args)?;
    let s = agent.wait_for("an etcd error", Duration::from_secs(15), |s| {
        !etcd_status(s).1.is_empty()
    })?;
    let (connected, error) = etcd_status(&s);
    println!("    without a client certificate: connected {connected}: {error}");
    ensure!(!connected && !error.is_empty());
    Ok(())
}
