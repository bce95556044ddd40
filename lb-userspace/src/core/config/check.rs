//! Rules over the whole VIP list, which no single VIP can check: one
//! service per (address, port, protocol), unique names, and the limits.
//! The file's validation and the merge of every source (file, etcd, API)
//! run this same check, so a VIP is refused for the same reason whichever
//! way it came.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use super::{
    FieldError,
    model::{Limits, TenantQuota, Vip},
};

/// Problems of `vips` as a whole; `place(i)` is the path of VIP `i` in the
/// caller's terms (`vips[2]` for a file).
pub fn vips(
    vips: &[Vip],
    limits: &Limits,
    tenants: &BTreeMap<String, TenantQuota>,
    place: impl Fn(usize) -> String,
) -> Vec<FieldError> {
    let mut errors = tenancy(vips, tenants, &place);
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

/// Tenants do not share addresses (a VIP address or a backend address of
/// one tenant's VIP is never another tenant's), and each stays within its
/// quotas.
fn tenancy(
    vips: &[Vip],
    tenants: &BTreeMap<String, TenantQuota>,
    place: &impl Fn(usize) -> String,
) -> Vec<FieldError> {
    let mut errors = vec![];
    // Address -> (tenant, VIP index) of its first user.
    let mut vip_addrs: BTreeMap<IpAddr, (&str, usize)> = BTreeMap::new();
    let mut backend_addrs: BTreeMap<IpAddr, (&str, usize)> = BTreeMap::new();
    for (i, v) in vips.iter().enumerate() {
        match vip_addrs.get(&v.address) {
            Some(&(t, other)) if t != v.tenant.as_str() => errors.push(FieldError {
                path: format!("{}.address", place(i)),
                message: format!(
                    "{} belongs to tenant {t:?} (VIP {:?}); tenant {:?} cannot use it",
                    v.address, vips[other].name, v.tenant
                ),
            }),
            Some(_) => {}
            None => {
                vip_addrs.insert(v.address, (v.tenant.as_str(), i));
            }
        }
        for (j, b) in v.backends.iter().enumerate() {
            match backend_addrs.get(&b.address) {
                Some(&(t, other)) if t != v.tenant.as_str() => errors.push(FieldError {
                    path: format!("{}.backends[{j}].address", place(i)),
                    message: format!(
                        "{} is a backend of tenant {t:?} (VIP {:?}); tenant {:?} cannot use it",
                        b.address, vips[other].name, v.tenant
                    ),
                }),
                Some(_) => {}
                None => {
                    backend_addrs.insert(b.address, (v.tenant.as_str(), i));
                }
            }
        }
    }
    for (name, q) in tenants {
        let mine: Vec<(usize, &Vip)> = vips
            .iter()
            .enumerate()
            .filter(|(_, v)| &v.tenant == name)
            .collect();
        let over = |what: &str, got: u64, max: Option<u32>| {
            max.filter(|m| got > u64::from(*m)).map(|m| FieldError {
                path: format!("tenants.{name}.{what}"),
                message: format!("tenant {name:?} has {got}, over its quota of {m}"),
            })
        };
        errors.extend(over("max_vips", mine.len() as u64, q.max_vips));
        let backends = mine.iter().map(|(_, v)| v.backends.len() as u64).sum();
        errors.extend(over("max_backends", backends, q.max_backends));
        let lists = mine
            .iter()
            .map(|(_, v)| (v.access.allow.len() + v.access.deny.len()) as u64)
            .sum();
        errors.extend(over("max_allow_list", lists, q.max_allow_list));
        if let Some(max) = q.max_new_flows_per_sec {
            let mut sum = 0u64;
            for (i, v) in &mine {
                match v.access.rate_limit.new_flows_per_sec {
                    Some(r) => sum += u64::from(r),
                    None => errors.push(FieldError {
                        path: format!("{}.rate_limit.new_flows_per_sec", place(*i)),
                        message: format!(
                            "is required: tenant {name:?} has a new-flow quota ({max}/s over its VIPs)"
                        ),
                    }),
                }
            }
            errors.extend(over("max_new_flows_per_sec", sum, Some(max)));
        }
    }
    errors
}
