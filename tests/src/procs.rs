//! Real processes for end-to-end tests: `lbd` inside a test namespace, a
//! real etcd, and `lbctl` runs. Each stops (and cleans up its pins and
//! files) when dropped, also when the test fails.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::{
        OnceLock,
        atomic::{AtomicU32, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

use crate::netns::Netns;

/// The profile directory the running executable belongs to
/// (`target/debug` for tests, which run from `target/debug/deps`).
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("executable path");
    let dir = exe.parent().expect("executable directory");
    let dir = if dir.file_name().is_some_and(|n| n == "deps") {
        dir.parent().expect("profile directory")
    } else {
        dir
    };
    dir.to_path_buf()
}

/// `cargo build --quiet <args>` in the workspace, in this executable's
/// profile. `cargo test`/`cargo run` describe the running package in the
/// environment and build scripts (ring's) fingerprint some of those
/// variables, so they are not passed on: otherwise each nested build would
/// rebuild what the outer one built, and back again.
pub fn cargo_build(args: &[&str]) -> Command {
    let mut cmd = cargo(&["build", "--quiet"]);
    cmd.args(args);
    if target_dir().file_name().is_some_and(|n| n == "release") {
        cmd.arg("--release");
    }
    cmd
}

#[path = "../../xtask/src/cargo_env.rs"]
mod cargo_env;

/// `cargo <args>` in the workspace, without this package's environment
/// (see [`cargo_build`]).
pub fn cargo(args: &[&str]) -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let ws = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace");
    let mut cmd = Command::new(cargo);
    cmd.args(args).current_dir(ws);
    cargo_env::without_package_env(&mut cmd);
    cmd
}

/// The process exited 0; otherwise an error with its stderr.
pub fn succeeded(out: &Output) -> Result<()> {
    anyhow::ensure!(
        out.status.success(),
        "exit {:?}: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// A command's JSON output, if it succeeded (`what` names it in errors).
pub fn json_output(cmd: &mut Command, what: &str) -> Result<serde_json::Value> {
    let out = cmd.output().with_context(|| what.to_string())?;
    succeeded(&out).with_context(|| what.to_string())?;
    serde_json::from_slice(&out.stdout).with_context(|| format!("{what}: not JSON"))
}

/// Path of a binary of lb-userspace, built if needed (once per process), so
/// `cargo test` alone works as well as `cargo xtask test`.
pub fn bin(name: &str) -> Result<PathBuf> {
    static BUILT: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let status = cargo_build(&["-p", "lb-userspace", "--bins"])
            .status()
            .map_err(|e| e.to_string())?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("cargo build -p lb-userspace --bins: {status}"))
        }
    });
    if let Err(e) = built {
        bail!("{e}");
    }
    let p = target_dir().join(name);
    anyhow::ensure!(p.exists(), "{} not built", p.display());
    Ok(p)
}

