//! Property tests: no document makes the parser panic, and a rejection
//! says where. Documents are random YAML trees over the schema's own field
//! names (so they reach deep into the validator, not just the first type
//! error), and the shipped configurations with one value replaced by
//! anything — huge numbers, negative ones, wrong types, nested junk.

use proptest::prelude::*;
use serde_norway::{Mapping, Value};

use super::{ConfigError, parse, parse_backends, parse_vip};

const SHIPPED: [&str; 2] = [
    include_str!("../../../../packaging/lb.yaml"),
    include_str!("../../../../examples/lab.yaml"),
];

/// Field names of the schema, and a few it does not have.
const KEYS: &[&str] = &[
    "node",
    "name",
    "cloud",
    "region",
    "zone",
    "interfaces",
    "xdp_mode",
    "limits",
    "max_vips",
    "max_backends",
    "ring_size",
    "conntrack_size",
    "dataplane",
    "udp_idle_timeout",
    "mtu",
    "gue_port",
    "hash_seed",
    "flood_new_flows_per_sec",
    "encap_source_v4",
    "base",
    "hash_bits",
    "vips",
    "address",
    "port",
    "protocol",
    "hash",
    "forwarding",
    "backends",
    "weight",
    "labels",
    "health_check",
    "type",
    "interval",
    "timeout",
    "rise",
    "fall",
    "jitter",
    "path",
    "policy",
    "mode",
    "tiers",
    "panic_threshold",
    "drain_timeout",
    "failback_after",
    "locality",
    "cloud_weights",
    "overprovisioning",
    "api",
    "socket",
    "metrics",
    "listen",
    "state_dir",
    "allow_no_vips",
    "pin_path",
    "health",
    "unknown_key",
    "",
];

/// Values that have broken parsers before: numbers past every range, as
/// numbers and as durations, negative and non-finite ones, wrong types.
fn hostile() -> Vec<Value> {
    let mut v: Vec<Value> = [
        "1e20",
        "1e20s",
        "1e300ms",
        "99999999999999999999h",
        "18446744073709551616",
        "-1s",
        "-1",
        "NaNs",
        "infs",
        "inf",
        "0",
        "0s",
        "65536",
        "4294967296",
        "",
        "10.0.0.0/33",
        "300.1.1.1",
        "::ffff:1.2.3.4",
        "\u{202e}",
        "x",
    ]
    .iter()
    .map(|s| Value::String(s.to_string()))
    .collect();
    v.extend(
        [
            1e20,
            -1e20,
            f64::MAX,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
            -0.5,
        ]
        .map(|f| Value::Number(f.into())),
    );
    v.extend([u64::MAX, 1 << 32, 65536].map(|n| Value::Number(n.into())));
    v.extend([i64::MIN, -1].map(|n| Value::Number(n.into())));
    v.extend([
        Value::Null,
        Value::Bool(true),
        Value::Sequence(vec![]),
        Value::Mapping(Mapping::new()),
    ]);
    v
}

/// Scalars that have broken parsers before, and some ordinary ones.
fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| Value::Number(n.into())),
        any::<u64>().prop_map(|n| Value::Number(n.into())),
        prop_oneof![
            Just(1e20),
            Just(-1e20),
            Just(f64::MAX),
            Just(f64::INFINITY),
            Just(f64::NAN),
            Just(0.5),
            Just(-0.0)
        ]
        .prop_map(|f| Value::Number(f.into())),
        prop_oneof![
            Just("1e20"),
            Just("1e20s"),
            Just("99999999999999999999h"),
            Just("-1s"),
            Just("NaNs"),
            Just("infs"),
            Just("10s"),
            Just("300ms"),
            Just("0"),
            Just("65536"),
            Just("4294967296"),
            Just("10.0.0.1"),
            Just("fd00::1"),
            Just("10.0.0.0/33"),
            Just("300.1.1.1"),
            Just("02:00:00:00:00:01"),
            Just("driver"),
            Just("active-passive"),
            Just("ipip"),
            Just("tcp"),
            Just(""),
            Just("\u{0}\u{ffff}"),
        ]
        .prop_map(|s| Value::String(s.into())),
        "[a-z0-9.:/-]{0,12}".prop_map(Value::String),
    ]
}

fn key() -> impl Strategy<Value = Value> {
    prop::sample::select(KEYS).prop_map(|k| Value::String(k.into()))
}

/// A YAML tree up to a few levels deep.
fn tree() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(5, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Sequence),
            prop::collection::vec((key(), inner), 0..6)
                .prop_map(|kv| Value::Mapping(kv.into_iter().collect::<Mapping>())),
        ]
    })
}

/// Every leaf's path, as the validator writes them (`vips[0].port`).
fn leaves(v: &Value, at: String, out: &mut Vec<String>) {
    match v {
        Value::Mapping(m) => {
            for (k, v) in m {
                let k = k.as_str().unwrap_or("?");
                let p = if at.is_empty() {
                    k.to_string()
                } else {
                    format!("{at}.{k}")
                };
                leaves(v, p, out);
            }
        }
        Value::Sequence(s) => {
            for (i, v) in s.iter().enumerate() {
                leaves(v, format!("{at}[{i}]"), out);
            }
        }
        _ => out.push(at),
    }
}

