//! What both binaries share: the tokio runtime, command output that a
//! closed pipe ends quietly, and shell completions and man pages generated
//! from their clap definitions, so what the package ships never drifts
//! from the flags the binaries accept (`lbd completions`, `lbctl
//! completions`, and the hidden `man` subcommands `cargo xtask package`
//! uses).

use std::{
    fmt,
    io::{self, Write as _},
    path::{Path, PathBuf},
};

use clap::Command;
pub use clap_complete::Shell;

/// A tokio runtime: on the current thread, or with `worker_threads`; the
/// error is printed.
pub fn runtime(worker_threads: Option<usize>) -> Option<tokio::runtime::Runtime> {
    let mut builder = match worker_threads {
        None => tokio::runtime::Builder::new_current_thread(),
        Some(n) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n);
            b
        }
    };
    builder
        .enable_all()
        .build()
        .inspect_err(|e| eprintln!("error: tokio runtime: {e}"))
        .ok()
}

/// `println!` for command output. `println!` panics when the reader has
/// gone (`lbctl vip list | head -1`); this ends the command quietly with
/// status 0 instead, as a C tool killed by SIGPIPE would, and with status
/// 1 and a message on any other write error.
#[macro_export]
macro_rules! outln {
    () => { $crate::cli::write_out(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::cli::write_out(format_args!("{}\n", format_args!($($arg)*))) };
}

/// `print!` as [`outln!`] does it.
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => { $crate::cli::write_out(format_args!($($arg)*)) };
}

pub fn write_out(args: fmt::Arguments<'_>) {
    let mut stdout = io::stdout().lock();
    if let Err(e) = stdout.write_fmt(args).and_then(|()| stdout.flush()) {
        if e.kind() == io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: writing to standard output: {e}");
        std::process::exit(1);
    }
}

/// Writes the completion script for `shell` to standard output.
pub fn completions(mut cmd: Command, shell: Shell) {
    let name = cmd.get_name().to_string();
    let mut script = vec![];
    clap_complete::generate(shell, &mut cmd, name, &mut script);
    out!("{}", String::from_utf8_lossy(&script));
}

/// Writes `NAME.SECTION` for the command and `NAME-SUB.SECTION` for each
/// subcommand (nested ones too, e.g. `lbctl-vip-list.1`) into `dir`;
/// returns the files written. Hidden subcommands get no page. The
/// command's own page also gets `extra` (EXIT STATUS, FILES, SIGNALS).
pub fn man_pages(
    cmd: Command,
    section: &str,
    dir: &Path,
    extra: &crate::man::ManExtra,
) -> io::Result<Vec<PathBuf>> {
    let mut cmd = cmd;
    cmd.build();
    let mut written = vec![];
    let name = cmd.get_name().to_string();
    page(&cmd, &name, &name, section, dir, &mut written)?;
    let mut top = std::fs::OpenOptions::new().append(true).open(&written[0])?;
    io::Write::write_all(&mut top, &extra.roff())?;
    Ok(written)
}

fn page(
    cmd: &Command,
    file_name: &str,
    invocation: &str,
    section: &str,
    dir: &Path,
    written: &mut Vec<PathBuf>,
) -> io::Result<()> {
    let man_cmd = cmd
        .clone()
        .display_name(file_name.to_string())
        .bin_name(invocation.to_string());
    let mut buf = vec![];
    clap_mangen::Man::new(man_cmd)
        .section(section)
        .render(&mut buf)?;
    let path = dir.join(format!("{file_name}.{section}"));
    std::fs::write(&path, buf)?;
    written.push(path);
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = sub.get_name();
        if name == "help" {
            continue;
        }
        page(
            sub,
            &format!("{file_name}-{name}"),
            &format!("{invocation} {name}"),
            section,
            dir,
            written,
        )?;
    }
    Ok(())
}

/// etcd TLS and authentication flags, the same for `lbd` and `lbctl`.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct EtcdSecurityArgs {
    /// CA certificate (PEM) etcd's certificate must chain to (https:// endpoints).
    #[arg(long, global = true)]
    pub etcd_ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for an etcd that requires client certificates.
    #[arg(long, global = true, requires = "etcd_key_file")]
    pub etcd_cert_file: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, global = true, requires = "etcd_cert_file")]
    pub etcd_key_file: Option<PathBuf>,
    /// etcd user, when etcd has authentication enabled.
    #[arg(long, global = true, requires = "etcd_password_file")]
    pub etcd_user: Option<String>,
    /// File holding that user's password.
    #[arg(long, global = true, requires = "etcd_user")]
    pub etcd_password_file: Option<PathBuf>,
}

impl EtcdSecurityArgs {
    pub fn security(&self) -> crate::daemon::etcd::EtcdSecurity {
        crate::daemon::etcd::EtcdSecurity {
            ca_file: self.etcd_ca_file.clone(),
            cert_file: self.etcd_cert_file.clone(),
            key_file: self.etcd_key_file.clone(),
            user: self.etcd_user.clone(),
            password_file: self.etcd_password_file.clone(),
        }
    }
}
