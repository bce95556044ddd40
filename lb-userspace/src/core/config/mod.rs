//! The declarative configuration (`/etc/lb/lb.yaml`, YAML or JSON).
//!
//! Three stages, one module each: serde reads the text into permissive raw
//! structs ([`raw`], `deny_unknown_fields`, with `serde_path_to_error`
//! naming the field of a type error); [`validate`] checks every value and
//! builds the typed [`model`], collecting every error with its field path
//! (`vips[2].backends[0].weight: must be 0..=65535, got -1`); [`check`]
//! applies the rules over the whole VIP list. Nothing here touches the
//! kernel.

mod check;
mod model;
mod raw;
pub mod reload;
pub mod render;
mod validate;

use std::{fmt, path::Path, time::Duration};

pub use check::vips as check_vips;
pub use model::*;
pub use raw::RawBackend as BackendInput;

use raw::{RawBackend, RawConfig, RawVip};
use validate::Validator;

/// One problem in a configuration: where and what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// `vips[2].backends[0].weight`; empty for the whole document.
    pub path: String,
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// A rejected configuration: the source and every problem found.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    /// File name, or a description of the source (`API request`).
    pub source_name: String,
    pub errors: Vec<FieldError>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}: {e}", self.source_name)?;
        }
        Ok(())
    }
}

impl ConfigError {
    fn new(source_name: &str, errors: Vec<FieldError>) -> Self {
        Self {
            source_name: source_name.into(),
            errors,
        }
    }
}

/// Reads and validates a configuration file: besides what [`parse`]
/// checks, a file an agent runs on is not empty and names its interfaces.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError::new(
            &name,
            vec![FieldError {
                path: String::new(),
                message: format!("cannot read: {e}"),
            }],
        )
    })?;
    let whole = |message: &str| {
        ConfigError::new(
            &name,
            vec![FieldError {
                path: String::new(),
                message: message.into(),
            }],
        )
    };
    if text.trim().is_empty() {
        return Err(whole(
            "the file is empty: an agent needs at least its interfaces (refusing it keeps a running agent as it is)",
        ));
    }
    let c = parse(&text, &name)?;
    if c.interfaces.is_empty() {
        return Err(ConfigError::new(
            &name,
            vec![FieldError {
                path: "interfaces".into(),
                message: "is required: at least one interface the VIPs' traffic arrives on".into(),
            }],
        ));
    }
    Ok(c)
}

/// Parses YAML (a superset of JSON) and validates it.
pub fn parse(text: &str, source_name: &str) -> Result<Config, ConfigError> {
    let raw: RawConfig = deserialize(text, source_name)?;
    validate::validate(raw).map_err(|errors| ConfigError::new(source_name, errors))
}

/// Parses one VIP of an API request or an etcd value (the schema of a
/// `vips:` entry of the file) in the context of `base`.
pub fn parse_vip(text: &str, source_name: &str, base: &Config) -> Result<Vip, ConfigError> {
    let raw: RawVip = deserialize(text, source_name)?;
    let mut v = Validator::default();
    match v.vip("", &raw, &base.limits) {
        Some(vip) if v.errors.is_empty() => Ok(vip),
        _ => Err(ConfigError::new(source_name, v.errors)),
    }
}

/// Parses a backend list (API push / etcd) with the same rules as a VIP's
/// `backends:`.
pub fn parse_backends(text: &str, source_name: &str) -> Result<Vec<BackendCfg>, ConfigError> {
    let raw: Vec<RawBackend> = deserialize(text, source_name)?;
    let mut v = Validator::default();
    let backends = v.backends("backends", &raw);
    if v.errors.is_empty() {
        Ok(backends)
    } else {
        Err(ConfigError::new(source_name, v.errors))
    }
}

/// Flow collections (`[`, `{`) nested deeper than this are refused before
/// the YAML parser sees them: it takes quadratic time in the depth (100000
/// levels: a minute), and a configuration needs fewer than ten.
const MAX_NESTING: usize = 64;

