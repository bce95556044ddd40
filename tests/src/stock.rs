//! Debian's own servers on a lab backend — `nginx` (nginx-light) answering
//! with the backend's name, `iperf3 -s` — and its stock
//! clients (`curl`, `iperf3 -c`) in the client namespace: what an operator
//! would put behind the balancer to try it, instead of the project's
//! `lab-server`. Every server is killed when its guard drops.

use std::{
    net::SocketAddr,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

use crate::{netns::Netns, procs::TempDir};

/// iperf3's default port.
pub const IPERF3_PORT: u16 = 5201;

/// A server process in a namespace, killed on drop.
pub struct Server {
    child: Child,
    what: String,
    _dir: Option<TempDir>,
}

impl Server {
    /// nginx in the foreground, listening on every address of `ns` (the
    /// VIPs on `lo` included) on `port`, v4 and v6, answering every
    /// request with `name` and a newline. Its pid file, logs and temp
    /// directories live in a scratch directory, so several run at once.
    pub fn nginx(ns: &Netns, name: &str, port: u16) -> Result<Self> {
        let dir = TempDir::new(&format!("nginx-{name}"))?;
        let d = dir.0.display();
        let conf = format!(
            "daemon off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
             events {{ worker_connections 128; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
             \x20 fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
             \x20 server {{\n    listen {port};\n    listen [::]:{port} ipv6only=on;\n\
             \x20   location / {{ default_type text/plain; return 200 \"{name}\\n\"; }}\n  }}\n}}\n"
        );
        let path = dir.0.join("nginx.conf");
        std::fs::write(&path, conf)?;
        let child = ns
            .command("nginx")
            .arg("-c")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting nginx (Debian's nginx-light; `cargo xtask setup` installs it)")?;
        let server = Self {
            child,
            what: format!("nginx on {name}"),
            _dir: Some(dir),
        };
        server.wait_listening(ns, port)?;
        Ok(server)
    }

    /// `iperf3 -s` on `port`, every address of `ns`.
    pub fn iperf3(ns: &Netns, name: &str, port: u16) -> Result<Self> {
        let child = ns
            .command("iperf3")
            .args(["-s", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting iperf3 -s (`cargo xtask setup` installs iperf3)")?;
        let server = Self {
            child,
            what: format!("iperf3 -s on {name}"),
            _dir: None,
        };
        server.wait_listening(ns, port)?;
        Ok(server)
    }

    fn wait_listening(&self, ns: &Netns, port: u16) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if ns
                .exec("ss", &["-Hltn", &format!("sport = :{port}")])
                .is_ok_and(|o| !o.trim().is_empty())
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!("{} is not listening on port {port}", self.what)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `curl` in `ns`: the body of `GET http://dst/`, bounded in time.
pub fn curl(ns: &Netns, dst: SocketAddr) -> Result<String> {
    let url = format!("http://{dst}/");
    let out = Command::new("ip")
        .args(["netns", "exec", ns.name(), "curl", "-sS", "--max-time", "5"])
        .arg(&url)
        .output()
        .context("running curl")?;
    if !out.status.success() {
        bail!(
            "curl {url}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// What one `iperf3 -c` run reported.
#[derive(Debug)]
pub struct Iperf3Run {
    /// Bits per second the receiver counted.
    pub received_bps: f64,
    pub received_bytes: u64,
    pub retransmits: u64,
}

/// `iperf3 -c dst -t secs -J` in `ns` (client to server, one stream).
pub fn iperf3(ns: &Netns, dst: SocketAddr, secs: u32) -> Result<Iperf3Run> {
    let out = Command::new("ip")
        .args(["netns", "exec", ns.name(), "iperf3", "-J", "-c"])
        .arg(dst.ip().to_string())
        .args(["-p", &dst.port().to_string(), "-t", &secs.to_string()])
        .args(["--connect-timeout", "3000"])
        .output()
        .context("running iperf3 -c")?;
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("iperf3 -c {dst}: {}", String::from_utf8_lossy(&out.stderr)))?;
    if let Some(e) = report["error"].as_str() {
        bail!("iperf3 -c {dst}: {e}");
    }
    let end = &report["end"];
    Ok(Iperf3Run {
        received_bps: end["sum_received"]["bits_per_second"]
            .as_f64()
            .context("end.sum_received.bits_per_second")?,
        received_bytes: end["sum_received"]["bytes"]
            .as_u64()
            .context("end.sum_received.bytes")?,
        retransmits: end["sum_sent"]["retransmits"].as_u64().unwrap_or(0),
    })
}
