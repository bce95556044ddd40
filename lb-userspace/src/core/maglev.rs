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
//!
//! Maglev moves more than the failed backend's share when one leaves (at
//! N = 1000, 6.6× the ideal 1/N), so failures do not rebuild the table:
//! a [`Plan`] is built over the configured backends at their configured
//! weights, and [`Plan::serve`] moves only the slots of backends that are
//! down, drained or out of the active tier onto the serving ones. Planned
//! changes (the configuration) make a new plan.

use std::net::IpAddr;

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

/// One backend's walk through its permutation: the next slot it prefers.
/// `offset + k × skip (mod m)` as a running position, so a probe is an add
/// and a conditional subtract, not a 64-bit division (which was most of
/// the build's time). Unrolling four probes per branch was measured
/// slower, not faster.
struct Walk {
    pos: u32,
    skip: u32,
}

/// `a + b (mod m)` for `a, b < m`.
#[inline(always)]
fn add_mod(a: u32, b: u32, m: u32) -> u32 {
    // No overflow: ring sizes are at most 655,373 (config).
    let s = a + b;
    if s >= m { s - m } else { s }
}

impl Walk {
    fn new(key: &str, m: u32, (s1, s2): (u32, u32)) -> Walk {
        let offset = (murmur3(key.as_bytes(), s1) as u64 % m as u64) as u32;
        let skip = if m > 1 {
            (murmur3(key.as_bytes(), s2) as u64 % (m as u64 - 1) + 1) as u32
        } else {
            0
        };
        Walk { pos: offset, skip }
    }

    /// Claims the next free slot of the permutation for `id`. The table
    /// has a free slot (the caller counts), so the walk ends: `skip` and a
    /// prime `m` make the permutation visit every slot.
    #[inline(always)]
    fn claim(&mut self, table: &mut [u32], m: u32, id: u32) {
        loop {
            let p = self.pos;
            self.pos = add_mod(p, self.skip, m);
            if table[p as usize] == NO_BACKEND {
                table[p as usize] = id;
                return;
            }
        }
    }
}

/// The weighted turn order: virtual finish time `(claims + 1) / weight`,
/// compared exactly by cross-multiplying: claims + 1 ≤ m ≤ 2^32 and
/// weights are u32, so every product is below 2^64.
#[derive(Clone, Copy)]
struct Turn {
    num: u64,
    den: u64,
    index: u32,
}

impl Turn {
    /// `self` claims before `other`: the earlier finish time, then the
    /// lower index (the backends' key order).
    #[inline(always)]
    fn before(&self, other: &Turn) -> bool {
        let a = self.num * other.den;
        let b = other.num * self.den;
        a < b || (a == b && self.index < other.index)
    }
}

/// A binary min-heap of turns with an in-place "advance the first" step:
/// the winner of each turn goes back with its next finish time in one
/// sift-down, half the work of a pop and a push.
struct Turns(Vec<Turn>);

impl Turns {
    fn new(mut turns: Vec<Turn>) -> Turns {
        let n = turns.len();
        for i in (0..n / 2).rev() {
            Self::sift_down(&mut turns, i);
        }
        Turns(turns)
    }

    fn first(&self) -> Turn {
        self.0[0]
    }

    fn advance_first(&mut self, den: u64) {
        let t = &mut self.0[0];
        t.num += 1;
        t.den = den;
        Self::sift_down(&mut self.0, 0);
    }

    fn sift_down(h: &mut [Turn], mut i: usize) {
        let n = h.len();
        let item = h[i];
        loop {
            let l = 2 * i + 1;
            if l >= n {
                break;
            }
            let c = if l + 1 < n && h[l + 1].before(&h[l]) {
                l + 1
            } else {
                l
            };
            if !h[c].before(&item) {
                break;
            }
            h[i] = h[c];
            i = c;
        }
        h[i] = item;
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
    let seeds = seeds(seed);
    let mut walks: Vec<Walk> = sorted.iter().map(|e| Walk::new(&e.key, m, seeds)).collect();
    let ids: Vec<u32> = sorted.iter().map(|e| e.id).collect();
    let mut left = m;
    if sorted.iter().all(|e| e.weight == sorted[0].weight) {
        // Equal weights: the finish-time order is plain round-robin in key
        // order (Maglev's own), without the heap.
        'fill: loop {
            for (walk, &id) in walks.iter_mut().zip(&ids) {
                walk.claim(&mut table, m, id);
                left -= 1;
                if left == 0 {
                    break 'fill;
                }
            }
        }
        return table;
    }
    let weights: Vec<u64> = sorted.iter().map(|e| e.weight as u64).collect();
    let mut turns = Turns::new(
        (0..sorted.len())
            .map(|i| Turn {
                num: 1,
                den: weights[i],
                index: i as u32,
            })
            .collect(),
    );
    while left > 0 {
        let i = turns.first().index as usize;
        walks[i].claim(&mut table, m, ids[i]);
        left -= 1;
        turns.advance_first(weights[i]);
    }
    table
}