/// How deep `[`/`{` nest outside quoted scalars and comments (an upper
/// bound: a bracket inside a plain scalar counts too). A quote opens a
/// scalar only where YAML lets one start, so `it's` hides nothing.
fn flow_nesting(text: &str) -> usize {
    let (mut depth, mut max) = (0usize, 0usize);
    let mut quote: Option<char> = None;
    let (mut escaped, mut comment, mut closed_single) = (false, false, false);
    let mut prev = '\n';
    for c in text.chars() {
        let reopened = std::mem::take(&mut closed_single) && c == '\'';
        if comment {
            comment = c != '\n';
        } else if reopened {
            // `''` inside a single-quoted scalar is a quote, not its end.
            quote = Some('\'');
        } else if let Some(q) = quote {
            if escaped {
                escaped = false;
            } else if q == '"' && c == '\\' {
                escaped = true;
            } else if c == q {
                quote = None;
                closed_single = q == '\'';
            }
        } else {
            let token_start = prev.is_whitespace() || "[{,:".contains(prev);
            match c {
                '"' | '\'' if token_start => quote = Some(c),
                '#' if prev.is_whitespace() => comment = true,
                '[' | '{' => {
                    depth += 1;
                    max = max.max(depth);
                }
                ']' | '}' => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
        prev = c;
    }
    max
}

fn deserialize<T: serde::de::DeserializeOwned>(
    text: &str,
    source_name: &str,
) -> Result<T, ConfigError> {
    let depth = flow_nesting(text);
    if depth > MAX_NESTING {
        return Err(ConfigError::new(
            source_name,
            vec![FieldError {
                path: String::new(),
                message: format!(
                    "brackets nested {depth} levels deep; a configuration needs at most {MAX_NESTING}"
                ),
            }],
        ));
    }
    let de = serde_norway::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        // serde_norway's message ends with the line and column (kept), and
        // sometimes starts with the path (dropped: it is the field's).
        let inner = e.inner().to_string();
        let message = inner
            .strip_prefix(&format!("{path}: "))
            .filter(|_| !path.is_empty())
            .unwrap_or(&inner)
            .to_string();
        ConfigError::new(source_name, vec![FieldError { path, message }])
    })
}

/// Is `n` prime? (Maglev's table size must be.)
pub fn is_prime(n: u32) -> bool {
    if n < 2 {
        return false;
    }
    let mut d = 2u64;
    while d * d <= n as u64 {
        if (n as u64).is_multiple_of(d) {
            return false;
        }
        d += 1;
    }
    true
}

/// `1500ms`, `2s`, `1.5m`, `1h`, `1m30s`, `1h 5m`; a bare number is
/// seconds. One number with a unit may be fractional; longer forms are
/// humantime's (what [`format_duration`] writes). The error says what is
/// wrong with the text.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let wrong = || format!("expected a duration like 500ms, 2s, 1m30s or 1h, got {text:?}");
    // The unit is the letters at the end (the number may be `1e3`).
    let num = t.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &t[num.len()..];
    let scale = match unit {
        "ms" => Some(0.001),
        "s" | "" => Some(1.0),
        "m" => Some(60.0),
        "h" => Some(3600.0),
        _ => None,
    };
    if let (Some(scale), Ok(n)) = (scale, num.trim().parse::<f64>()) {
        if n.is_nan() || n < 0.0 {
            return Err(wrong());
        }
        return Duration::try_from_secs_f64(n * scale)
            .map_err(|_| format!("{text:?} is too long a duration"));
    }
    humantime::parse_duration(t).map_err(|_| wrong())
}

/// A duration as configuration text that [`parse_duration`] reads back
/// exactly: `1m 30s`, `1s 500ms`, `0s`.
pub fn format_duration(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// `02:00:00:00:00:01`.
pub fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let parts: Vec<&str> = text.split(':').collect();
    if parts.len() != 6 {
        return None;
    }
    let mut mac = [0u8; 6];
    for (b, p) in mac.iter_mut().zip(parts) {
        if p.len() != 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    Some(mac)
}

#[cfg(test)]
mod props;
#[cfg(test)]
mod tests;
