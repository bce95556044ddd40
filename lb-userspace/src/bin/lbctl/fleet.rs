//! `lbctl fleet`: every agent published in etcd, and where they disagree.

use lb::daemon::{
    etcd::{
        Client,
        fleet::{AgentView, Disagreement, disagreements},
    },
    state::unix_now,
};
use serde::Serialize;

use crate::{
    Ctx, Fail,
    args::Output,
    fail,
    table::{self, Row},
};

#[derive(Serialize)]
struct Fleet {
    agents: Vec<AgentView>,
    disagreements: Vec<Disagreement>,
}

/// One VIP as one agent sees it.
#[derive(Serialize)]
struct VipRow {
    node: String,
    age_secs: f64,
    vip: String,
    digest: String,
    healthy: String,
    panic: bool,
    announced: String,
}

impl Row for VipRow {
    const HEADERS: &'static [&'static str] = &[
        "NODE",
        "AGE",
        "VIP",
        "DIGEST",
        "HEALTHY",
        "PANIC",
        "ANNOUNCED",
    ];
    fn cells(&self) -> Vec<String> {
        vec![
            self.node.clone(),
            format!("{:.0}s", self.age_secs),
            self.vip.clone(),
            self.digest.clone(),
            self.healthy.clone(),
            if self.panic { "PANIC" } else { "-" }.into(),
            self.announced.clone(),
        ]
    }
}

pub async fn show(
    ctx: &Ctx<'_>,
    endpoints: &[String],
    prefix: &str,
    security: &lb::daemon::etcd::EtcdSecurity,
) -> Result<(), Fail> {
    let key = format!("{}/agents/", prefix.trim_end_matches('/'));
    let mut last_error = String::new();
    for endpoint in endpoints {
        let read = async {
            Client::connect(endpoint, security)
                .await?
                .range_prefix(&key)
                .await
        };
        match read.await {
            Ok((_, kvs)) => {
                let mut agents: Vec<AgentView> = kvs
                    .iter()
                    .filter_map(|kv| serde_json::from_slice(&kv.value).ok())
                    .collect();
                agents.sort_by(|a, b| a.node.cmp(&b.node));
                let fleet = Fleet {
                    disagreements: disagreements(&agents),
                    agents,
                };
                print(ctx, &fleet);
                return Ok(());
            }
            Err(e) => last_error = e.to_string(),
        }
    }
    Err(fail(3, format!("no etcd endpoint answered: {last_error}")))
}

fn print(ctx: &Ctx<'_>, fleet: &Fleet) {
    if ctx.output() == Output::Json {
        table::print_json(fleet);
        return;
    }
    let now = unix_now();
    let rows: Vec<VipRow> = fleet
        .agents
        .iter()
        .flat_map(|a| {
            a.vips.iter().map(move |v| VipRow {
                node: a.node.clone(),
                age_secs: (now - a.time).max(0.0),
                vip: v.name.clone(),
                digest: v.digest.clone(),
                healthy: format!(
                    "{}/{}",
                    v.healthy.values().filter(|u| **u).count(),
                    v.healthy.len()
                ),
                panic: v.panic,
                announced: match (v.announced, a.drained) {
                    (_, true) => "drained".into(),
                    (Some(true), _) => "yes".into(),
                    (Some(false), _) => "no".into(),
                    (None, _) => "-".into(),
                },
            })
        })
        .collect();
    table::print(Output::Table, &rows);
    if fleet.disagreements.is_empty() {
        lb::outln!(
            "{} agents agree on every table, health view and announcement",
            fleet.agents.len()
        );
        return;
    }
    lb::outln!("disagreements:");
    for d in &fleet.disagreements {
        let views: Vec<String> = d.views.iter().map(|(n, v)| format!("{n}={v}")).collect();
        lb::outln!("  {} {}: {}", d.vip, d.about, views.join(" "));
    }
}
