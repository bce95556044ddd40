//! Network namespaces and links that tests create and always remove.
//!
//! Every namespace is named `lbt-<pid>-<n>` so `cargo xtask test` can sweep
//! leftovers of a run that was killed before its destructors ran.

use std::{
    fs::File,
    os::fd::AsFd,
    process::{Command, Output},
    sync::atomic::{AtomicU32, Ordering},
};

use anyhow::{Context as _, Result, bail};

/// Prefix of every namespace the test suite creates.
pub const PREFIX: &str = "lbt-";

/// A named network namespace (`ip netns add`), deleted on drop together with
/// every link, address and process-less socket inside it.
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates `lbt-<pid>-<n>-<role>` with loopback up.
    pub fn new(role: &str) -> Result<Self> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("{PREFIX}{}-{n}-{role}", std::process::id());
        run(Command::new("ip").args(["netns", "add", &name]))?;
        let ns = Self { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip -n <ns> args...`
    pub fn ip(&self, args: &[&str]) -> Result<String> {
        ip_in(&self.name, args)
    }

    /// A command that runs inside the namespace (`ip netns exec`).
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, program]);
        cmd
    }

    /// Runs a command inside the namespace and returns its stdout.
    pub fn exec(&self, program: &str, args: &[&str]) -> Result<String> {
        run(self.command(program).args(args))
    }

    /// Moves the calling thread into the namespace until the guard drops.
    /// Use for in-process work that must see the namespace's interfaces
    /// (attaching XDP, BPF_PROG_TEST_RUN with FIB lookups).
    pub fn enter(&self) -> Result<NetnsEntered> {
        enter_named(&self.name)
    }

    /// Interface index of `ifname` inside the namespace.
    pub fn ifindex(&self, ifname: &str) -> Result<u32> {
        let out = self.exec("cat", &[&format!("/sys/class/net/{ifname}/ifindex")])?;
        out.trim()
            .parse()
            .with_context(|| format!("ifindex of {ifname}: {out:?}"))
    }

    /// MAC address of `ifname` inside the namespace.
    pub fn mac(&self, ifname: &str) -> Result<[u8; 6]> {
        let out = self.exec("cat", &[&format!("/sys/class/net/{ifname}/address")])?;
        parse_mac(out.trim())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
            .map(|o| {
                for pid in String::from_utf8_lossy(&o.stdout).split_whitespace() {
                    let _ = Command::new("kill").args(["-9", pid]).status();
                }
            });
        if let Err(e) = run(Command::new("ip").args(["netns", "del", &self.name])) {
            eprintln!("warning: could not delete netns {}: {e:#}", self.name);
        }
    }
}

/// [`Netns::enter`] by name, for a thread that cannot borrow the
/// [`Netns`] (the namespace must outlive the guard).
pub fn enter_named(name: &str) -> Result<NetnsEntered> {
    let here = File::open("/proc/thread-self/ns/net").context("open own netns")?;
    let target = File::open(format!("/var/run/netns/{name}"))
        .with_context(|| format!("open netns {name}"))?;
    setns(&target).with_context(|| format!("enter netns {name}"))?;
    Ok(NetnsEntered { previous: here })
}

/// Returns the thread to its previous namespace on drop.
pub struct NetnsEntered {
    previous: File,
}

impl Drop for NetnsEntered {
    fn drop(&mut self) {
        if let Err(e) = setns(&self.previous) {
            // Staying in a test namespace would make every later step on this
            // thread lie about where it runs.
            panic!("could not return to the original netns: {e:#}");
        }
    }
}

fn setns(ns: &File) -> Result<()> {
    use std::os::fd::AsRawFd as _;
    // SAFETY: setns on a valid namespace fd only changes this thread's netns.
    let rc = unsafe { libc::setns(ns.as_fd().as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context("setns(CLONE_NEWNET)");
    }
    Ok(())
}

/// Creates a veth pair with one end in each namespace and brings both up.
pub fn veth(a: &Netns, a_if: &str, b: &Netns, b_if: &str) -> Result<()> {
    a.ip(&[
        "link",
        "add",
        a_if,
        "type",
        "veth",
        "peer",
        "name",
        b_if,
        "netns",
        b.name(),
    ])?;
    a.ip(&["link", "set", a_if, "up"])?;
    b.ip(&["link", "set", b_if, "up"])?;
    Ok(())
}

/// `ip -n <ns> args...` for a namespace known by name (its owner elsewhere).
pub fn ip_in(ns: &str, args: &[&str]) -> Result<String> {
    run(Command::new("ip").arg("-n").arg(ns).args(args))
}

/// Runs a command, failing with its stderr when it exits non-zero.
pub fn run(cmd: &mut Command) -> Result<String> {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().with_context(|| format!("spawn {cmd:?}"))?;
    if !status.success() {
        bail!(
            "{cmd:?} failed ({status}): {}",
            String::from_utf8_lossy(&stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&stdout).into_owned())
}

pub fn parse_mac(s: &str) -> Result<[u8; 6]> {
    let mut mac = [0u8; 6];
    let parts: Vec<_> = s.split(':').collect();
    if parts.len() != 6 {
        bail!("not a MAC address: {s:?}");
    }
    for (b, p) in mac.iter_mut().zip(parts) {
        *b = u8::from_str_radix(p, 16).with_context(|| format!("not a MAC address: {s:?}"))?;
    }
    Ok(mac)
}

/// Fails unless running as root (or with the capabilities the suite needs).
pub fn require_root() -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!(
            "these tests create network namespaces and load BPF programs: run them as root (sudo -E cargo xtask test)"
        );
    }
    Ok(())
}

/// Sends raw Ethernet frames out of `ifname` in namespace `ns` (AF_PACKET),
/// for feeding malformed input to an interface's peer.
pub fn send_raw(ns: &Netns, ifname: &str, frames: &[Vec<u8>]) -> Result<()> {
    let ifindex = ns.ifindex(ifname)?;
    let _in = ns.enter()?;
    // SAFETY: plain socket(2); the fd is closed below.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW,
            (libc::ETH_P_ALL as u16).to_be() as i32,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).context("AF_PACKET socket");
    }
    let mut result = Ok(());
    for f in frames {
        // SAFETY: sockaddr_ll is plain data; zeroed is a valid value.
        let mut sa: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sa.sll_family = libc::AF_PACKET as u16;
        sa.sll_ifindex = ifindex as i32;
        sa.sll_halen = 6;
        sa.sll_addr[..6].copy_from_slice(&f[..6.min(f.len())]);
        // SAFETY: f and sa are valid for the lengths given.
        let rc = unsafe {
            libc::sendto(
                fd,
                f.as_ptr().cast(),
                f.len(),
                0,
                (&raw const sa).cast(),
                size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if rc < 0 {
            result = Err(std::io::Error::last_os_error()).context("sendto");
            break;
        }
    }
    // SAFETY: closing the fd opened above.
    unsafe { libc::close(fd) };
    result
}