fn unique(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "lbt-{}-{}-{tag}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A scratch directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Result<Self> {
        let p = std::env::temp_dir().join(unique(tag));
        fs::create_dir_all(&p)?;
        Ok(Self(p))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// `lbd` running inside a namespace, with its own pin path, API socket and
/// log file.
pub struct Lbd {
    child: Option<Child>,
    pub netns: String,
    pub dir: TempDir,
    pub config: PathBuf,
    pub pin_path: PathBuf,
    pub socket: PathBuf,
    pub log: PathBuf,
    /// Keep the pinned state when dropped (for restart tests).
    pub keep_pins: bool,
    /// The binary to run (an "upgrade" swaps it).
    pub binary: PathBuf,
    /// What `start` put before the caller's YAML (pins, state, API).
    header: String,
    /// Environment the process gets besides `RUST_LOG` (`NOTIFY_SOCKET`).
    pub env: Vec<(String, String)>,
}

impl Lbd {
    /// Starts lbd with `config_yaml` (`pin_path` and `api.socket` are
    /// filled in) inside `ns`, and waits until its API answers.
    pub fn start(ns: &Netns, config_yaml: &str, extra_args: &[&str]) -> Result<Self> {
        Self::start_with(ns, config_yaml, extra_args, "")
    }

    /// Like [`Lbd::start`], with extra fields for the `api:` block.
    pub fn start_with(
        ns: &Netns,
        config_yaml: &str,
        extra_args: &[&str],
        api_extra: &str,
    ) -> Result<Self> {
        Self::start_env(ns, config_yaml, extra_args, api_extra, &[])
    }

    /// Like [`Lbd::start_with`], with environment variables for the process.
    pub fn start_env(
        ns: &Netns,
        config_yaml: &str,
        extra_args: &[&str],
        api_extra: &str,
        env: &[(&str, &str)],
    ) -> Result<Self> {
        let dir = TempDir::new("lbd")?;
        let pin_path = PathBuf::from("/sys/fs/bpf").join(unique("pins"));
        let socket = dir.0.join("lbd.sock");
        let config = dir.0.join("lb.yaml");
        let sep = if api_extra.is_empty() { "" } else { ", " };
        let header = format!(
            "pin_path: {}\nstate_dir: {}\napi: {{socket: {}{sep}{api_extra}}}\n",
            pin_path.display(),
            dir.0.join("state").display(),
            socket.display()
        );
        fs::write(&config, format!("{header}{config_yaml}"))?;
        let mut lbd = Self {
            child: None,
            netns: ns.name().to_string(),
            log: dir.0.join("lbd.log"),
            dir,
            config,
            pin_path,
            socket,
            keep_pins: false,
            binary: bin("lbd")?,
            header,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        lbd.spawn(extra_args)?;
        Ok(lbd)
    }

    /// (Re)starts the process with the same files and pins.
    pub fn spawn(&mut self, extra_args: &[&str]) -> Result<()> {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let child = Command::new("nsenter")
            .arg(format!("--net=/var/run/netns/{}", self.netns))
            .arg(&self.binary)
            .arg("--config")
            .arg(&self.config)
            .args(extra_args)
            .env("RUST_LOG", "info")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("spawn lbd")?;
        self.child = Some(child);
        self.wait_ready(Duration::from_secs(30))
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(c) = self.child.as_mut()
                && let Some(status) = c.try_wait()?
            {
                bail!(
                    "lbd exited ({status}) during start-up:\n{}",
                    self.log_text()
                );
            }
            if self.api_get("/v1/health").is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!(
            "lbd did not answer within {timeout:?}:\n{}",
            self.log_text()
        )
    }

    /// Rewrites the configuration file: the header `start` wrote, then
    /// `config_yaml` (nothing else, for a file cut short on purpose).
    pub fn write_config(&self, config_yaml: &str) -> Result<()> {
        Ok(fs::write(
            &self.config,
            format!("{}{config_yaml}", self.header),
        )?)
    }

    /// The state directory (`state_dir`) of this agent.
    pub fn state_dir(&self) -> PathBuf {
        self.dir.0.join("state")
    }

    /// Whether the process has exited (and how).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    pub fn pid(&self) -> Option<u32> {
        // The child is nsenter, which execs lbd in place: same pid.
        self.child.as_ref().map(|c| c.id())
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// GET on the API over the Unix socket (curl keeps the harness small).
    pub fn api_get(&self, path: &str) -> Result<serde_json::Value> {
        self.api("GET", path, None)
    }

    pub fn api(&self, method: &str, path: &str, body: Option<&str>) -> Result<serde_json::Value> {
        Ok(self.api_answer(method, path, body)?.1)
    }

    /// The status code and the JSON body of an API call.
    pub fn api_answer(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> Result<(u16, serde_json::Value)> {
        let mut cmd = Command::new("curl");
        cmd.args(["-s", "--max-time", "5", "-X", method, "--unix-socket"])
            .arg(&self.socket)
            .arg(format!("http://lbd{path}"));
        if let Some(b) = body {
            cmd.args(["-H", "content-type: application/json", "--data-binary", b]);
        }
        // The status on a line of its own after the body.
        cmd.args(["-w", "\n%{http_code}"]);
        let out = cmd.output().context("curl")?;
        anyhow::ensure!(
            out.status.success(),
            "curl {method} {path}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let (body, status) = text.rsplit_once('\n').unwrap_or(("", &text));
        let status = status.trim().parse().context("curl's status code")?;
        let json = serde_json::from_str(body)
            .with_context(|| format!("{method} {path}: {status} {body}"))?;
        Ok((status, json))
    }

    /// Sends SIGTERM and waits: the data path stays pinned and attached.
    pub fn stop(&mut self) -> Result<()> {
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if c.try_wait()?.is_some() {
                    break;
                }
                if Instant::now() > deadline {
                    let _ = c.kill();
                    let _ = c.wait();
                    bail!("lbd did not exit on SIGTERM");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(())
    }

    /// SIGKILL: the agent dies without a word (pins and routes stay).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends SIGHUP (reload).
    pub fn hup(&self) {
        if let Some(c) = &self.child {
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(c.id() as i32, libc::SIGHUP) };
        }
    }

    /// Runs lbctl against this agent inside its namespace.
    pub fn lbctl(&self, args: &[&str]) -> Result<Output> {
        self.lbctl_command(args)?.output().context("run lbctl")
    }

    /// The command line of lbctl against this agent, inside its namespace,
    /// not started (for verbs that run until stopped).
    pub fn lbctl_command(&self, args: &[&str]) -> Result<Command> {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net=/var/run/netns/{}", self.netns))
            .arg(bin("lbctl")?)
            .arg("--socket")
            .arg(&self.socket)
            .arg("--pin-path")
            .arg(&self.pin_path)
            .args(args);
        Ok(cmd)
    }

    /// lbctl with `--output json`, which must succeed.
    pub fn lbctl_json(&self, args: &[&str]) -> Result<serde_json::Value> {
        let mut a = vec!["--output", "json"];
        a.extend_from_slice(args);
        let out = self.lbctl(&a)?;
        anyhow::ensure!(
            out.status.success(),
            "lbctl {args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout)
            .with_context(|| format!("lbctl {args:?}: {}", String::from_utf8_lossy(&out.stdout)))
    }

    /// Whether the agent counts `backend` of `vip` healthy now.
    pub fn healthy(&self, vip: &str, backend: &str) -> Result<bool> {
        let s = self.api_get("/v1/state")?;
        let v = crate::json::find(&s["vips"], "name", vip)?;
        Ok(v["backends"]
            .as_array()
            .context("backends")?
            .iter()
            .any(|b| b["address"] == backend && b["healthy"] == true))
    }

    /// Waits until `backend` of `vip` is healthy (`want`) or not; returns
    /// how long that took.
    pub fn wait_healthy(
        &self,
        vip: &str,
        backend: &str,
        want: bool,
        timeout: Duration,
    ) -> Result<Duration> {
        let t0 = Instant::now();
        while t0.elapsed() < timeout {
            if self.healthy(vip, backend)? == want {
                return Ok(t0.elapsed());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!(
            "{vip}/{backend} not {} within {timeout:?}",
            if want { "healthy" } else { "down" },
        )
    }

    /// Polls `f` until it returns true or `timeout` passes.
    pub fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        mut f: impl FnMut(&serde_json::Value) -> bool,
    ) -> Result<serde_json::Value> {
        let deadline = Instant::now() + timeout;
        let mut last = serde_json::Value::Null;
        while Instant::now() < deadline {
            if let Ok(s) = self.api_get("/v1/state") {
                if f(&s) {
                    return Ok(s);
                }
                last = s;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!(
            "timed out waiting for {what}; last state: {last}\nlog:\n{}",
            self.log_text()
        )
    }
}

impl Drop for Lbd {
    fn drop(&mut self) {
        let _ = self.stop();
        if !self.keep_pins {
            let _ = lb::kernel::pins::reset_pinned(&self.pin_path);
            let _ = fs::remove_dir_all(&self.pin_path);
        }
    }
}

/// A real etcd server inside a namespace, on 127.0.0.1 there, as
/// production runs it: HTTPS with client certificates required, and
/// authentication on (a `root` user for the test, an `lbd` user with read
/// and write on `/`-prefixed keys for the agents).
pub struct Etcd {
    child: Option<Child>,
    netns: String,
    pub dir: TempDir,
    /// The address it listens on inside the namespace.
    host: String,
    pub client_port: u16,
    peer_port: u16,
    pub ca: PathBuf,
    /// The client certificate agents and tools present.
    pub client: crate::pki::Pair,
    /// The agents' password file (user [`Etcd::USER`]).
    pub password_file: PathBuf,
    auth_enabled: bool,
}

impl Etcd {
    /// The agents' etcd user.
    pub const USER: &'static str = "lbd";
    const ROOT_PASSWORD: &'static str = "root-test-password";

    /// etcd on 127.0.0.1 inside `ns`.
    pub fn start(ns: &Netns, client_port: u16) -> Result<Self> {
        Self::start_on(ns, "127.0.0.1", client_port)
    }

    /// etcd on `host` inside `ns` (an address other namespaces route to).
    pub fn start_on(ns: &Netns, host: &str, client_port: u16) -> Result<Self> {
        let dir = TempDir::new("etcd")?;
        let ca = crate::pki::Ca::new(&dir.0, "etcd-ca")?;
        ca.issue(
            "server",
            "etcd",
            &[&format!("IP:{host}"), "IP:127.0.0.1", "DNS:localhost"],
        )?;
        // Not an etcd user: with this certificate alone a client is nobody.
        let client = ca.issue("client", "lb-test-client", &["DNS:lb-test-client"])?;
        let password_file = dir.0.join("lbd.password");
        fs::write(&password_file, "lbd-test-password\n")?;
        let mut e = Self {
            child: None,
            netns: ns.name().into(),
            ca: ca.cert.clone(),
            client,
            password_file,
            dir,
            host: host.into(),
            client_port,
            peer_port: client_port + 1,
            auth_enabled: false,
        };
        e.spawn()?;
        e.enable_auth()?;
        Ok(e)
    }

    pub fn url(&self) -> String {
        format!("https://{}:{}", self.host, self.client_port)
    }

    /// The flags `lbd` (and `lbctl fleet`) need to reach it, endpoint
    /// included.
    /// The `etcd:` section of an `lb.yaml` that reaches this etcd as
    /// [`Etcd::lbd_args`] does, under `prefix`.
    pub fn lb_yaml(&self, prefix: &str) -> String {
        format!(
            "etcd: {{endpoints: [\"{}\"], prefix: {prefix}, ca_file: {}, cert_file: {}, key_file: {}, user: {}, password_file: {}}}\n",
            self.url(),
            self.ca.display(),
            self.client.cert.display(),
            self.client.key.display(),
            Self::USER,
            self.password_file.display()
        )
    }

    pub fn lbd_args(&self) -> Vec<String> {
        let p = |p: &Path| p.to_string_lossy().into_owned();
        vec![
            "--etcd".into(),
            self.url(),
            "--etcd-ca-file".into(),
            p(&self.ca),
            "--etcd-cert-file".into(),
            p(&self.client.cert),
            "--etcd-key-file".into(),
            p(&self.client.key),
            "--etcd-user".into(),
            Self::USER.into(),
            "--etcd-password-file".into(),
            p(&self.password_file),
        ]
    }

    pub fn spawn(&mut self) -> Result<()> {
        let log = fs::File::create(self.dir.0.join("etcd.log"))?;
        let c = self.url();
        let p = format!("http://{}:{}", self.host, self.peer_port);
        let child = Command::new("nsenter")
            .arg(format!("--net=/var/run/netns/{}", self.netns))
            .args(["etcd", "--name", "lbt", "--data-dir"])
            .arg(self.dir.0.join("data"))
            .args(["--listen-client-urls", &c, "--advertise-client-urls", &c])
            .args([
                "--listen-peer-urls",
                &p,
                "--initial-advertise-peer-urls",
                &p,
            ])
            .args(["--initial-cluster", &format!("lbt={p}")])
            .arg("--cert-file")
            .arg(self.dir.0.join("server.pem"))
            .arg("--key-file")
            .arg(self.dir.0.join("server.key"))
            .arg("--trusted-ca-file")
            .arg(&self.ca)
            .arg("--client-cert-auth")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("spawn etcd (Debian package etcd-server)")?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            // Health needs no user, only the client certificate.
            if self.ctl(&["endpoint", "health"], false).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!(
            "etcd did not become healthy: {}",
            fs::read_to_string(self.dir.0.join("etcd.log")).unwrap_or_default()
        )
    }

    /// Users, the agents' role, then authentication on.
    fn enable_auth(&mut self) -> Result<()> {
        let pw = fs::read_to_string(&self.password_file)?;
        let lbd_pw = format!("--new-user-password={}", pw.trim());
        let root_pw = format!("--new-user-password={}", Self::ROOT_PASSWORD);
        for args in [
            vec!["user", "add", "root", &root_pw],
            vec!["user", "grant-role", "root", "root"],
            vec!["role", "add", "lb"],
            vec![
                "role",
                "grant-permission",
                "lb",
                "--prefix=true",
                "readwrite",
                "/",
            ],
            vec!["user", "add", Self::USER, &lbd_pw],
            vec!["user", "grant-role", Self::USER, "lb"],
            vec!["auth", "enable"],
        ] {
            self.ctl(&args, false)?;
        }
        self.auth_enabled = true;
        Ok(())
    }

    /// `etcdctl ARGS` inside the namespace with the client certificate
    /// (and the root user once authentication is on, if `as_root`).
    fn ctl_command(&self, args: &[&str], as_root: bool) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net=/var/run/netns/{}", self.netns))
            .arg("etcdctl")
            .arg(format!("--endpoints={}", self.url()))
            .arg(format!("--cacert={}", self.ca.display()))
            .arg(format!("--cert={}", self.client.cert.display()))
            .arg(format!("--key={}", self.client.key.display()))
            .args(["--dial-timeout=2s", "--command-timeout=5s"]);
        if as_root && self.auth_enabled {
            cmd.arg(format!("--user=root:{}", Self::ROOT_PASSWORD));
        }
        cmd.args(args);
        cmd
    }

    fn ctl(&self, args: &[&str], as_root: bool) -> Result<String> {
        let out = self
            .ctl_command(args, as_root)
            .output()
            .context("run etcdctl (Debian package etcd-client)")?;
        if !out.status.success() {
            bail!(
                "etcdctl {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `etcdctl ARGS` as a client that has the certificate but no user:
    /// the error etcd answers with, or `Ok` if it let the request through.
    pub fn try_without_user(&self, args: &[&str]) -> Result<String> {
        self.ctl(args, false)
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn signal(&self, sig: i32) {
        if let Some(c) = &self.child {
            // SAFETY: kill(2) on our own child's pid (nsenter exec'd etcd).
            unsafe { libc::kill(c.id() as i32, sig) };
        }
    }

    /// Freezes etcd (SIGSTOP): connections stay open and go silent, the
    /// half-open case a watch must detect.
    pub fn pause(&self) {
        self.signal(libc::SIGSTOP);
    }

    pub fn resume(&self) {
        self.signal(libc::SIGCONT);
    }

    /// Puts every (key, value) in one transaction: one revision.
    pub fn put_all(&self, kvs: &[(&str, &str)]) -> Result<()> {
        // `etcdctl txn` reads compares, a blank line, the success ops, a
        // blank line, the failure ops.
        let mut script = String::from("\n");
        for (k, v) in kvs {
            script.push_str(&format!("put {} {}\n", quote(k), quote(v)));
        }
        script.push_str("\n\n");
        let mut child = self
            .ctl_command(&["txn"], true)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("run etcdctl txn")?;
        use std::io::Write as _;
        child
            .stdin
            .take()
            .context("etcdctl stdin")?
            .write_all(script.as_bytes())?;
        let out = child.wait_with_output()?;
        anyhow::ensure!(
            out.status.success() && String::from_utf8_lossy(&out.stdout).starts_with("SUCCESS"),
            "txn: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    }

    pub fn put(&self, key: &str, value: &str) -> Result<()> {
        self.ctl(&["put", key, value], true)?;
        Ok(())
    }

    pub fn delete(&self, key: &str) -> Result<()> {
        self.ctl(&["del", key], true)?;
        Ok(())
    }

    pub fn get(&self, key: &str) -> Result<Option<String>> {
        let out = self.ctl(&["get", key, "--print-value-only"], true)?;
        Ok((!out.is_empty()).then(|| out.strip_suffix('\n').unwrap_or(&out).to_string()))
    }
}

/// A word for `etcdctl txn`: double-quoted, with `\`, `"` and line ends
/// escaped (it unquotes like Go).
fn quote(s: &str) -> String {
    let escaped = s
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n");
    format!("\"{escaped}\"")
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The lines a long-running command writes (`lbctl events --follow`,
/// `lbctl trace`), read on a thread; the command is killed when dropped.
pub struct Lines {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Lines {
    pub fn start(mut cmd: Command) -> Result<Self> {
        use std::io::BufRead as _;
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("start the command")?;
        let out = child.stdout.take().context("stdout")?;
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for l in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Ok(Self { child, lines })
    }

    /// The next line, within `within` (`None`: none came).
    pub fn next(&self, within: Duration) -> Option<String> {
        self.lines.recv_timeout(within).ok()
    }

    /// The next line as JSON, within `within`.
    pub fn next_json(&self, within: Duration) -> Result<serde_json::Value> {
        let line = self.next(within).context("no line in time")?;
        serde_json::from_str(&line)
            .with_context(|| format!("not one JSON object per line: {line:?}"))
    }
}

impl Drop for Lines {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
