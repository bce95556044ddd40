//! Weighted Maglev (Eisenbud et al., NSDI 2016) with weights as ratios.
//!
//! Every backend gets a permutation of the M slots from two hashes of its
//! stable key (offset, skip). Backends then take turns claiming their next
//! preferred free slot. Plain Maglev takes turns round-robin; here the turn
//! goes to the backend with the smallest virtual finish time `(claims + 1) /
//! weight` (weighted fair queueing order), so a backend ends with
//! `M × weight / Σweight` slots give or take one, whatever the weights sum
//! to — ratios, not Katran's first scheme of weights summing to M. With
//! equal weights the order is exactly Maglev's round-robin, and so is the
//! disruption on a change.
//!
//! Deterministic across hosts: backends are ordered by key, the hashes are
//! seeded from configuration, ties break by that order. Two agents with the
//! same inputs build byte-identical tables.

use std::{cmp::Ordering, collections::BinaryHeap, net::IpAddr};

use lb_common::{hash::murmur3_bytes as murmur3, limits::NO_BACKEND};
use sha2::{Digest as _, Sha256};

/// One backend as the table builder sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Stable identity (e.g. the address): decides the permutation.
    pub key: String,
    /// Relative weight; 0 = not in the table.
    pub weight: u32,
    /// Value written into the slots (the data path's backend id).
    pub id: u32,
}

/// The two seeds of the permutation hashes, derived from the fleet seed.
fn seeds(seed: u32) -> (u32, u32) {
    (seed ^ 0x6d61_676c, seed.rotate_left(16) ^ 0x6576_6e21)
}

struct Turn {
    /// Virtual finish time of the next claim, as a fraction num/den.
    num: u64,
    den: u64,
    index: usize,
}