/// The table of the planned backends — the configured ones at their
/// configured weights, healthy or not — and what health-driven changes
/// derive from it ([`Plan::serve`]). Built once per planned change.
pub struct Plan {
    base: Vec<u32>,
    /// Planned backends in key order (every host's common order): id and
    /// planned weight.
    order: Vec<(u32, u32)>,
    /// Slots each planned backend holds in `base`, by position in `order`.
    base_slots: Vec<u64>,
    /// Each slot's backend as its position in `order` (u32::MAX: none),
    /// so a remap walks the table without looking ids up.
    base_pos: Vec<u32>,
    seed: u32,
}

impl Plan {
    pub fn new(planned: &[Entry], m: u32, seed: u32) -> Plan {
        let mut sorted: Vec<&Entry> = planned.iter().filter(|e| e.weight > 0).collect();
        sorted.sort_by(|a, b| a.key.cmp(&b.key).then(a.id.cmp(&b.id)));
        sorted.dedup_by_key(|e| e.id);
        let order: Vec<(u32, u32)> = sorted.iter().map(|e| (e.id, e.weight)).collect();
        let base = build(planned, m, seed);
        let index = IdIndex::new(order.iter().map(|(id, _)| *id));
        let mut base_slots = vec![0u64; order.len()];
        let base_pos: Vec<u32> = base
            .iter()
            .map(|id| match index.get(*id) {
                Some(i) => {
                    base_slots[i] += 1;
                    i as u32
                }
                None => u32::MAX,
            })
            .collect();
        Plan {
            base,
            order,
            base_slots,
            base_pos,
            seed,
        }
    }

    /// The table with every planned backend serving: Maglev's.
    pub fn base(&self) -> &[u32] {
        &self.base
    }

    /// The table for the weights the backends serve with now
    /// (`weight_now(id)`; 0: down, drained, not in the active tier). A
    /// slot keeps its planned backend while that one serves and its share
    /// did not shrink (one whose share shrank keeps its planned slots in
    /// proportion); every other slot goes to a serving backend below its
    /// fair share (`⌈m × w / Σw⌉`): the first in the slot's own probe
    /// order over the planned backends (a hash of the seed, the slot and
    /// the probe number picks each one).
    ///
    /// So a failure moves the failed backend's slots and no others, and the
    /// table is a function of the sets alone: the order of failures leaves
    /// no trace, and every host with the same inputs builds the same
    /// table. Planned changes (backends added to or removed from the
    /// configuration, new configured weights) make a new plan, with
    /// Maglev's behaviour.
    pub fn serve(&self, weight_now: impl Fn(u32) -> u32) -> Vec<u32> {
        let m = self.base.len();
        let now: Vec<u64> = self
            .order
            .iter()
            .map(|(id, _)| weight_now(*id) as u64)
            .collect();
        let total: u64 = now.iter().sum();
        if total == 0 {
            return vec![NO_BACKEND; m];
        }
        let planned_total: u64 = self.order.iter().map(|(_, w)| *w as u64).sum();
        let share: Vec<u64> = now.iter().map(|w| (m as u64 * w).div_ceil(total)).collect();
        // Planned slots scaled by how the backend's share changed: exactly
        // its planned count while every backend serves at its planned
        // weight, so the build's own rounding is never undone.
        let keep: Vec<u64> = (0..self.order.len())
            .map(|i| {
                let num = self.base_slots[i] as u128 * now[i] as u128 * planned_total as u128;
                num.div_ceil(total as u128 * self.order[i].1 as u128) as u64
            })
            .collect();
        let mut count = vec![0u64; self.order.len()];
        let mut out = self.base.clone();
        let mut free = vec![];
        for (slot, &i) in self.base_pos.iter().enumerate() {
            match keep.get(i as usize) {
                Some(&k) if count[i as usize] < k => count[i as usize] += 1,
                _ => free.push(slot),
            }
        }
        if free.is_empty() {
            return out;
        }
        let serving = now.iter().filter(|w| **w > 0).count();
        // Probing the planned order pays off while most planned backends
        // serve; with few left (a tier failed over), straight to the list
        // of backends with room.
        let probes = if serving * 4 >= self.order.len() {
            16
        } else {
            0
        };
        let mut room: Vec<usize> = (0..self.order.len())
            .filter(|&i| count[i] < share[i])
            .collect();
        let seed = (self.seed as u64) << 32;
        for slot in free {
            let mut h = splitmix64(seed | slot as u64);
            let mut pick = None;
            for _ in 0..probes {
                let i = (h % self.order.len() as u64) as usize;
                if count[i] < share[i] {
                    pick = Some(i);
                    break;
                }
                h = splitmix64(h);
            }
            let i = match pick {
                Some(i) => i,
                // Some backend has room: fewer than m slots are placed,
                // and the shares sum to at least m.
                None => loop {
                    let r = (h % room.len() as u64) as usize;
                    if count[room[r]] < share[room[r]] {
                        break room[r];
                    }
                    room.swap_remove(r);
                    h = splitmix64(h);
                },
            };
            out[slot] = self.order[i].0;
            count[i] += 1;
        }
        out
    }
}

