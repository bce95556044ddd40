//! Plain SVG charts generated from the benchmark results (no plotting
//! dependency): Maglev disruption and failover timelines.

use std::fmt::Write as _;

use super::{maglev::MaglevFigure, reaction::FailoverRun};

const W: f64 = 720.0;
const H: f64 = 400.0;
const L: f64 = 70.0;
const R: f64 = 160.0;
const T: f64 = 40.0;
const B: f64 = 50.0;

fn frame(title: &str, x_label: &str, y_label: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12"><rect width="100%" height="100%" fill="white"/>"#
    );
    let _ = writeln!(
        s,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="15">{title}</text>"#,
        W / 2.0
    );
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">{x_label}</text>"#,
        L + (W - L - R) / 2.0,
        H - 12.0
    );
    let _ = writeln!(
        s,
        r#"<text x="16" y="{}" text-anchor="middle" transform="rotate(-90 16 {})">{y_label}</text>"#,
        T + (H - T - B) / 2.0,
        T + (H - T - B) / 2.0
    );
    let _ = writeln!(
        s,
        r#"<line x1="{L}" y1="{}" x2="{}" y2="{}" stroke="black"/>"#,
        H - B,
        W - R,
        H - B
    );
    let _ = writeln!(
        s,
        r#"<line x1="{L}" y1="{T}" x2="{L}" y2="{}" stroke="black"/>"#,
        H - B
    );
    s
}

/// Fraction of slots moved when one of N backends is removed, against 1/N.
pub fn disruption(figs: &[MaglevFigure]) -> String {
    let mut s = frame(
        "Maglev disruption: one of N backends removed",
        "backends N (log scale)",
        "fraction of slots moved (log scale)",
    );
    let ns: Vec<usize> = figs.iter().map(|f| f.backends).collect();
    let (nmin, nmax) = (
        *ns.iter().min().unwrap_or(&1) as f64,
        *ns.iter().max().unwrap_or(&10) as f64,
    );
    let ys: Vec<f64> = figs
        .iter()
        .flat_map(|f| [f.moved_on_remove, f.ideal])
        .collect();
    let (ymin, ymax) = (
        ys.iter().copied().fold(f64::MAX, f64::min) * 0.8,
        ys.iter().copied().fold(0.0, f64::max) * 1.2,
    );
    let x = |n: f64| L + (n.ln() - nmin.ln()) / (nmax.ln() - nmin.ln()).max(1e-9) * (W - L - R);
    let y = |v: f64| H - B - (v.ln() - ymin.ln()) / (ymax.ln() - ymin.ln()).max(1e-9) * (H - T - B);
    for n in &ns {
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="middle">{n}</text>"#,
            x(*n as f64),
            H - B + 16.0
        );
    }
    for v in [0.0002, 0.001, 0.01, 0.1, 0.5] {
        if v >= ymin && v <= ymax {
            grid_line(&mut s, &v.to_string(), y(v), "#ddd");
        }
    }
    let mut rings: Vec<u32> = figs.iter().map(|f| f.ring_size).collect();
    rings.dedup();
    let colors = ["#1f77b4", "#d62728", "#2ca02c"];
    for (k, ring) in rings.iter().enumerate() {
        let pts: Vec<String> = figs
            .iter()
            .filter(|f| f.ring_size == *ring)
            .map(|f| format!("{:.1},{:.1}", x(f.backends as f64), y(f.moved_on_remove)))
            .collect();
        let _ = writeln!(
            s,
            r#"<polyline fill="none" stroke="{}" stroke-width="2" points="{}"/>"#,
            colors[k % 3],
            pts.join(" ")
        );
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" fill="{}">measured, M={ring}</text>"#,
            W - R + 10.0,
            T + 20.0 + 18.0 * k as f64,
            colors[k % 3]
        );
    }
    let ideal: Vec<String> = figs
        .iter()
        .filter(|f| f.ring_size == rings[0])
        .map(|f| format!("{:.1},{:.1}", x(f.backends as f64), y(f.ideal)))
        .collect();
    let _ = writeln!(
        s,
        r#"<polyline fill="none" stroke="black" stroke-dasharray="5,4" points="{}"/>"#,
        ideal.join(" ")
    );
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}">ideal 1/N</text>"#,
        W - R + 10.0,
        T + 20.0 + 18.0 * rings.len() as f64
    );
    s.push_str("</svg>\n");
    s
}

/// Who answered each new connection after a failure, over time.
pub fn timeline(title: &str, run: &FailoverRun) -> String {
    let mut s = frame(
        title,
        "milliseconds since the failure",
        "backend that answered",
    );
    let mut lanes: Vec<String> = run.timeline.iter().map(|p| p.backend.clone()).collect();
    lanes.sort();
    lanes.dedup();
    if let Some(i) = lanes.iter().position(|l| l == "error") {
        let e = lanes.remove(i);
        lanes.push(e);
    }
    let tmax = run.timeline.iter().map(|p| p.ms).fold(1.0, f64::max);
    let x = |ms: f64| L + ms / tmax * (W - L - R);
    let lane_h = (H - T - B) / (lanes.len().max(1) as f64 + 1.0);
    let y = |i: usize| T + lane_h * (i as f64 + 1.0);
    for (i, l) in lanes.iter().enumerate() {
        grid_line(&mut s, l, y(i), "#eee");
    }
    let step = if tmax > 2000.0 { 500.0 } else { 250.0 };
    let mut t = 0.0;
    while t <= tmax {
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="middle">{t}</text>"#,
            x(t),
            H - B + 16.0
        );
        t += step;
    }
    for p in &run.timeline {
        let i = lanes.iter().position(|l| *l == p.backend).unwrap_or(0);
        let color = if p.backend == "error" {
            "#d62728"
        } else {
            "#1f77b4"
        };
        let _ = writeln!(
            s,
            r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{color}"/>"#,
            x(p.ms),
            y(i)
        );
    }
    for (label, ms, color) in [
        ("marked down", run.detect_ms, "#ff7f0e"),
        ("recovered", run.recovered_ms, "#2ca02c"),
    ] {
        let _ = writeln!(
            s,
            r#"<line x1="{0:.1}" y1="{T}" x2="{0:.1}" y2="{1}" stroke="{color}" stroke-dasharray="4,3"/>"#,
            x(ms),
            H - B
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{}" fill="{color}">{label} {ms:.0} ms</text>"#,
            x(ms) + 4.0,
            T + 12.0 + if label == "recovered" { 14.0 } else { 0.0 }
        );
    }
    s.push_str("</svg>\n");
    s
}

/// A horizontal grid line at `y` across the plot, labelled on the left.
fn grid_line(s: &mut String, label: &str, y: f64, stroke: &str) {
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="end">{label}</text><line x1="{L}" y1="{y}" x2="{}" y2="{y}" stroke="{stroke}"/>"#,
        L - 6.0,
        y + 4.0,
        W - R,
    );
}
