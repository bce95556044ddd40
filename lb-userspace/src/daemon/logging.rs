//! Where log lines go: to journald as structured entries (a priority per
//! level, the event's fields as journal fields) when systemd connected
//! stderr to the journal, otherwise plain text or JSON lines on stderr.
//! `RUST_LOG` overrides the configured level.

use std::os::fd::AsRawFd as _;

use tracing_subscriber::{EnvFilter, layer::SubscriberExt as _, util::SubscriberInitExt as _};

use crate::core::config::{LogCfg, LogFormat};

/// Whether stderr is the journal stream systemd set up: `JOURNAL_STREAM`
/// names its `device:inode`, which a redirected stderr no longer matches
/// (systemd.exec(5)).
pub fn stderr_is_journal() -> bool {
    let Ok(v) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = v.split_once(':') else {
        return false;
    };
    // SAFETY: `stat` is plain data; all zeroes is a valid value.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat fills `st` for an open descriptor; stderr is one.
    if unsafe { libc::fstat(std::io::stderr().as_raw_fd(), &mut st) } != 0 {
        return false;
    }
    dev.parse::<u64>().ok() == Some(st.st_dev) && ino.parse::<u64>().ok() == Some(st.st_ino)
}

/// Installs the global subscriber; where it went, for the first log line.
pub fn init(cfg: LogCfg) -> &'static str {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| cfg.level.name().into());
    if stderr_is_journal() {
        match tracing_journald::layer() {
            Ok(journal) => {
                tracing_subscriber::registry()
                    .with(filter)
                    .with(
                        journal
                            .with_syslog_identifier("lbd".into())
                            .with_field_prefix(Some("LB".into())),
                    )
                    .init();
                return "journald";
            }
            Err(e) => eprintln!("lbd: journald socket unusable ({e}): logging to stderr"),
        }
    }
    // Colours only for a terminal: log files get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match cfg.format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    "stderr"
}
