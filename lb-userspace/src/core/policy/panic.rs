//! Panic mode, as a last resort. When too little of a VIP is healthy, the
//! health checks themselves may be what is wrong, and spreading over more
//! backends beats crushing the last healthy ones. But a VIP's backends sit
//! in failure domains the mode uses in turn — local before other clouds,
//! tier n before tier n+1, each listed cloud of active-active — and the
//! loss of one domain is what fail-over is for, not a panic. So panic
//! applies only when no domain the mode may use still has
//! `panic_threshold` of its weight healthy; and even then a backend that
//! is down *and* does not answer is left out while any other is healthy.

use super::{EventKind, PolicyEvent, PolicyState, Seen, is_local};
use crate::core::config::{BackendCfg, Node, PolicyMode, Vip};

/// The failure domains the mode uses, in its order of preference: indexes
/// of the active backends of each.
pub(super) fn domains(
    vip: &Vip,
    node: &Node,
    active: &impl Fn(usize, &BackendCfg) -> bool,
) -> Vec<Vec<usize>> {
    let members = |f: &dyn Fn(&BackendCfg) -> bool| -> Vec<usize> {
        vip.backends
            .iter()
            .enumerate()
            .filter(|(i, b)| active(*i, b) && f(b))
            .map(|(i, _)| i)
            .collect()
    };
    match &vip.policy.mode {
        PolicyMode::LocalFirst { locality, .. } => vec![
            members(&|b| is_local(b, node, *locality)),
            members(&|b| !is_local(b, node, *locality)),
        ],
        PolicyMode::ActiveActive { cloud_weights, .. } => cloud_weights
            .iter()
            .filter(|(_, w)| **w > 0)
            .map(|(cloud, _)| members(&|b| b.labels.cloud == *cloud))
            .collect(),
        PolicyMode::ActivePassive { tiers, .. } => (0..tiers.len())
            .map(|t| members(&|b| tiers.iter().position(|s| s.matches(&b.labels)) == Some(t)))
            .collect(),
    }
}

/// The backends to spread over if the VIP is in panic, else `None`;
/// records entering and leaving panic.
pub(super) fn last_resort(
    vip: &Vip,
    domains: &[Vec<usize>],
    seen: &impl Fn(usize) -> Seen,
    state: &mut PolicyState,
    events: &mut Vec<PolicyEvent>,
) -> Option<Vec<usize>> {
    let threshold = vip.policy.panic_threshold;
    let weight = |i: &usize| vip.backends[*i].weight as f64;
    let healthy_fraction = |d: &[usize]| {
        let total: f64 = d.iter().map(weight).sum();
        let up: f64 = d.iter().filter(|i| seen(**i).up).map(weight).sum();
        if total > 0.0 { up / total } else { 0.0 }
    };
    let used: Vec<&Vec<usize>> = domains.iter().filter(|d| !d.is_empty()).collect();
    let panic =
        threshold > 0.0 && !used.is_empty() && used.iter().all(|d| healthy_fraction(d) < threshold);
    let pool: Vec<usize> = used.iter().flat_map(|d| d.iter().copied()).collect();
    let any_up = pool.iter().any(|i| seen(*i).up);
    let spread: Vec<usize> = pool
        .iter()
        .copied()
        .filter(|i| !any_up || seen(*i).up || seen(*i).reachable)
        .collect();
    if panic != state.panic {
        let best = used.iter().map(|d| healthy_fraction(d)).fold(0.0, f64::max);
        events.push(if panic {
            PolicyEvent {
                kind: EventKind::PanicEnter,
                reason: format!(
                    "no failure domain has {:.0}% of its weight healthy (best {:.0}%): spreading over the {} backends that still answer, a last resort",
                    100.0 * threshold,
                    100.0 * best,
                    spread.len()
                ),
            }
        } else {
            PolicyEvent {
                kind: EventKind::PanicExit,
                reason: format!("a failure domain has {:.0}% of its weight healthy again", 100.0 * best),
            }
        });
        state.panic = panic;
    }
    panic.then_some(spread)
}
