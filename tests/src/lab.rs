//! The network-namespace lab (picture in docs/TESTING.md): a client, a
//! router, the LB, and six backends in three "clouds". Everything is
//! removed when the `Lab` is dropped, also when a test fails.
//!
//! - aws (the LB's local cloud): a1, a2 on the LB's own segment (L2 DSR);
//! - gcp: b1, b2 behind the router (IPIP / IPv6-in-IPv6);
//! - azure: c1, c2 behind the router (GUE).
//!
//! Backends run the project's decap program (pinned under a per-lab bpffs
//! directory) and `lab-server`, which answers with the backend's name, on
//! every address including the VIPs (configured on `lo`), and reply to
//! clients directly (DSR).

use std::{
    collections::BTreeMap,
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use anyhow::{Context as _, Result, bail};
use socket2::{Domain, Protocol, Socket, Type};

use crate::{
    netns::{Netns, veth},
    procs::{Lbd, bin, json_output},
};

/// The lab's configuration, `examples/lab.yaml`, as shipped.
pub fn lab_config() -> Result<String> {
    Ok(std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/lab.yaml"
    ))?)
}

/// Every backend of the lab's VIPs (v4).
pub const LAB_BACKENDS: [&str; 6] = [
    "10.20.0.11",
    "10.20.0.12",
    "10.32.1.2",
    "10.32.2.2",
    "10.33.1.2",
    "10.33.2.2",
];

/// VIP addresses every backend serves (on `lo`).
pub const VIPS_V4: &[&str] = &[
    "10.100.0.1",
    "10.100.0.2",
    "10.100.0.3",
    "10.100.0.4",
    "10.100.0.5",
];
pub const VIP_V6: &str = "fd00:100::1";

pub struct Backend {
    pub name: &'static str,
    pub cloud: &'static str,
    pub ns: Netns,
    pub v4: Ipv4Addr,
    pub v6: Ipv6Addr,
    server: Option<Child>,
}

pub struct Lab {
    pub client: Netns,
    pub router: Netns,
    /// The first LB host (10.20.0.2).
    pub lb: Netns,
    /// The other LB hosts of a fleet lab (10.20.0.3, …).
    pub more_lbs: Vec<Netns>,
    pub backends: Vec<Backend>,
    /// bpffs directory of the backends' pinned decap links.
    decap_pins: PathBuf,
    /// The XDP_PASS program on the router's end of the LB link (attached
    /// while this lives).
    _xdp_pass: aya::Ebpf,
}

/// Client source addresses (on the client's interface).
pub fn client_v4(i: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 10, 0, 10 + i)
}
pub fn client_v6(i: u8) -> Ipv6Addr {
    Ipv6Addr::new(0xfd10, 0, 0, 0, 0, 0, 0, 0x10 + i as u16)
}

const CLIENTS: u8 = 8;

fn sh(ns: &Netns, cmd: &str) -> Result<()> {
    let args: Vec<&str> = cmd.split_whitespace().collect();
    ns.ip(&args)
        .map(|_| ())
        .with_context(|| format!("ip -n {} {cmd}", ns.name()))
}

fn sysctl(ns: &Netns, kv: &str) -> Result<()> {
    ns.exec("sysctl", &["-qw", kv]).map(|_| ())
}

/// How many LB hosts the lab has and how the router reaches the VIPs.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    /// LB hosts on the LB segment: `lb` (10.20.0.2), then `more_lbs`
    /// (10.20.0.3, .4, …).
    pub lb_hosts: usize,
    /// A static route from the router to the VIPs through the first LB
    /// host; without it the routes come from BGP (the fleet).
    pub static_vip_route: bool,
}

impl Default for Shape {
    fn default() -> Self {
        Self {
            lb_hosts: 1,
            static_vip_route: true,
        }
    }
}

/// The address of LB host `i` (0-based) on the LB segment.
pub fn lb_host_v4(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 20, 0, 2 + i as u8)
}

/// The router's port towards LB host `i`.
pub fn lb_host_port(i: usize) -> String {
    if i == 0 {
        "p-lb".into()
    } else {
        format!("p-lb{}", i + 1)
    }
}

impl Lab {
    pub fn build() -> Result<Self> {
        Self::build_with(Shape::default())
    }

