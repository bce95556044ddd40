//! Real BIRD 2 processes in test namespaces (Debian `bird2`): the lab
//! router's and each LB host's, with the configurations an operator would
//! write, started and stopped by the tests.

use std::{
    fs,
    net::Ipv4Addr,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

use crate::{netns::Netns, procs::TempDir};

/// BFD timers between LB hosts and the router: a dead host is routed
/// around after 3 × 100 ms.
const BFD: &str = "min rx interval 100 ms; min tx interval 100 ms; multiplier 3;";
/// BGP timers (the lab's: reconnect fast after a host comes back).
const BGP_TIMERS: &str =
    "hold time 6; keepalive time 2; connect retry time 1; error wait time 1, 2;";
pub const ROUTER_AS: u32 = 65000;
pub const LB_AS: u32 = 65001;

pub struct Bird {
    child: Option<Child>,
    netns: String,
    pub dir: TempDir,
    pub socket: PathBuf,
    config: String,
}

impl Bird {
    /// Starts BIRD in `ns` with `config` and waits until it answers.
    pub fn start(ns: &Netns, tag: &str, config: &str) -> Result<Self> {
        let dir = TempDir::new(tag)?;
        let mut b = Self {
            child: None,
            netns: ns.name().into(),
            socket: dir.0.join("bird.ctl"),
            dir,
            config: config.into(),
        };
        b.spawn()?;
        Ok(b)
    }

    /// The file an LB host's BIRD includes and lbd writes.
    pub fn include_file(&self) -> PathBuf {
        self.dir.0.join("lb-vips.conf")
    }

    /// (Re)starts the process with the same files.
    pub fn spawn(&mut self) -> Result<()> {
        let conf = self.dir.0.join("bird.conf");
        fs::write(
            &conf,
            self.config
                .replace("@DIR@", &self.dir.0.display().to_string()),
        )?;
        let include = self.include_file();
        if !include.exists() {
            // What lbd writes with nothing announced: BIRD needs the file
            // to parse its configuration.
            fs::write(
                &include,
                lb::daemon::bird::render("lb_vips", &Default::default()),
            )?;
        }
        let log = fs::File::create(self.dir.0.join("bird.log"))?;
        let child = Command::new("nsenter")
            .arg(format!("--net=/var/run/netns/{}", self.netns))
            .args(["bird", "-f", "-c"])
            .arg(&conf)
            .arg("-s")
            .arg(&self.socket)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("spawn bird (Debian package bird2)")?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self
                .birdc("show status")
                .is_ok_and(|o| o.contains("Daemon is up"))
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!(
            "bird did not come up: {}",
            fs::read_to_string(self.dir.0.join("bird.log")).unwrap_or_default()
        )
    }

    pub fn birdc(&self, cmd: &str) -> Result<String> {
        let out = Command::new("birdc")
            .arg("-s")
            .arg(&self.socket)
            .args(cmd.split_whitespace())
            .output()
            .context("birdc")?;
        anyhow::ensure!(
            out.status.success(),
            "birdc {cmd}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Kills BIRD (a host that dies takes its BIRD with it).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Bird {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The router: one BGP session per LB host, BFD, and every equal route
/// merged into one multipath kernel route (ECMP).
pub fn router_config(lb_hosts: &[Ipv4Addr]) -> String {
    let mut c = format!(
        "router id 10.20.0.1;\n\
         protocol device {{}}\n\
         protocol kernel {{ ipv4 {{ export all; }}; merge paths on; }}\n\
         protocol bfd {{ interface \"br-lb\" {{ {BFD} }}; }}\n\
         template bgp lbhost {{ local 10.20.0.1 as {ROUTER_AS}; ipv4 {{ import all; export none; }}; bfd on; {BGP_TIMERS} }}\n"
    );
    for (i, a) in lb_hosts.iter().enumerate() {
        c.push_str(&format!(
            "protocol bgp lb{} from lbhost {{ neighbor {a} as {LB_AS}; }}\n",
            i + 1
        ));
    }
    c
}

/// An LB host: its BGP session to the router exports exactly the static
/// protocols lbd writes into the include file.
pub fn lb_host_config(address: Ipv4Addr) -> String {
    format!(
        "router id {address};\n\
         protocol device {{}}\n\
         include \"@DIR@/lb-vips.conf\";\n\
         protocol bfd {{ interface \"lb0\" {{ {BFD} }}; }}\n\
         protocol bgp uplink {{ local {address} as {LB_AS}; neighbor 10.20.0.1 as {ROUTER_AS}; \
         ipv4 {{ import none; export where proto = \"lb_vips4\"; }}; bfd on; {BGP_TIMERS} }}\n"
    )
}
