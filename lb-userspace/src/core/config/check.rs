//! Rules over the whole VIP list, which no single VIP can check: one
//! service per (address, port, protocol), unique names, and the limits.
//! The file's validation and the merge of every source (file, etcd, API)
//! run this same check, so a VIP is refused for the same reason whichever
//! way it came.

use std::collections::{BTreeMap, BTreeSet};

use super::{
    FieldError,
    model::{Limits, Vip},
};

/// Problems of `vips` as a whole; `place(i)` is the path of VIP `i` in the
/// caller's terms (`vips[2]` for a file).
pub fn vips(vips: &[Vip], limits: &Limits, place: impl Fn(usize) -> String) -> Vec<FieldError> {
    let mut errors = vec![];
    let mut services: BTreeMap<_, usize> = BTreeMap::new();
    let mut names = BTreeSet::new();
    for (i, v) in vips.iter().enumerate() {
        if let Some(other) = services.insert(v.ident(), i) {
            errors.push(FieldError {
                path: format!("{}.address", place(i)),
                message: format!(
                    "{}:{}/{} is already served by VIP {:?} ({})",
                    v.address,
                    v.port,
                    v.protocol.name(),
                    vips[other].name,
                    place(other)
                ),
            });
        }
        if !names.insert(&v.name) {
            errors.push(FieldError {
                path: format!("{}.name", place(i)),
                message: format!("{:?} is used by another VIP", v.name),
            });
        }
    }
    if vips.len() as u64 > limits.max_vips as u64 {
        errors.push(FieldError {
            path: "vips".into(),
            message: format!(
                "{} VIPs exceed limits.max_vips ({})",
                vips.len(),
                limits.max_vips
            ),
        });
    }
    let backends: usize = vips.iter().map(|v| v.backends.len()).sum();
    if backends as u64 > limits.max_backends as u64 {
        errors.push(FieldError {
            path: "vips".into(),
            message: format!(
                "{backends} backends in all exceed limits.max_backends ({})",
                limits.max_backends
            ),
        });
    }
    errors
}