impl PartialEq for Turn {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Turn {}
impl PartialOrd for Turn {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Turn {
    /// Reversed (BinaryHeap is a max-heap): the earliest finish time, then
    /// the lowest index, comes out first.
    fn cmp(&self, other: &Self) -> Ordering {
        let a = self.num as u128 * other.den as u128;
        let b = other.num as u128 * self.den as u128;
        b.cmp(&a).then(other.index.cmp(&self.index))
    }
}

/// Builds the lookup table of prime size `m`; slots hold `Entry::id`, or
/// `NO_BACKEND` when no backend has a weight.
pub fn build(entries: &[Entry], m: u32, seed: u32) -> Vec<u32> {
    let mut sorted: Vec<&Entry> = entries.iter().filter(|e| e.weight > 0).collect();
    sorted.sort_by(|a, b| a.key.cmp(&b.key).then(a.id.cmp(&b.id)));
    let mut table = vec![NO_BACKEND; m as usize];
    if sorted.is_empty() || m == 0 {
        return table;
    }
    let (s1, s2) = seeds(seed);
    let m64 = m as u64;
    let perms: Vec<(u64, u64)> = sorted
        .iter()
        .map(|e| {
            let offset = murmur3(e.key.as_bytes(), s1) as u64 % m64;
            let skip = if m > 1 {
                murmur3(e.key.as_bytes(), s2) as u64 % (m64 - 1) + 1
            } else {
                1
            };
            (offset, skip)
        })
        .collect();
    let mut next = vec![0u64; sorted.len()];
    let mut claims = vec![0u64; sorted.len()];
    let mut heap: BinaryHeap<Turn> = sorted
        .iter()
        .enumerate()
        .map(|(i, e)| Turn {
            num: 1,
            den: e.weight as u64,
            index: i,
        })
        .collect();
    let mut filled = 0u64;
    while filled < m64 {
        let turn = heap.pop().expect("every backend stays in the heap");
        let i = turn.index;
        let (offset, skip) = perms[i];
        loop {
            let slot = ((offset + next[i] * skip) % m64) as usize;
            next[i] += 1;
            if table[slot] == NO_BACKEND {
                table[slot] = sorted[i].id;
                break;
            }
        }
        filled += 1;
        claims[i] += 1;
        heap.push(Turn {
            num: claims[i] + 1,
            den: sorted[i].weight as u64,
            index: i,
        });
    }
    table
}

/// A short, stable fingerprint of a table: the first 8 bytes of the
/// SHA-256 of the backend address in each slot, in slot order, in hex.
/// Addresses, not the host-local slot ids, so two hosts that steer every
/// flow alike show the same digest whatever their id history; weights are
/// in it through the slots each backend holds. `address_of` maps a slot's
/// backend id to its address (`None`: a slot of no known backend).
pub fn digest(table: &[u32], address_of: impl Fn(u32) -> Option<IpAddr>) -> String {
    let mut h = Sha256::new();
    for &id in table {
        match (id, address_of(id)) {
            (NO_BACKEND, _) => h.update([0u8]),
            (_, Some(IpAddr::V4(a))) => {
                h.update([4u8]);
                h.update(a.octets());
            }
            (_, Some(IpAddr::V6(a))) => {
                h.update([6u8]);
                h.update(a.octets());
            }
            (_, None) => h.update([0xffu8]),
        }
    }
    h.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Slots whose value differs between `old` and `new`: (slot, new value).
pub fn changed_slots(old: &[u32], new: &[u32]) -> Vec<(u32, u32)> {
    old.iter()
        .zip(new)
        .enumerate()
        .filter(|(_, (a, b))| a != b)
        .map(|(i, (_, b))| (i as u32, *b))
        .collect()
}

/// Slots per value.
pub fn counts(table: &[u32]) -> std::collections::BTreeMap<u32, usize> {
    let mut c = std::collections::BTreeMap::new();
    for s in table {
        *c.entry(*s).or_default() += 1;
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(weights: &[u32]) -> Vec<Entry> {
        weights
            .iter()
            .enumerate()
            .map(|(i, w)| Entry {
                key: format!("10.0.{}.{}", i / 250, i % 250 + 1),
                weight: *w,
                id: i as u32,
            })
            .collect()
    }

    #[test]
    fn shares_follow_weight_ratios_within_one_percent() {
        // M > 100 × N, mixed weights that do not sum to anything special.
        for weights in [
            vec![1, 1, 1, 1],
            vec![100, 50, 25, 3, 7, 300, 1, 1, 90, 10],
            vec![70, 30],
            vec![1; 40],
        ] {
            let n = weights.len() as u32;
            let m = [1021u32, 4099, 65537]
                .into_iter()
                .find(|m| *m > 100 * n)
                .unwrap();
            let table = build(&entries(&weights), m, 7);
            let total: u32 = weights.iter().sum();
            let c = counts(&table);
            for (i, w) in weights.iter().enumerate() {
                let share = *c.get(&(i as u32)).unwrap_or(&0) as f64 / m as f64;
                let want = *w as f64 / total as f64;
                assert!(
                    (share - want).abs() <= 0.01,
                    "weights {weights:?}: backend {i} share {share:.4} want {want:.4}"
                );
            }
        }
    }

    #[test]
    fn same_input_same_table_whatever_the_order() {
        let mut e = entries(&[5, 3, 9, 1, 1, 1, 20]);
        let a = build(&e, 65537, 42);
        e.reverse();
        let b = build(&e, 65537, 42);
        assert_eq!(a, b);
        let addr = |id: u32| Some(IpAddr::from([10, 0, 0, id as u8]));
        assert_eq!(digest(&a, addr), digest(&b, addr));
        assert_ne!(
            digest(&a, addr),
            digest(&build(&e, 65537, 43), addr),
            "the seed matters"
        );
        // The same steering under other ids: the same digest.
        let shifted: Vec<u32> = a.iter().map(|id| id + 100).collect();
        assert_eq!(
            digest(&a, addr),
            digest(&shifted, |id| addr(id - 100)),
            "ids are host-local; addresses are what every host shares"
        );
    }

    #[test]
    fn zero_weights_and_empty_sets() {
        let t = build(&entries(&[0, 0]), 1021, 1);
        assert!(t.iter().all(|s| *s == NO_BACKEND));
        let t = build(&entries(&[0, 5]), 1021, 1);
        assert!(t.iter().all(|s| *s == 1));
    }

    /// Disruption: removing one of N equally weighted backends should move
    /// its 1/N of the slots and little else. Prints the measured figure.
    #[test]
    fn removing_one_backend_moves_about_one_nth() {
        let m = 65537;
        for n in [5usize, 10, 50, 100] {
            let all = entries(&vec![1; n]);
            let before = build(&all, m, 9);
            let removed = (n / 2) as u32;
            let rest: Vec<Entry> = all.iter().filter(|e| e.id != removed).cloned().collect();
            let after = build(&rest, m, 9);
            let moved = changed_slots(&before, &after).len() as f64 / m as f64;
            let collateral = before
                .iter()
                .zip(&after)
                .filter(|(a, b)| a != b && **a != removed)
                .count() as f64
                / m as f64;
            println!(
                "N={n}: removing one moved {:.4} of slots (ideal {:.4}), {:.4} of them not the removed backend's",
                moved,
                1.0 / n as f64,
                collateral
            );
            assert!(
                moved >= 1.0 / n as f64 - 0.01,
                "at least the removed share moves"
            );
            assert!(
                moved <= 1.0 / n as f64 * 1.6 + 0.005,
                "N={n}: moved {moved}"
            );
        }
    }

    #[test]
    fn adding_one_backend_moves_about_one_over_n_plus_one() {
        let m = 65537;
        let n = 20;
        let all = entries(&vec![1; n + 1]);
        let before = build(&all[..n], m, 3);
        let after = build(&all, m, 3);
        let moved = changed_slots(&before, &after).len() as f64 / m as f64;
        println!(
            "N={n}: adding one moved {moved:.4} of slots (ideal {:.4})",
            1.0 / (n + 1) as f64
        );
        assert!(moved <= 1.6 / (n + 1) as f64);
    }

    #[test]
    fn changed_slots_lists_only_differences() {
        assert_eq!(changed_slots(&[1, 2, 3], &[1, 5, 3]), vec![(1, 5)]);
    }
}
