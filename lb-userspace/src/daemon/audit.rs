//! The audit log: every accepted and rejected change — from the file, the
//! API or etcd — as one JSON object per line in `<state_dir>/audit.log`
//! (mode 0600), and as a structured `audit` log event. `lbctl audit` reads
//! the file.

use std::{
    fs::{File, OpenOptions},
    io::{BufRead as _, BufReader, Write as _},
    os::unix::fs::OpenOptionsExt as _,
    path::{Path, PathBuf},
    time::{SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};

/// The file's name in the state directory.
pub const FILE: &str = "audit.log";

/// One change, accepted or not.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// UTC, RFC 3339 with milliseconds.
    pub time: String,
    /// `token:<id>`, `uid:<n> pid:<p>` (Unix socket), `file:<path>`,
    /// `etcd:<user>`.
    pub who: String,
    /// `file`, `api`, `etcd`.
    pub source: String,
    /// The client's address (TCP API), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// The tenant the actor is scoped to, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// `POST /v1/vips/web/backends/10.0.0.1/drain`, `reload`, `put <key>`.
    pub action: String,
    /// `accepted` or `rejected`.
    pub result: String,
    /// Why it was rejected (or what it changed).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

impl Record {
    pub fn new(who: impl Into<String>, source: &str, action: impl Into<String>) -> Self {
        Self {
            time: rfc3339(SystemTime::now()),
            who: who.into(),
            source: source.into(),
            from: None,
            tenant: None,
            action: action.into(),
            result: String::new(),
            detail: String::new(),
        }
    }

    pub fn accepted(mut self, detail: impl Into<String>) -> Self {
        self.result = "accepted".into();
        self.detail = detail.into();
        self
    }

    pub fn rejected(mut self, detail: impl Into<String>) -> Self {
        self.result = "rejected".into();
        self.detail = detail.into();
        self
    }
}

/// The open log.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    file: Option<File>,
}

impl AuditLog {
    /// `dir`'s audit log, created 0600 if missing, appended to.
    pub fn open(dir: &Path) -> Self {
        let path = dir.join(FILE);
        let file = open_append(&path)
            .map_err(|e| tracing::warn!(path = %path.display(), error = %e, "cannot open the audit log; changes are audited in the log stream only"))
            .ok();
        Self { path, file }
    }

    /// Writes `r` to the file and the log stream. A failed write is
    /// reported and retried on the next record (the file may be back).
    pub fn write(&mut self, r: &Record) {
        if r.result == "rejected" {
            tracing::warn!(target: "audit", who = %r.who, source = %r.source, action = %r.action, result = %r.result, detail = %r.detail, "audit");
        } else {
            tracing::info!(target: "audit", who = %r.who, source = %r.source, action = %r.action, result = %r.result, detail = %r.detail, "audit");
        }
        let Ok(mut line) = serde_json::to_vec(r) else {
            return;
        };
        line.push(b'\n');
        if self.file.is_none() {
            self.file = open_append(&self.path).ok();
        }
        if let Some(f) = &mut self.file
            && let Err(e) = f.write_all(&line)
        {
            tracing::warn!(path = %self.path.display(), error = %e, "audit log write failed");
            self.file = None;
        }
    }
}

fn open_append(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

/// The records of an audit log file, oldest first; lines that are not
/// records (a torn last line after a crash) are skipped.
pub fn read(path: &Path) -> std::io::Result<Vec<Record>> {
    let f = File::open(path)?;
    Ok(BufReader::new(f)
        .lines()
        .map_while(Result::ok)
        .filter_map(|l| serde_json::from_str(&l).ok())
        .collect())
}

/// `t` as `2026-12-02T03:04:05.678Z`.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, day) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (H. Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        let t = UNIX_EPOCH + Duration::from_millis(1_796_180_645_678);
        assert_eq!(rfc3339(t), "2026-12-02T03:04:05.678Z");
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn records_round_trip_through_the_file() {
        let dir = std::env::temp_dir().join(format!("lb-audit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let _ = std::fs::remove_file(dir.join(FILE));
        let mut log = AuditLog::open(&dir);
        let a = Record::new("token:ops", "api", "POST /v1/node/drain").rejected("needs admin");
        let b = Record::new("file:/etc/lb/lb.yaml", "file", "reload").accepted("");
        log.write(&a);
        log.write(&b);
        // A torn line is skipped, not fatal.
        std::fs::OpenOptions::new()
            .append(true)
            .open(dir.join(FILE))
            .unwrap()
            .write_all(b"{\"time\":")
            .unwrap();
        assert_eq!(read(&dir.join(FILE)).unwrap(), vec![a, b]);
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir.join(FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