    pub fn build_with(shape: Shape) -> Result<Self> {
        crate::netns::require_root()?;
        let client = Netns::new("client")?;
        let router = Netns::new("router")?;
        let lbs: Vec<Netns> = (0..shape.lb_hosts.max(1))
            .map(|i| {
                Netns::new(&if i == 0 {
                    "lb".into()
                } else {
                    format!("lb{}", i + 1)
                })
            })
            .collect::<Result<_>>()?;
        for ns in [&client, &router].into_iter().chain(&lbs) {
            sysctl(ns, "net.ipv6.conf.all.accept_dad=0")?;
            sysctl(ns, "net.ipv6.conf.default.accept_dad=0")?;
        }
        sysctl(&router, "net.ipv4.ip_forward=1")?;
        sysctl(&router, "net.ipv6.conf.all.forwarding=1")?;
        sysctl(&router, "net.ipv4.conf.all.rp_filter=0")?;
        sysctl(&router, "net.ipv4.conf.default.rp_filter=0")?;
        // ECMP over the LB hosts by the flow's 5-tuple, as routers in
        // front of L4 balancers are set up.
        sysctl(&router, "net.ipv4.fib_multipath_hash_policy=1")?;

        // Client side.
        veth(&client, "c0", &router, "r-client")?;
        sh(&router, "addr add 10.10.0.1/24 dev r-client")?;
        sh(&router, "addr add fd10::1/64 dev r-client nodad")?;
        for i in 0..CLIENTS {
            sh(&client, &format!("addr add {}/24 dev c0", client_v4(i)))?;
            sh(
                &client,
                &format!("addr add {}/64 dev c0 nodad", client_v6(i)),
            )?;
        }
        sh(&client, "route add default via 10.10.0.1")?;
        sh(&client, "-6 route add default via fd10::1")?;

        // The LB segment: a bridge in the router with the LB hosts and the
        // aws backends on it.
        sh(&router, "link add br-lb type bridge")?;
        sh(&router, "link set br-lb up")?;
        sh(&router, "addr add 10.20.0.1/24 dev br-lb")?;
        sh(&router, "addr add fd20::1/64 dev br-lb nodad")?;
        for (i, ns) in lbs.iter().enumerate() {
            let port = lb_host_port(i);
            veth(ns, "lb0", &router, &port)?;
            sh(&router, &format!("link set {port} master br-lb"))?;
            sh(ns, &format!("addr add {}/24 dev lb0", lb_host_v4(i)))?;
            sh(ns, &format!("addr add fd20::{}/64 dev lb0 nodad", 2 + i))?;
            sh(ns, "route add default via 10.20.0.1")?;
            sh(ns, "-6 route add default via fd20::1")?;
        }
        // veth delivers XDP_TX'd frames only to a peer running XDP: a
        // trivial XDP_PASS program on the router's side of each LB link.
        let xdp_pass = {
            let _in = router.enter()?;
            let mut tools = aya::EbpfLoader::new().load(lb::kernel::objects::TOOLS)?;
            let p: &mut aya::programs::Xdp = tools
                .program_mut("xdp_pass")
                .context("xdp_pass")?
                .try_into()?;
            p.load()?;
            for i in 0..lbs.len() {
                p.attach(&lb_host_port(i), aya::programs::XdpMode::Driver)?;
            }
            tools
        };
        // A veth hands its checksum work to the receiver (CHECKSUM_PARTIAL);
        // a frame the LB sends on with XDP_TX would then arrive with an
        // unfinished TCP checksum. A real NIC always delivers finished
        // checksums, so the client computes them in software.
        client.exec("ethtool", &["-K", "c0", "tx", "off"])?;
        if shape.static_vip_route {
            sh(&router, "route add 10.100.0.0/24 via 10.20.0.2")?;
        }
        // IPv6 VIPs stay on the first LB host (the fleet announces IPv4).
        sh(&router, "-6 route add fd00:100::/64 via fd20::2")?;
        let mut lbs = lbs.into_iter();
        let lb = lbs.next().expect("at least one LB host");

        let mut lab = Self {
            client,
            router,
            lb,
            more_lbs: lbs.collect(),
            backends: vec![],
            decap_pins: PathBuf::new(),
            _xdp_pass: xdp_pass,
        };
        lab.decap_pins = PathBuf::from(format!(
            "/sys/fs/bpf/lbt-{}-decap-{}",
            std::process::id(),
            lab.lb.name()
        ));
        let specs: [(&'static str, &'static str, u8, u8); 6] = [
            ("a1", "aws", 20, 11),
            ("a2", "aws", 20, 12),
            ("b1", "gcp", 32, 1),
            ("b2", "gcp", 32, 2),
            ("c1", "azure", 33, 1),
            ("c2", "azure", 33, 2),
        ];
        for (name, cloud, net, host) in specs {
            let ns = Netns::new(name)?;
            sysctl(&ns, "net.ipv6.conf.all.accept_dad=0")?;
            sysctl(&ns, "net.ipv6.conf.default.accept_dad=0")?;
            sysctl(&ns, "net.ipv4.conf.all.rp_filter=0")?;
            sysctl(&ns, "net.ipv4.conf.default.rp_filter=0")?;
            // The VIPs live on lo: never answer ARP for them.
            sysctl(&ns, "net.ipv4.conf.all.arp_ignore=1")?;
            sysctl(&ns, "net.ipv4.conf.all.arp_announce=2")?;
            for v in VIPS_V4 {
                sh(&ns, &format!("addr add {v}/32 dev lo"))?;
            }
            sh(&ns, &format!("addr add {VIP_V6}/128 dev lo"))?;
            let (v4, v6) = if net == 20 {
                veth(&ns, "eth0", &lab.router, &format!("p-{name}"))?;
                sh(&lab.router, &format!("link set p-{name} master br-lb"))?;
                let v4 = Ipv4Addr::new(10, 20, 0, host);
                let v6: Ipv6Addr = format!("fd20::{host}").parse()?;
                sh(&ns, &format!("addr add {v4}/24 dev eth0"))?;
                sh(&ns, &format!("addr add {v6}/64 dev eth0 nodad"))?;
                sh(&ns, "route add default via 10.20.0.1")?;
                sh(&ns, "-6 route add default via fd20::1")?;
                (v4, v6)
            } else {
                veth(&ns, "eth0", &lab.router, &format!("r-{name}"))?;
                let v4 = Ipv4Addr::new(10, net, host, 2);
                let v6: Ipv6Addr = format!("fd{net}:{host}::2").parse()?;
                sh(
                    &lab.router,
                    &format!("addr add 10.{net}.{host}.1/24 dev r-{name}"),
                )?;
                sh(
                    &lab.router,
                    &format!("addr add fd{net}:{host}::1/64 dev r-{name} nodad"),
                )?;
                sh(&ns, &format!("addr add {v4}/24 dev eth0"))?;
                sh(&ns, &format!("addr add {v6}/64 dev eth0 nodad"))?;
                sh(&ns, &format!("route add default via 10.{net}.{host}.1"))?;
                sh(&ns, &format!("-6 route add default via fd{net}:{host}::1"))?;
                (v4, v6)
            };
            // The project's decap program (see `decap`).
            decap(&ns, v4, v6, &lab.decap_pins.join(name), &[])
                .with_context(|| format!("lbd decap on {name}"))?;
            lab.backends.push(Backend {
                name,
                cloud,
                ns,
                v4,
                v6,
                server: None,
            });
        }
        lab.start_all_servers()?;
        Ok(lab)
    }

