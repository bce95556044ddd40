//! Reading the JSON `lbctl` and the API answer with.

use anyhow::{Context as _, Result};
use serde_json::Value;

/// The element of the array `list` whose `key` is `value`.
pub fn find<'a>(list: &'a Value, key: &str, value: &str) -> Result<&'a Value> {
    list.as_array()
        .with_context(|| format!("not an array: {list}"))?
        .iter()
        .find(|x| x[key] == value)
        .with_context(|| format!("no element with {key} = {value:?} in {list}"))
}