/// The value at `path` (as [`leaves`] wrote it).
fn at_path<'a>(v: &'a mut Value, path: &str) -> &'a mut Value {
    let mut cur = v;
    for part in path.split('.') {
        let (name, indexes) = part
            .split_once('[')
            .map_or((part, ""), |(n, rest)| (n, rest));
        if !name.is_empty() {
            cur = cur.get_mut(name).expect("a path from leaves()");
        }
        for i in indexes.split('[').filter(|s| !s.is_empty()) {
            let i: usize = i.trim_end_matches(']').parse().expect("an index");
            cur = cur.get_mut(i).expect("a path from leaves()");
        }
    }
    cur
}

/// The top-level field a path starts in (`vips` for `vips[0].port`).
fn top(path: &str) -> &str {
    path.split(['.', '[']).next().unwrap_or("")
}

/// A rejection of the text itself (not valid YAML, e.g. a NUL byte):
/// no field to name, but where in the text.
fn located_syntax_error(e: &ConfigError) -> bool {
    e.errors.iter().all(|f| {
        f.path.is_empty() && (f.message.contains("line") || f.message.contains("position"))
    })
}

/// A rejection lists at least one problem, and each says something.
fn well_formed(e: &ConfigError) -> Result<(), TestCaseError> {
    prop_assert!(!e.errors.is_empty(), "a rejection without reasons");
    for f in &e.errors {
        prop_assert!(
            !f.message.trim().is_empty(),
            "an empty message at {:?}",
            f.path
        );
    }
    Ok(())
}

/// Every value of the shipped configurations replaced, in turn, by every
/// hostile value: exhaustive where the random search is not.
#[test]
fn every_field_of_the_shipped_configs_survives_every_hostile_value() {
    let mut rejected = 0;
    for base in SHIPPED {
        let doc: Value = serde_norway::from_str(base).expect("shipped YAML");
        let mut paths = vec![];
        leaves(&doc, String::new(), &mut paths);
        // One path per field: `vips[3].backends[2].weight` is checked as
        // `vips[0].backends[0].weight` is.
        let mut seen = std::collections::BTreeSet::new();
        paths.retain(|p| {
            let shape: String = p
                .split('[')
                .map(|s| s.trim_start_matches(|c: char| c.is_ascii_digit()))
                .collect();
            seen.insert(shape)
        });
        for path in &paths {
            for value in hostile() {
                let mut d = doc.clone();
                *at_path(&mut d, path) = value.clone();
                let text = serde_norway::to_string(&d).expect("serializes");
                if let Err(e) = parse(&text, "hostile.yaml") {
                    rejected += 1;
                    assert!(
                        located_syntax_error(&e)
                            || e.errors.iter().any(|f| top(&f.path) == top(path)),
                        "{path} = {value:?} was rejected elsewhere: {e}"
                    );
                }
            }
        }
    }
    assert!(
        rejected > 500,
        "only {rejected} rejections: the corpus misses the validator"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn any_document_is_parsed_or_rejected_with_reasons(doc in tree()) {
        let yaml = serde_norway::to_string(&doc).expect("a tree serializes");
        if let Err(e) = parse(&yaml, "prop.yaml") {
            well_formed(&e)?;
        }
        let json = serde_json::to_string(&doc).unwrap_or_default();
        if let Err(e) = parse(&json, "prop.json") {
            well_formed(&e)?;
        }
        for r in [parse_vip(&yaml, "etcd value", &Default::default()).err(),
                  parse_backends(&yaml, "API request").err()].into_iter().flatten() {
            well_formed(&r)?;
        }
    }

    #[test]
    fn one_value_replaced_is_accepted_or_rejected_at_that_field(
        base in 0..SHIPPED.len(),
        pick in any::<prop::sample::Index>(),
        replacement in prop_oneof![1 => tree(), 1 => prop::sample::select(hostile())],
    ) {
        let mut doc: Value = serde_norway::from_str(SHIPPED[base]).expect("shipped YAML");
        let mut paths = vec![];
        leaves(&doc, String::new(), &mut paths);
        let path = pick.get(&paths).clone();
        *at_path(&mut doc, &path) = replacement;
        for text in [serde_norway::to_string(&doc).expect("serializes"),
                     serde_json::to_string(&doc).expect("serializes")] {
            if let Err(e) = parse(&text, "prop.yaml") {
                well_formed(&e)?;
                prop_assert!(
                    located_syntax_error(&e) || e.errors.iter().any(|f| top(&f.path) == top(&path)),
                    "replacing {path} was rejected elsewhere: {e}"
                );
            }
        }
    }

    #[test]
    fn one_value_of_an_etcd_vip_replaced_is_accepted_or_rejected_with_its_path(
        pick in any::<prop::sample::Index>(),
        replacement in tree(),
    ) {
        let base = super::parse(SHIPPED[1], "lab").expect("the lab config");
        let lab: Value = serde_norway::from_str(SHIPPED[1]).expect("shipped YAML");
        let mut vip = lab["vips"][0].clone();
        let mut paths = vec![];
        leaves(&vip, String::new(), &mut paths);
        let path = pick.get(&paths).clone();
        *at_path(&mut vip, &path) = replacement;
        let text = serde_json::to_string(&vip).expect("serializes");
        if let Err(e) = parse_vip(&text, "etcd /lb/vips/web", &base) {
            well_formed(&e)?;
            prop_assert!(
                located_syntax_error(&e) || e.errors.iter().any(|f| !f.path.is_empty()),
                "no field named: {e}"
            );
        }
    }
}
