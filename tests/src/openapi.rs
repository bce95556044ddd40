//! Checks a JSON answer against an OpenAPI 3.1 schema: the subset utoipa
//! writes (`$ref`, `allOf` from flattened structs, `oneOf` for options,
//! `type` lists, `enum`, `properties`/`required`, `items`,
//! `additionalProperties`, `minimum`/`maximum`). Strict on objects: a
//! field the document does not name is an error, so the document has to
//! describe everything the agent sends.

use serde_json::{Map, Value};

/// The schema of `method path`'s `status` answer.
pub fn response_schema<'a>(
    doc: &'a Value,
    method: &str,
    path: &str,
    status: u16,
) -> Option<&'a Value> {
    let s = &doc["paths"][path][method.to_lowercase()]["responses"][status.to_string()]["content"]
        ["application/json"]["schema"];
    s.is_object().then_some(s)
}

/// Every place `value` departs from `schema`, as `path: reason`.
pub fn violations(doc: &Value, schema: &Value, value: &Value) -> Vec<String> {
    let mut out = Vec::new();
    check(doc, schema, value, "$", &mut out);
    out
}

fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(r) => {
            let name = r.trim_start_matches("#/components/schemas/");
            resolve(doc, &doc["components"]["schemas"][name])
        }
        None => schema,
    }
}

/// `allOf` folded into one object schema: its members' properties and
/// required fields together.
fn merged(doc: &Value, schema: &Value) -> Value {
    let schema = resolve(doc, schema);
    let Some(all) = schema["allOf"].as_array() else {
        return schema.clone();
    };
    let (mut props, mut required) = (Map::new(), Vec::new());
    for member in all {
        let m = merged(doc, member);
        if let Some(p) = m["properties"].as_object() {
            props.extend(p.clone());
        }
        if let Some(r) = m["required"].as_array() {
            required.extend(r.iter().cloned());
        }
    }
    serde_json::json!({"type": "object", "properties": props, "required": required})
}

fn type_matches(t: &str, v: &Value) -> bool {
    match t {
        "null" => v.is_null(),
        "boolean" => v.is_boolean(),
        "string" => v.is_string(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "array" => v.is_array(),
        "object" => v.is_object(),
        _ => false,
    }
}

fn check(doc: &Value, schema: &Value, v: &Value, at: &str, out: &mut Vec<String>) {
    let schema = &merged(doc, schema);
    if let Some(alts) = schema["oneOf"].as_array() {
        let fits = alts
            .iter()
            .filter(|a| violations(doc, a, v).is_empty())
            .count();
        if fits != 1 {
            out.push(format!(
                "{at}: {v} fits {fits} of the oneOf alternatives, not 1"
            ));
        }
        return;
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    if !types.is_empty() && !types.iter().any(|t| type_matches(t, v)) {
        out.push(format!("{at}: {v} is not {types:?}"));
        return;
    }
    if let Some(words) = schema["enum"].as_array()
        && !words.contains(v)
    {
        out.push(format!("{at}: {v} is not one of {words:?}"));
    }
    if let Some(n) = v.as_f64() {
        if schema["minimum"].as_f64().is_some_and(|min| n < min) {
            out.push(format!(
                "{at}: {n} is below the minimum {}",
                schema["minimum"]
            ));
        }
        if schema["maximum"].as_f64().is_some_and(|max| n > max) {
            out.push(format!(
                "{at}: {n} is above the maximum {}",
                schema["maximum"]
            ));
        }
    }
    if let (Some(items), Some(a)) = (schema.get("items"), v.as_array()) {
        for (i, x) in a.iter().enumerate() {
            check(doc, items, x, &format!("{at}[{i}]"), out);
        }
    }
    let Some(obj) = v.as_object() else { return };
    let props = schema["properties"].as_object();
    for r in schema["required"].as_array().into_iter().flatten() {
        let r = r.as_str().unwrap_or_default();
        if !obj.contains_key(r) {
            out.push(format!("{at}: required field {r:?} is missing"));
        }
    }
    for (k, x) in obj {
        let here = format!("{at}.{k}");
        match (
            props.and_then(|p| p.get(k)),
            schema.get("additionalProperties"),
        ) {
            (Some(s), _) => check(doc, s, x, &here, out),
            (None, Some(Value::Bool(true))) => {}
            (None, Some(s)) if s.is_object() => check(doc, s, x, &here, out),
            (None, _) => out.push(format!("{here}: the document does not name this field")),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::violations;

    #[test]
    fn a_wrong_type_a_missing_and_an_undocumented_field_are_all_reported() {
        let doc = json!({"components": {"schemas": {"B": {"type": "object",
            "required": ["n"], "properties": {"n": {"type": "integer", "minimum": 0}}}}}});
        let schema = json!({"$ref": "#/components/schemas/B"});
        assert!(violations(&doc, &schema, &json!({"n": 3})).is_empty());
        let v = violations(&doc, &schema, &json!({"n": "3", "extra": 1}));
        assert_eq!(v.len(), 2, "{v:?}");
        assert_eq!(violations(&doc, &schema, &json!({})).len(), 1);
        assert_eq!(violations(&doc, &schema, &json!({"n": -1})).len(), 1);
        let opt = json!({"oneOf": [{"$ref": "#/components/schemas/B"}, {"type": "null"}]});
        assert!(violations(&doc, &opt, &json!(null)).is_empty());
        assert_eq!(violations(&doc, &opt, &json!(7)).len(), 1);
    }
}
