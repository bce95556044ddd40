//! Agent resident memory and kernel map memory for a given scale.

use std::process::Command;

use anyhow::{Context as _, Result};
use serde::Serialize;

use crate::{netns::Netns, procs::Lbd};

#[derive(Clone, Debug, Serialize)]
pub struct MemoryFigure {
    pub vips: usize,
    pub backends_per_vip: usize,
    pub agent_rss_mib: f64,
    /// Private memory only (RssAnon).
    pub agent_anon_mib: f64,
    pub maps_mib: f64,
    /// The largest maps: (name, MiB).
    pub biggest: Vec<(String, f64)>,
}

fn config(vips: usize, per_vip: usize) -> String {
    let mut c = format!(
        "node: {{name: mem}}\ninterfaces: [{{name: lo}}]\nlimits: {{max_vips: {}, max_backends: {}, ring_size: 65537}}\nvips:\n",
        vips.next_power_of_two().max(8),
        (vips * per_vip).next_power_of_two()
    );
    for v in 0..vips {
        c.push_str(&format!(
            "  - {{name: v{v}, address: 10.{}.{}.1, port: 80, health_check: {{type: none}}, backends: [",
            100 + v / 250,
            v % 250
        ));
        let list: Vec<String> = (0..per_vip)
            .map(|b| {
                format!(
                    "{{address: 172.{}.{}.{}}}",
                    16 + v % 16,
                    b / 250,
                    b % 250 + 1
                )
            })
            .collect();
        c.push_str(&list.join(", "));
        c.push_str("]}\n");
    }
    c
}

pub fn measure(vips: usize, per_vip: usize) -> Result<MemoryFigure> {
    let ns = Netns::new("mem")?;
    let agent = Lbd::start(&ns, &config(vips, per_vip), &[])?;
    let pid = agent.pid().context("lbd pid")?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> Result<f64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            .with_context(|| format!("{name} in /proc/{pid}/status"))
    };
    let rss_kib = field("VmRSS:")?;
    // The agent's own heap and stacks; RSS also counts the pages of the
    // mmapped ring map it has touched, which are the kernel's map memory
    // (counted below), not extra memory.
    let anon_kib = field("RssAnon:")?;
    // Every map the attached program uses, pinned or not.
    let prog = Command::new("bpftool")
        .args(["prog", "show", "pinned"])
        .arg(agent.pin_path.join("prog"))
        .arg("-j")
        .output()?;
    let prog: serde_json::Value =
        serde_json::from_slice(&prog.stdout).context("bpftool prog show")?;
    let mut total = 0.0;
    let mut maps = vec![];
    for id in prog["map_ids"].as_array().context("map_ids")? {
        let m = Command::new("bpftool")
            .args(["map", "show", "id", &id.to_string(), "-j"])
            .output()?;
        let m: serde_json::Value = serde_json::from_slice(&m.stdout)?;
        let bytes = m["bytes_memlock"].as_f64().unwrap_or(0.0);
        total += bytes;
        maps.push((
            m["name"].as_str().unwrap_or("?").to_string(),
            bytes / (1 << 20) as f64,
        ));
    }
    maps.sort_by(|a, b| b.1.total_cmp(&a.1));
    maps.truncate(4);
    Ok(MemoryFigure {
        vips,
        backends_per_vip: per_vip,
        agent_rss_mib: rss_kib / 1024.0,
        agent_anon_mib: anon_kib / 1024.0,
        maps_mib: total / (1 << 20) as f64,
        biggest: maps,
    })
}
