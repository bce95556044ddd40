//! Where the running configuration comes from, and how the pieces combine:
//! the file (node, limits, knobs, and VIPs), VIPs from etcd (by key,
//! overriding file VIPs of the same name), backend lists pushed through the
//! API (replacing a VIP's list), and per-backend admin overrides (drain,
//! maintenance, weight). The merged result is checked like a file before
//! anything is applied, by the same cross-VIP check as a file.

use std::{collections::BTreeMap, net::IpAddr};

use serde::{Deserialize, Serialize};

use crate::core::config::{AdminState, BackendCfg, Config, FieldError, Labels, Vip, check_vips};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Override {
    pub state: Option<AdminState>,
    pub weight: Option<u32>,
}

#[derive(Clone, Debug)]
pub struct Sources {
    pub file: Config,
    /// etcd key → VIP.
    pub etcd: BTreeMap<String, Vip>,
    /// VIP name → backend list pushed through the API.
    pub pushed: BTreeMap<String, Vec<BackendCfg>>,
    /// (VIP name, backend address) → override.
    pub overrides: BTreeMap<(String, IpAddr), Override>,
}

impl Sources {
    pub fn new(file: Config) -> Self {
        Self {
            file,
            etcd: BTreeMap::new(),
            pushed: BTreeMap::new(),
            overrides: BTreeMap::new(),
        }
    }

    /// The configuration these sources add up to, or why it is invalid.
    pub fn merged(&self) -> Result<Config, Vec<FieldError>> {
        let mut c = self.file.clone();
        // Where each merged VIP came from, for the error paths: its place
        // in the file, or its etcd key.
        let mut origin: Vec<String> = (0..c.vips.len()).map(|i| format!("vips[{i}]")).collect();
        for (key, v) in &self.etcd {
            match c.vips.iter().position(|f| f.name == v.name) {
                Some(i) => {
                    c.vips[i] = v.clone();
                    origin[i] = key.clone();
                }
                None => {
                    c.vips.push(v.clone());
                    origin.push(key.clone());
                }
            }
        }
        for v in &mut c.vips {
            if let Some(list) = self.pushed.get(&v.name) {
                v.backends = list.clone();
            }
            for b in &mut v.backends {
                if let Some(o) = self.overrides.get(&(v.name.clone(), b.address)) {
                    if let Some(s) = o.state {
                        b.state = s;
                    }
                    if let Some(w) = o.weight {
                        b.weight = w;
                    }
                }
            }
        }
        let errors = check_vips(&c.vips, &c.limits, &c.tenants, |i| origin[i].clone());
        if errors.is_empty() {
            Ok(c)
        } else {
            Err(errors)
        }
    }
}

/// Which backends a failover drill fails.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "value", rename_all = "lowercase")]
pub enum FailSelector {
    Cloud(String),
    Region(String),
    Zone(String),
    Backend(IpAddr),
}

impl FailSelector {
    /// Parses `cloud=X`, `region=Y`, `zone=Z` or `backend=ADDR`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (k, v) = s.split_once('=').ok_or_else(|| {
            format!("expected cloud=X, region=Y, zone=Z or backend=ADDR, got {s:?}")
        })?;
        if v.is_empty() {
            return Err(format!("{k}= needs a value"));
        }
        match k {
            "cloud" => Ok(Self::Cloud(v.into())),
            "region" => Ok(Self::Region(v.into())),
            "zone" => Ok(Self::Zone(v.into())),
            "backend" => v
                .parse()
                .map(Self::Backend)
                .map_err(|_| format!("backend={v}: not an IP address")),
            other => Err(format!(
                "unknown selector {other:?}: use cloud, region, zone or backend"
            )),
        }
    }

    pub fn matches(&self, addr: IpAddr, l: &Labels) -> bool {
        match self {
            Self::Cloud(c) => l.cloud == *c,
            Self::Region(r) => l.region == *r,
            Self::Zone(z) => l.zone == *z,
            Self::Backend(a) => *a == addr,
        }
    }
}

impl std::fmt::Display for FailSelector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Cloud(c) => write!(f, "cloud={c}"),
            Self::Region(r) => write!(f, "region={r}"),
            Self::Zone(z) => write!(f, "zone={z}"),
            Self::Backend(a) => write!(f, "backend={a}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::config;

    fn base() -> Config {
        config::parse(
            "limits: {max_vips: 2, max_backends: 4}\nvips: [{name: a, address: 10.0.0.1, port: 80, backends: [{address: 10.0.1.1}, {address: 10.0.1.2}]}]",
            "t",
        )
        .unwrap()
    }

    #[test]
    fn layers_combine_in_order() {
        let mut s = Sources::new(base());
        let extra = config::parse_vip(
            "{name: b, address: 10.0.0.2, port: 80, backends: [{address: 10.0.2.1}]}",
            "etcd",
            &s.file,
        )
        .unwrap();
        s.etcd.insert("/lb/vips/b".into(), extra);
        s.pushed.insert(
            "a".into(),
            config::parse_backends("[{address: 10.0.1.9, weight: 7}]", "api").unwrap(),
        );
        s.overrides.insert(
            ("a".into(), "10.0.1.9".parse().unwrap()),
            Override {
                state: Some(AdminState::Draining),
                weight: None,
            },
        );
        let c = s.merged().unwrap();
        assert_eq!(c.vips.len(), 2);
        assert_eq!(c.vips[0].backends.len(), 1);
        assert_eq!(c.vips[0].backends[0].state, AdminState::Draining);
        assert_eq!(c.vips[0].backends[0].weight, 7);
    }

    #[test]
    fn merged_conflicts_are_reported() {
        let mut s = Sources::new(base());
        let clash =
            config::parse_vip("{name: c, address: 10.0.0.1, port: 80}", "etcd", &s.file).unwrap();
        s.etcd.insert("/lb/vips/c".into(), clash);
        let e = s.merged().unwrap_err();
        assert!(
            e[0].message.contains("already served by VIP \"a\""),
            "{e:?}"
        );
        let mut s = Sources::new(base());
        s.pushed.insert("a".into(), config::parse_backends("[{address: 10.0.1.1}, {address: 10.0.1.2}, {address: 10.0.1.3}, {address: 10.0.1.4}, {address: 10.0.1.5}]", "api").unwrap());
        assert!(
            s.merged().unwrap_err()[0]
                .message
                .contains("exceed limits.max_backends (4)")
        );
    }

    #[test]
    fn fail_selectors() {
        assert_eq!(
            FailSelector::parse("cloud=aws").unwrap(),
            FailSelector::Cloud("aws".into())
        );
        assert_eq!(
            FailSelector::parse("backend=10.0.0.1").unwrap().to_string(),
            "backend=10.0.0.1"
        );
        assert!(
            FailSelector::parse("provider=aws")
                .unwrap_err()
                .contains("unknown selector")
        );
        assert!(FailSelector::parse("aws").is_err());
        assert!(FailSelector::parse("backend=x").is_err());
    }
}