/// Backend id → position, looked up once per slot: a dense array, as the
/// agent's ids are small (slots of the data path's backend array); a hash
/// map should anything hand in ids far beyond that.
enum IdIndex {
    Dense(Vec<u32>),
    Sparse(std::collections::HashMap<u32, usize>),
}

impl IdIndex {
    fn new(ids: impl Iterator<Item = u32> + Clone) -> IdIndex {
        let max = ids.clone().max().unwrap_or(0);
        if max < 1 << 20 {
            let mut v = vec![u32::MAX; max as usize + 1];
            for (i, id) in ids.enumerate() {
                v[id as usize] = i as u32;
            }
            IdIndex::Dense(v)
        } else {
            IdIndex::Sparse(ids.enumerate().map(|(i, id)| (id, i)).collect())
        }
    }

    #[inline(always)]
    fn get(&self, id: u32) -> Option<usize> {
        match self {
            IdIndex::Dense(v) => match v.get(id as usize) {
                Some(&i) if i != u32::MAX => Some(i as usize),
                _ => None,
            },
            IdIndex::Sparse(m) => m.get(&id).copied(),
        }
    }
}

/// A 64-bit mix (splitmix64's finaliser): the per-slot probe order.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
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

    use std::{cmp::Ordering, collections::BinaryHeap};

    struct RefTurn {
        /// Virtual finish time of the next claim, as a fraction num/den.
        num: u64,
        den: u64,
        index: usize,
    }

    impl PartialEq for RefTurn {
        fn eq(&self, other: &Self) -> bool {
            self.cmp(other) == Ordering::Equal
        }
    }
    impl Eq for RefTurn {}
    impl PartialOrd for RefTurn {
        fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
            Some(self.cmp(other))
        }
    }
    impl Ord for RefTurn {
        /// Reversed (BinaryHeap is a max-heap): the earliest finish time, then
        /// the lowest index, comes out first.
        fn cmp(&self, other: &Self) -> Ordering {
            let a = self.num as u128 * other.den as u128;
            let b = other.num as u128 * self.den as u128;
            b.cmp(&a).then(other.index.cmp(&self.index))
        }
    }

    /// The first implementation, kept as the specification: a heap of turns
    /// and a modulo per probe. The fast build must fill exactly the same table.
    fn reference_build(entries: &[Entry], m: u32, seed: u32) -> Vec<u32> {
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
        let mut heap: BinaryHeap<RefTurn> = sorted
            .iter()
            .enumerate()
            .map(|(i, e)| RefTurn {
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
            heap.push(RefTurn {
                num: claims[i] + 1,
                den: sorted[i].weight as u64,
                index: i,
            });
        }
        table
    }

    #[test]
    fn fast_build_fills_the_same_table_as_the_reference() {
        for (weights, m) in [
            (vec![1u32; 7], 1021u32),
            (vec![1; 1000], 65537),
            (vec![100, 50, 25, 3, 7, 300, 1, 1, 90, 10], 4099),
            (vec![1_000_000, 999_999, 3, 1], 65537),
            ((1..=200).collect::<Vec<_>>(), 65537),
            (vec![5], 13),
        ] {
            let e = entries(&weights);
            for seed in [0, 7, 0xdead_beef] {
                assert!(
                    build(&e, m, seed) == reference_build(&e, m, seed),
                    "weights {:?}… m {m} seed {seed}",
                    &weights[..weights.len().min(4)]
                );
            }
        }
    }

    fn serving(all: &[Entry], out: &[u32]) -> Vec<Entry> {
        all.iter()
            .map(|e| Entry {
                weight: if out.contains(&e.id) { 0 } else { e.weight },
                ..e.clone()
            })
            .collect()
    }

    /// The table with `serving`'s weights now, planned as `planned`.
    fn serve_now(planned: &[Entry], serving: &[Entry], seed: u32) -> Vec<u32> {
        let plan = Plan::new(planned, 65537, seed);
        plan.serve(|id| serving.iter().find(|e| e.id == id).map_or(0, |e| e.weight))
    }

    /// max / mean of the serving backends' slot counts.
    fn balance(table: &[u32], serving: &[Entry]) -> f64 {
        let c = counts(table);
        let n = serving.iter().filter(|e| e.weight > 0).count();
        let max = serving
            .iter()
            .filter(|e| e.weight > 0)
            .map(|e| *c.get(&e.id).unwrap_or(&0))
            .max()
            .unwrap();
        max as f64 / (table.len() as f64 / n as f64)
    }

    #[test]
    fn with_every_backend_serving_the_table_is_maglevs() {
        for weights in [vec![1u32; 100], vec![100, 50, 25, 3, 7, 300, 1, 1, 90, 10]] {
            let e = entries(&weights);
            let base = build(&e, 65537, 5);
            let same = serve_now(&e, &e, 5) == base;
            assert!(same, "weights {weights:?}");
        }
    }

    #[test]
    fn a_failure_moves_exactly_the_failed_backends_slots() {
        let m = 65537;
        let all = entries(&vec![1; 1000]);
        let base = build(&all, m, 11);
        for failed in [0u32, 499, 999] {
            let after = serve_now(&all, &serving(&all, &[failed]), 11);
            let moved = changed_slots(&base, &after);
            let owned = base.iter().filter(|b| **b == failed).count();
            assert_eq!(moved.len(), owned, "only its slots move");
            assert!(after.iter().all(|b| *b != failed));
            assert!(moved.iter().all(|(s, _)| base[*s as usize] == failed));
        }
    }

    #[test]
    fn the_table_depends_on_the_failed_set_not_the_order_of_failures() {
        let all = entries(&vec![1; 100]);
        let base = build(&all, 65537, 3);
        // Whatever happened before, the same set gives the same table: the
        // remap keeps no history.
        let ab = serve_now(&all, &serving(&all, &[4, 40]), 3);
        let mut reversed = serving(&all, &[40, 4]);
        reversed.reverse();
        assert_eq!(ab, serve_now(&all, &reversed, 3));
        // A second failure moves the second backend's slots, and of the
        // first one's (already spread) slots only those that now land
        // elsewhere because shares grew; the rest of the table stays.
        let a = serve_now(&all, &serving(&all, &[4]), 3);
        let untouched = base
            .iter()
            .zip(&a)
            .zip(&ab)
            .filter(|((b, _), _)| **b != 4 && **b != 40)
            .all(|((b, x), y)| b == x && x == y);
        assert!(untouched, "healthy backends' own slots never move");
    }

    #[test]
    fn serving_backends_stay_balanced_when_some_fail() {
        for (n, bound) in [(100usize, 1.015), (1000, 1.06)] {
            let all = entries(&vec![1; n]);
            for failed in [1usize, 10] {
                let out: Vec<u32> = (0..failed as u32).map(|i| i * 7 % n as u32).collect();
                let srv = serving(&all, &out);
                let t = serve_now(&all, &srv, 1);
                let b = balance(&t, &srv);
                assert!(b <= bound, "N={n}, {failed} failed: max/mean {b:.4}");
                assert!(t.iter().all(|id| !out.contains(id)));
            }
        }
    }

    #[test]
    fn a_tier_failover_fills_the_whole_table_from_the_few_left() {
        let all = entries(&vec![1; 1000]);
        let out: Vec<u32> = (3..1000).collect();
        let srv = serving(&all, &out);
        let t = serve_now(&all, &srv, 2);
        let c = counts(&t);
        assert_eq!(c.len(), 3);
        assert!(c.values().all(|n| n.abs_diff(65537 / 3) <= 1), "{c:?}");
        // Nothing serving: an empty table, as build gives.
        let none = serving(&all, &(0..1000).collect::<Vec<_>>());
        assert!(serve_now(&all, &none, 2).iter().all(|s| *s == NO_BACKEND));
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
