//! Maglev table quality and cost: build time, balance and disruption.

use std::time::Instant;

use lb::core::maglev::{Entry, build, changed_slots, counts};
use serde::Serialize;

#[derive(Clone, Debug, Serialize)]
pub struct MaglevFigure {
    pub backends: usize,
    pub ring_size: u32,
    pub build_ms: f64,
    /// Largest over smallest slot count, equal weights (1.0 is perfect).
    pub max_over_min: f64,
    /// Largest relative deviation of a share from its weight share, with
    /// mixed weights 1..=4.
    pub worst_weighted_error: f64,
    /// Fraction of slots that changed when one backend was removed, and
    /// the ideal (1/N).
    pub moved_on_remove: f64,
    pub moved_on_add: f64,
    pub ideal: f64,
}

fn entries(n: usize, weight: impl Fn(usize) -> u32) -> Vec<Entry> {
    (0..n)
        .map(|i| Entry {
            key: format!("10.{}.{}.{}", i >> 16, (i >> 8) & 0xff, i & 0xff),
            weight: weight(i),
            id: i as u32,
        })
        .collect()
}

pub fn measure(sizes: &[usize], rings: &[u32]) -> Vec<MaglevFigure> {
    let mut out = vec![];
    for &m in rings {
        for &n in sizes {
            let equal = entries(n, |_| 1);
            let t0 = Instant::now();
            let table = build(&equal, m, 7);
            let build_ms = t0.elapsed().as_secs_f64() * 1000.0;
            let c = counts(&table);
            let (max, min) = (
                c.values().max().copied().unwrap_or(0),
                c.values().min().copied().unwrap_or(1),
            );
            let weighted = entries(n, |i| 1 + (i % 4) as u32);
            let wt = build(&weighted, m, 7);
            let wc = counts(&wt);
            let total_w: u32 = weighted.iter().map(|e| e.weight).sum();
            let worst = weighted
                .iter()
                .map(|e| {
                    let want = e.weight as f64 / total_w as f64;
                    let got = *wc.get(&e.id).unwrap_or(&0) as f64 / m as f64;
                    ((got - want) / want).abs()
                })
                .fold(0.0, f64::max);
            let removed: Vec<Entry> = equal
                .iter()
                .filter(|e| e.id != (n / 2) as u32)
                .cloned()
                .collect();
            let after_remove = build(&removed, m, 7);
            let added = entries(n + 1, |_| 1);
            let after_add = build(&added, m, 7);
            out.push(MaglevFigure {
                backends: n,
                ring_size: m,
                build_ms,
                max_over_min: max as f64 / min.max(1) as f64,
                worst_weighted_error: worst,
                moved_on_remove: changed_slots(&table, &after_remove).len() as f64 / m as f64,
                moved_on_add: changed_slots(&table, &after_add).len() as f64 / m as f64,
                ideal: 1.0 / n as f64,
            });
        }
    }
    out
}
