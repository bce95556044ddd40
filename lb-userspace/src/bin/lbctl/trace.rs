//! `lbctl trace`: on a backend, why the decap program passed, unwrapped or
//! dropped each packet, as it happens — the records a decap program
//! attached with `lbd decap --trace` writes through aya-log, read from its
//! ring buffer (found through the pinned link's program, so it works for
//! any `lbd decap` that ran on the host).

use std::{
    net::IpAddr,
    path::Path,
    sync::mpsc,
    time::{Duration, Instant},
};

use aya_log::EbpfLogger;
use lb::{core::config::parse_duration, daemon::state::unix_now, kernel::decap};
use lb_common::Reason;
use serde::Serialize;

use crate::{Ctx, Fail, args::Output, fail, table::clock};

/// How often the ring buffers are read.
const POLL: Duration = Duration::from_millis(100);

/// One packet's trace record.
#[derive(Debug, PartialEq, Serialize)]
pub struct Record {
    pub time: f64,
    pub iface: String,
    /// `pass` or `drop`.
    pub verdict: &'static str,
    pub reason: &'static str,
    /// What the reason means.
    pub why: &'static str,
    pub proto: String,
    pub src: IpAddr,
    pub dst: IpAddr,
}

/// Reads a record's message, `action=2 reason=34 proto=4 10.10.0.10 ->
/// 10.32.1.2`, as the decap program writes it.
pub fn parse(iface: &str, time: f64, message: &str) -> Option<Record> {
    let mut words = message.split_whitespace();
    let mut field = |name: &str| -> Option<u32> { words.next()?.strip_prefix(name)?.parse().ok() };
    let action = field("action=")?;
    let reason = Reason::from_index(field("reason=")?)?;
    let proto = field("proto=")?;
    let src = words.next()?.parse().ok()?;
    (words.next()? == "->").then_some(())?;
    let dst = words.next()?.parse().ok()?;
    Some(Record {
        time,
        iface: iface.to_string(),
        verdict: match action {
            1 => "drop",
            2 => "pass",
            _ => "other",
        },
        reason: reason.name(),
        why: reason.describe().trim(),
        proto: match proto {
            1 => "icmp".into(),
            4 => "ipip".into(),
            6 => "tcp".into(),
            17 => "udp".into(),
            41 => "ipv6".into(),
            58 => "icmpv6".into(),
            n => n.to_string(),
        },
        src,
        dst,
    })
}

/// Forwards each aya-log record's text, with its interface, to the printer.
struct Lines {
    iface: String,
    tx: mpsc::Sender<(String, String)>,
}

impl log::Log for Lines {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }
    fn log(&self, record: &log::Record) {
        let _ = self
            .tx
            .send((self.iface.clone(), record.args().to_string()));
    }
    fn flush(&self) {}
}

pub async fn run(ctx: &Ctx<'_>, pin_dir: &Path, duration: Option<&str>) -> Result<(), Fail> {
    let until = duration
        .map(|d| parse_duration(d).map_err(|e| fail(2, format!("--for: {e}"))))
        .transpose()?
        .map(|d| Instant::now() + d);
    let attached = decap::attached(pin_dir).map_err(|e| fail(6, e.to_string()))?;
    if attached.is_empty() {
        return Err(fail(
            6,
            format!(
                "no decap program pinned under {} (lbd decap --trace ...)",
                pin_dir.display()
            ),
        ));
    }
    let (tx, rx) = mpsc::channel();
    let mut loggers = Vec::new();
    for a in &attached {
        let lines = Lines {
            iface: a.iface.clone(),
            tx: tx.clone(),
        };
        let logger = EbpfLogger::init_from_id_with_logger(a.program_id, lines).map_err(|e| {
            fail(
                1,
                format!("{}: the trace of program {}: {e}", a.iface, a.program_id),
            )
        })?;
        eprintln!(
            "tracing lb_decap on {} (program {}); records come only from a program attached with `lbd decap --trace`",
            a.iface, a.program_id
        );
        loggers.push(logger);
    }
    loop {
        for l in &mut loggers {
            if !flush_guarded(l) {
                return Err(fail(
                    1,
                    "a record in the decap program's log buffer is not in aya-log's format (is something else writing to it?): stopped",
                ));
            }
        }
        for (iface, message) in rx.try_iter() {
            match parse(&iface, unix_now(), &message) {
                Some(r) => print(ctx.output(), &r),
                None => lb::outln!("{iface}: {message}"),
            }
        }
        if until.is_some_and(|t| Instant::now() >= t) {
            return Ok(());
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Drains `logger`; false if aya-log met a record it cannot decode, on
/// which it panics (`log_buf(..).unwrap()` in `EbpfLogger::flush`). The
/// panic is caught, and its message kept off the terminal, so lbctl stops
/// with its own error instead of exiting 101.
fn flush_guarded<T: log::Log>(logger: &mut EbpfLogger<T>) -> bool {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| logger.flush())).is_ok();
    std::panic::set_hook(hook);
    ok
}

fn print(output: Output, r: &Record) {
    match output {
        Output::Json => lb::outln!("{}", serde_json::to_string(r).expect("serializable")),
        Output::Table => lb::outln!(
            "{} {} {:<4} {:<22} {:<6} {} -> {}  ({})",
            clock(r.time),
            r.iface,
            r.verdict,
            r.reason,
            r.proto,
            r.src,
            r.dst,
            r.why
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn a_record_names_its_verdict_reason_and_protocol() {
        let r = parse(
            "eth0",
            1.0,
            "action=2 reason=34 proto=4 10.10.0.10 -> 10.32.1.2",
        )
        .unwrap();
        assert_eq!(
            (r.verdict, r.reason, r.proto.as_str()),
            ("pass", "decap_refused_source", "ipip")
        );
        assert_eq!(r.src.to_string(), "10.10.0.10");
        let r = parse(
            "eth0",
            1.0,
            "action=1 reason=30 proto=41 fd00::1 -> fd32:1::2",
        )
        .unwrap();
        assert_eq!(
            (r.verdict, r.reason, r.proto.as_str()),
            ("drop", "decap_drop_malformed", "ipv6")
        );
        assert!(
            parse(
                "eth0",
                1.0,
                "action=2 reason=999 proto=4 1.2.3.4 -> 5.6.7.8"
            )
            .is_none()
        );
        assert!(parse("eth0", 1.0, "something else").is_none());
    }
}