    fn index(&self, name: &str) -> usize {
        self.backends
            .iter()
            .position(|b| b.name == name)
            .unwrap_or_else(|| panic!("no backend {name}"))
    }

    pub fn backend(&self, name: &str) -> &Backend {
        &self.backends[self.index(name)]
    }

    /// Runs `lbd decap` on backend `name` again, as the lab does, with
    /// `extra` arguments (`--trace`): the pinned link takes the new program
    /// atomically.
    pub fn redecap(&self, name: &str, extra: &[&str]) -> Result<()> {
        let b = self.backend(name);
        decap(&b.ns, b.v4, b.v6, &self.decap_pin(name), extra)
    }

    /// Where backend `name`'s decap link is pinned (`--decap-pin-path`).
    pub fn decap_pin(&self, name: &str) -> PathBuf {
        self.decap_pins.join(name)
    }

    fn start_server_at(&mut self, i: usize) -> Result<()> {
        let b = &mut self.backends[i];
        if b.server.is_some() {
            return Ok(());
        }
        let child = Command::new("nsenter")
            .arg(format!("--net=/var/run/netns/{}", b.ns.name()))
            .arg(bin_lab_server()?)
            .arg(b.name)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        b.server = Some(child);
        // Wait until it listens.
        for _ in 0..100 {
            if b.ns
                .exec("ss", &["-ltn", "sport = :80"])
                .is_ok_and(|o| o.lines().count() > 1)
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!("lab-server on {} did not start", b.name)
    }

    /// (Re)starts a backend's server.
    pub fn start_server(&mut self, name: &str) -> Result<()> {
        let i = self.index(name);
        self.start_server_at(i)
    }

    /// Kills a backend's server: connections to it are refused or reset.
    pub fn kill_server(&mut self, name: &str) {
        let i = self.index(name);
        if let Some(mut c) = self.backends[i].server.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// (Re)starts every backend's server that is not running.
    pub fn start_all_servers(&mut self) -> Result<()> {
        for b in 0..self.backends.len() {
            self.start_server_at(b)?;
        }
        Ok(())
    }

    /// Starts lbd in the LB namespace.
    pub fn start_lbd(&self, config: &str, args: &[&str]) -> Result<Lbd> {
        Lbd::start(&self.lb, config, args)
    }

    /// A TCP connection from the client namespace, from `src` (port 0 =
    /// ephemeral) to `dst`.
    pub fn connect(&self, src: IpAddr, sport: u16, dst: SocketAddr) -> Result<TcpStream> {
        let _in = self.client.enter()?;
        let s = Socket::new(Domain::for_address(dst), Type::STREAM, Some(Protocol::TCP))?;
        s.set_reuse_address(true)?;
        s.bind(&SocketAddr::new(src, sport).into())?;
        s.connect_timeout(&dst.into(), Duration::from_secs(2))
            .with_context(|| format!("connect {src}:{sport} -> {dst}"))?;
        let t: TcpStream = s.into();
        t.set_read_timeout(Some(Duration::from_secs(2)))?;
        Ok(t)
    }

    /// A UDP socket in the client namespace bound to `src`.
    pub fn udp(&self, src: IpAddr) -> Result<UdpSocket> {
        let _in = self.client.enter()?;
        let s = UdpSocket::bind(SocketAddr::new(src, 0))?;
        s.set_read_timeout(Some(Duration::from_millis(700)))?;
        Ok(s)
    }

    /// Opens a connection, sends one line and returns the backend's name.
    pub fn ask(&self, src: IpAddr, dst: SocketAddr) -> Result<String> {
        let mut s = self.connect(src, 0, dst)?;
        request(&mut s, "hello")
    }

    /// Asks `n` times (new connection each, rotating client addresses)
    /// and counts answers per backend; failures count under "error".
    pub fn spread(&self, dst: SocketAddr, n: usize) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for i in 0..n {
            let src = if dst.is_ipv4() {
                IpAddr::V4(client_v4((i % CLIENTS as usize) as u8))
            } else {
                IpAddr::V6(client_v6((i % CLIENTS as usize) as u8))
            };
            let who = self.ask(src, dst).unwrap_or_else(|_| "error".into());
            *counts.entry(who).or_default() += 1;
        }
        counts
    }

    /// `lbctl decap -o json` inside a backend's namespace: its decap
    /// program as the kernel has it (addresses, GUE port, counters).
    pub fn decap_status(&self, backend: &str) -> Result<serde_json::Value> {
        let b = &self.backends[self.index(backend)];
        json_output(
            Command::new("nsenter")
                .arg(format!("--net=/var/run/netns/{}", b.ns.name()))
                .arg(bin("lbctl")?)
                .args(["decap", "-o", "json", "--decap-pin-path"])
                .arg(self.decap_pins.join(backend)),
            &format!("lbctl decap on {backend}"),
        )
    }

    /// Cloud of each backend name.
    pub fn cloud_of(&self, backend: &str) -> Option<&'static str> {
        self.backends
            .iter()
            .find(|b| b.name == backend)
            .map(|b| b.cloud)
    }
}

