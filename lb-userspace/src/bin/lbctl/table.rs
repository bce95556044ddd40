//! Output: a verb's rows are typed once and rendered either as aligned
//! columns or, with `--output json`, as JSON by serde.

use serde::Serialize;

use crate::args::Output;

/// A row of a listing: its columns and the cells of one row.
pub trait Row: Serialize {
    const HEADERS: &'static [&'static str];
    fn cells(&self) -> Vec<String>;
}

/// Prints `rows` as a table or as a JSON array.
pub fn print<R: Row>(output: Output, rows: &[R]) {
    match output {
        Output::Json => print_json(&rows),
        Output::Table => columns(R::HEADERS, rows.iter().map(Row::cells)),
    }
}

pub fn print_json<T: Serialize + ?Sized>(v: &T) {
    lb::outln!("{}", serde_json::to_string_pretty(v).expect("serializable"));
}

/// Prints rows as aligned columns.
pub fn columns(header: &[&str], rows: impl IntoIterator<Item = Vec<String>>) {
    let rows: Vec<Vec<String>> = rows.into_iter().collect();
    let mut w: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.len());
        }
    }
    let line = |cells: &[String]| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<width$}", width = w[i]))
            .collect::<Vec<_>>()
            .join("  ")
    };
    let header: Vec<String> = header.iter().map(|s| s.to_string()).collect();
    lb::outln!("{}", line(&header).trim_end());
    for r in &rows {
        lb::outln!("{}", line(r).trim_end());
    }
}

/// A value as its configuration word (`draining`, `l2-dsr`, `tcp`).
pub fn word<T: Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        _ => "?".into(),
    }
}

/// An optional cell.
pub fn or_dash<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".into(), |v| v.to_string())
}

pub fn percent(share: f64, decimals: usize) -> String {
    format!("{:.decimals$}%", share * 100.0)
}

pub fn health(up: bool) -> String {
    if up { "up" } else { "DOWN" }.into()
}

/// `HH:MM:SS.mmm` (UTC) of a Unix time.
pub fn clock(t: f64) -> String {
    let ms = (t * 1000.0) as u64;
    let (s, ms) = (ms / 1000, ms % 1000);
    format!(
        "{:02}:{:02}:{:02}.{ms:03}",
        s / 3600 % 24,
        s / 60 % 60,
        s % 60
    )
}
