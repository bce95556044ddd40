//! Maglev table quality and cost: build time, balance and disruption, and
//! the health-driven remap (`maglev::Plan::serve`): churn and balance when
//! backends fail.

use std::time::Instant;

use lb::core::maglev::{Entry, Plan, build, changed_slots, counts};
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
            let (table, build_ms) = timed(|| build(&equal, m, 7));
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

/// The median of five runs of `f`, in ms, and its result.
fn timed<T>(mut f: impl FnMut() -> T) -> (T, f64) {
    let mut ms = vec![];
    let mut out = None;
    for _ in 0..5 {
        let t0 = Instant::now();
        out = Some(f());
        ms.push(t0.elapsed().as_secs_f64() * 1000.0);
    }
    ms.sort_by(f64::total_cmp);
    (out.expect("ran"), ms[2])
}

/// Backends failing (health or drain) against planned changes, N backends
/// of equal weight, M = 65537.
#[derive(Clone, Debug, Serialize)]
pub struct ChurnFigure {
    pub backends: usize,
    pub ring_size: u32,
    pub failed: usize,
    /// Slots moved over the ideal (M × failed / N):
    /// health-driven (planned table + remap) and planned (the backends
    /// removed from the configuration, Maglev rebuilt), the mean over
    /// several choices of the failed backends.
    pub churn_ratio_health: f64,
    pub churn_ratio_planned: f64,
    /// max / mean slot count of the serving backends, the worst choice.
    pub balance_health: f64,
    pub balance_planned: f64,
    /// Median time of the remap alone, ms.
    pub remap_ms: f64,
}

pub fn churn(sizes: &[usize], failures: &[usize], m: u32) -> Vec<ChurnFigure> {
    let mut out = vec![];
    for &n in sizes {
        let all = entries(n, |_| 1);
        let plan = Plan::new(&all, m, 7);
        let base = plan.base();
        for &failed in failures {
            let (mut health, mut planned) = (vec![], vec![]);
            let (mut bal_h, mut bal_p, mut remap_ms) = (0f64, 0f64, 0f64);
            // Five choices of which backends fail, spread over the key order.
            for choice in 0..5 {
                let out_ids: Vec<u32> = (0..failed)
                    .map(|k| ((choice * 7919 + k * 104_729) % n) as u32)
                    .collect();
                let serving: Vec<Entry> = all
                    .iter()
                    .map(|e| Entry {
                        weight: if out_ids.contains(&e.id) { 0 } else { e.weight },
                        ..e.clone()
                    })
                    .collect();
                let (remapped, ms) =
                    timed(|| plan.serve(|id| if out_ids.contains(&id) { 0 } else { 1 }));
                remap_ms = remap_ms.max(ms);
                let rebuilt = build(&serving, m, 7);
                // The failed backends' fair share of the slots (the
                // paper's measure: 1 of 1000 removed, 0.1% of M ideal).
                let ideal = m as f64 * failed as f64 / n as f64;
                health.push(changed_slots(base, &remapped).len() as f64 / ideal);
                planned.push(changed_slots(base, &rebuilt).len() as f64 / ideal);
                bal_h = bal_h.max(balance(&remapped, n - failed));
                bal_p = bal_p.max(balance(&rebuilt, n - failed));
            }
            let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
            out.push(ChurnFigure {
                backends: n,
                ring_size: m,
                failed,
                churn_ratio_health: mean(&health),
                churn_ratio_planned: mean(&planned),
                balance_health: bal_h,
                balance_planned: bal_p,
                remap_ms,
            });
        }
    }
    out
}

/// max / mean slot count over `serving` backends.
fn balance(table: &[u32], serving: usize) -> f64 {
    let max = counts(table).values().max().copied().unwrap_or(0);
    max as f64 / (table.len() as f64 / serving as f64)
}