/// Sends a line on an open connection; returns the answering backend.
pub fn request(s: &mut TcpStream, msg: &str) -> Result<String> {
    s.write_all(format!("{msg}\n").as_bytes())?;
    let mut reader = BufReader::new(s.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let who = parts.next().context("empty answer")?.to_string();
    anyhow::ensure!(parts.next() == Some(msg), "garbled answer {line:?}");
    Ok(who)
}

/// Reads everything the peer still sends (for drained sockets).
pub fn drain_socket(s: &mut TcpStream) {
    let mut buf = [0u8; 512];
    let _ = s.read(&mut buf);
}

fn bin_lab_server() -> Result<PathBuf> {
    let p = crate::procs::target_dir().join("lab-server");
    if p.exists() {
        return Ok(p);
    }
    // Built with the tests crate's binaries.
    let status = crate::procs::cargo_build(&["-p", "lb-tests", "--bin", "lab-server"]).status()?;
    anyhow::ensure!(status.success() && p.exists(), "building lab-server failed");
    Ok(p)
}

impl Drop for Lab {
    fn drop(&mut self) {
        for b in &mut self.backends {
            if let Some(mut c) = b.server.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        // Unpinning the decap links detaches them; the namespaces go with
        // their Netns guards.
        let _ = std::fs::remove_dir_all(&self.decap_pins);
    }
}

/// Long-lived connections that keep talking; each records failures.
pub struct Talkers {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<(String, usize, Option<String>)>>,
}

impl Talkers {
    pub fn start(lab: &Lab, dst: SocketAddr, n: usize) -> Result<Self> {
        Self::start_every(lab, dst, n, Duration::from_millis(20))
    }

    /// `n` connections, each sending a message every `every`.
    pub fn start_every(lab: &Lab, dst: SocketAddr, n: usize, every: Duration) -> Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = vec![];
        for i in 0..n {
            let mut s = lab.connect(IpAddr::V4(client_v4((i % 8) as u8)), 0, dst)?;
            let first = request(&mut s, "start")?;
            let stop = stop.clone();
            threads.push(std::thread::spawn(move || {
                let mut sent = 0;
                while !stop.load(Ordering::Relaxed) {
                    match request(&mut s, &format!("m{sent}")) {
                        Ok(who) if who == first => sent += 1,
                        Ok(other) => {
                            return (
                                first,
                                sent,
                                Some(format!("answer from {other} after {sent} messages")),
                            );
                        }
                        Err(e) => {
                            return (first, sent, Some(format!("{e:#} after {sent} messages")));
                        }
                    }
                    std::thread::sleep(every);
                }
                (first, sent, None)
            }));
        }
        Ok(Self { stop, threads })
    }

    /// Stops talking; returns (backend, messages, failure) per connection.
    pub fn finish(self) -> Vec<(String, usize, Option<String>)> {
        self.stop.store(true, Ordering::Relaxed);
        self.threads
            .into_iter()
            .map(|t| t.join().expect("talker thread"))
            .collect()
    }
}

/// New connections, one every `every`, from the client namespace to a
/// VIP while something else happens: who answered, and every failure.
pub struct Prober {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Result<ProbeTally>>,
}

#[derive(Debug, Default)]
pub struct ProbeTally {
    pub answered: BTreeMap<String, usize>,
    pub failures: Vec<String>,
}

impl Prober {
    pub fn start(lab: &Lab, dst: SocketAddr, every: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (flag, ns) = (stop.clone(), lab.client.name().to_string());
        let thread = std::thread::spawn(move || {
            let _in = crate::netns::enter_named(&ns)?;
            let t0 = std::time::Instant::now();
            let mut tally = ProbeTally::default();
            while !flag.load(Ordering::Relaxed) {
                let answer = TcpStream::connect_timeout(&dst, Duration::from_secs(1))
                    .map_err(anyhow::Error::from)
                    .and_then(|mut s| {
                        s.set_read_timeout(Some(Duration::from_secs(1)))?;
                        request(&mut s, "probe")
                    });
                match answer {
                    Ok(who) => *tally.answered.entry(who).or_default() += 1,
                    Err(e) => tally.failures.push(format!("{:.1?}: {e:#}", t0.elapsed())),
                }
                std::thread::sleep(every);
            }
            Ok(tally)
        });
        Self { stop, thread }
    }

    pub fn finish(self) -> Result<ProbeTally> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .join()
            .map_err(|_| anyhow::anyhow!("prober thread panicked"))?
    }
}

/// `lbd decap` on a backend: tunnels to its addresses are unwrapped in
/// XDP, no kernel tunnel drivers needed; only tunnels from the LB's
/// encapsulation sources (the default `dataplane.encap_source_*`) and for
/// the VIPs.
fn decap(
    ns: &Netns,
    v4: Ipv4Addr,
    v6: Ipv6Addr,
    pin: &std::path::Path,
    extra: &[&str],
) -> Result<()> {
    let vips: Vec<String> = VIPS_V4
        .iter()
        .map(ToString::to_string)
        .chain([VIP_V6.to_string()])
        .collect();
    let out = Command::new("nsenter")
        .arg(format!("--net=/var/run/netns/{}", ns.name()))
        .arg(bin("lbd")?)
        .args([
            "decap",
            "--iface",
            "eth0",
            "--address",
            &v4.to_string(),
            "--address",
            &v6.to_string(),
            "--lb-source",
            "172.16.0.0/16,fd00:4c42::/32",
            "--vip",
            &vips.join(","),
            "--pin-path",
        ])
        .arg(pin)
        .args(extra)
        .output()?;
    if !out.status.success() {
        bail!("{}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}
