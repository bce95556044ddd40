//! A small client of etcd's v3 JSON gateway (`/v3/kv/range`, `/v3/watch`,
//! leases), which every etcd 3.4+ serves on its client port — no gRPC
//! stack needed.

use std::time::Duration;

use base64::{Engine as _, engine::general_purpose::STANDARD as B64};
use http_body_util::BodyExt as _;
use hyper::Method;
use serde_json::{Value, json};

use crate::http::{self, Call, HttpError, Target};

#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    #[error("etcd {endpoint}: {message}")]
    Io { endpoint: String, message: String },
    #[error("etcd {endpoint}: unexpected answer: {message}")]
    Protocol { endpoint: String, message: String },
    #[error("etcd watch on {endpoint} was cancelled (revision compacted?): resyncing")]
    Cancelled { endpoint: String },
}

/// A minimal client of the JSON gateway.
#[derive(Clone, Debug)]
pub struct Client {
    endpoint: String,
    target: Target,
}

/// One key-value pair.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kv {
    pub key: String,
    pub value: Vec<u8>,
    pub mod_revision: i64,
}

/// A change seen by a watch, at its revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    Put(Kv),
    Delete { key: String, revision: i64 },
}

impl Change {
    pub fn revision(&self) -> i64 {
        match self {
            Change::Put(kv) => kv.mod_revision,
            Change::Delete { revision, .. } => *revision,
        }
    }
}

fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    // The range end of a prefix: the prefix with its last byte incremented.
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

fn num(v: &Value) -> i64 {
    match v {
        Value::String(s) => s.parse().unwrap_or(0),
        Value::Number(n) => n.as_i64().unwrap_or(0),
        _ => 0,
    }
}

fn kv(v: &Value) -> Option<Kv> {
    let key = B64.decode(v["key"].as_str()?).ok()?;
    let value = v["value"]
        .as_str()
        .map(|s| B64.decode(s).unwrap_or_default())
        .unwrap_or_default();
    Some(Kv {
        key: String::from_utf8_lossy(&key).into_owned(),
        value,
        mod_revision: num(&v["mod_revision"]),
    })
}

impl Client {
    pub fn new(endpoint: &str) -> Self {
        let authority = endpoint
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        Self {
            endpoint: endpoint.trim_end_matches('/').to_string(),
            target: Target::Tcp(authority),
        }
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn io(&self, e: impl std::fmt::Display) -> EtcdError {
        EtcdError::Io {
            endpoint: self.endpoint.clone(),
            message: e.to_string(),
        }
    }

    fn error(&self, e: HttpError) -> EtcdError {
        match e {
            HttpError::Status { .. } | HttpError::Json { .. } => EtcdError::Protocol {
                endpoint: self.endpoint.clone(),
                message: e.to_string(),
            },
            other => self.io(other),
        }
    }

    fn post<'a>(path: &'a str, body: &Value) -> Call<'a> {
        let mut call = Call::new(Method::POST, path);
        call.body = Some(body.to_string().into_bytes());
        call
    }

    async fn call(&self, path: &str, body: Value) -> Result<Value, EtcdError> {
        http::json(&self.target, Self::post(path, &body))
            .await
            .map_err(|e| self.error(e))
    }

    /// A streamed answer (watch, keepalive): its head, checked.
    async fn stream(
        &self,
        path: &str,
        body: Value,
    ) -> Result<hyper::Response<hyper::body::Incoming>, EtcdError> {
        let resp = http::send(&self.target, Self::post(path, &body))
            .await
            .map_err(|e| self.error(e))?;
        if !resp.status().is_success() {
            let status = resp.status();
            let body = http::body(resp, Duration::from_secs(5))
                .await
                .unwrap_or_default();
            return Err(self.error(HttpError::Status { status, body }));
        }
        Ok(resp)
    }

    /// Every key under `prefix` and the store's revision.
    pub async fn range_prefix(&self, prefix: &str) -> Result<(i64, Vec<Kv>), EtcdError> {
        let v = self
            .call(
                "/v3/kv/range",
                json!({"key": B64.encode(prefix), "range_end": B64.encode(prefix_end(prefix))}),
            )
            .await?;
        let rev = num(&v["header"]["revision"]);
        let kvs = v["kvs"]
            .as_array()
            .map(|a| a.iter().filter_map(kv).collect())
            .unwrap_or_default();
        Ok((rev, kvs))
    }

    pub async fn put(&self, key: &str, value: &[u8], lease: Option<i64>) -> Result<i64, EtcdError> {
        let mut body = json!({"key": B64.encode(key), "value": B64.encode(value)});
        if let Some(l) = lease {
            body["lease"] = json!(l.to_string());
        }
        let v = self.call("/v3/kv/put", body).await?;
        Ok(num(&v["header"]["revision"]))
    }

    pub async fn delete(&self, key: &str) -> Result<i64, EtcdError> {
        let v = self
            .call("/v3/kv/deleterange", json!({"key": B64.encode(key)}))
            .await?;
        Ok(num(&v["header"]["revision"]))
    }

    pub async fn grant_lease(&self, ttl_secs: i64) -> Result<i64, EtcdError> {
        let v = self
            .call("/v3/lease/grant", json!({"TTL": ttl_secs.to_string()}))
            .await?;
        Ok(num(&v["ID"]))
    }

    /// Renews a lease once; false if it no longer exists.
    pub async fn keepalive(&self, lease: i64) -> Result<bool, EtcdError> {
        let resp = self
            .stream("/v3/lease/keepalive", json!({"ID": lease.to_string()}))
            .await?;
        let mut body = resp.into_body();
        let mut buf = Vec::new();
        // The gateway streams; the first message is the answer.
        while let Some(frame) = tokio::time::timeout(Duration::from_secs(5), body.frame())
            .await
            .map_err(|_| self.io("keepalive timed out"))?
        {
            if let Ok(data) = frame.map_err(|e| self.io(e))?.into_data() {
                buf.extend_from_slice(&data);
                if let Some(Ok(v)) = serde_json::Deserializer::from_slice(&buf)
                    .into_iter::<Value>()
                    .next()
                {
                    return Ok(num(&v["result"]["TTL"]) > 0);
                }
            }
        }
        Ok(false)
    }

    /// The highest modification revision of a key under `prefix` (0 when
    /// there is none): a cheap probe that etcd answers and how far it is.
    pub async fn newest_revision(&self, prefix: &str) -> Result<i64, EtcdError> {
        let v = self
            .call(
                "/v3/kv/range",
                json!({
                    "key": B64.encode(prefix),
                    "range_end": B64.encode(prefix_end(prefix)),
                    "limit": "1",
                    "sort_order": "DESCEND",
                    "sort_target": "MOD",
                    "keys_only": true,
                }),
            )
            .await?;
        Ok(v["kvs"]
            .as_array()
            .and_then(|a| a.first())
            .map_or(0, |k| num(&k["mod_revision"])))
    }

    /// Watches `prefix` from `start_revision`, calling `on` for each batch
    /// of changes (events of one or more revisions, in order). Returns when
    /// the stream ends (an error) or `on` returns false.
    pub async fn watch_prefix(
        &self,
        prefix: &str,
        start_revision: i64,
        mut on: impl FnMut(Vec<Change>) -> bool,
    ) -> Result<(), EtcdError> {
        let req = json!({"create_request": {
            "key": B64.encode(prefix),
            "range_end": B64.encode(prefix_end(prefix)),
            "start_revision": start_revision.to_string(),
            "progress_notify": true,
        }});
        let resp = self.stream("/v3/watch", req).await?;
        let mut body = resp.into_body();
        let mut buf: Vec<u8> = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| self.io(e))?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            buf.extend_from_slice(&data);
            let mut consumed = 0;
            let mut stream = serde_json::Deserializer::from_slice(&buf).into_iter::<Value>();
            while let Some(item) = stream.next() {
                let Ok(v) = item else { break };
                consumed = stream.byte_offset();
                let r = &v["result"];
                if r["canceled"].as_bool() == Some(true) || num(&r["compact_revision"]) > 0 {
                    return Err(EtcdError::Cancelled {
                        endpoint: self.endpoint.clone(),
                    });
                }
                let changes: Vec<Change> = r["events"]
                    .as_array()
                    .map(|evs| {
                        evs.iter()
                            .filter_map(|e| {
                                let k = kv(&e["kv"])?;
                                Some(if e["type"].as_str() == Some("DELETE") {
                                    Change::Delete {
                                        key: k.key,
                                        revision: k.mod_revision,
                                    }
                                } else {
                                    Change::Put(k)
                                })
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                if !changes.is_empty() && !on(changes) {
                    return Ok(());
                }
            }
            buf.drain(..consumed);
        }
        Err(self.io("watch stream ended"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ranges() {
        assert_eq!(prefix_end("/lb/vips/"), b"/lb/vips0".to_vec());
        assert_eq!(prefix_end("a\u{7f}"), b"a\x80".to_vec());
    }

    #[test]
    fn decodes_gateway_kvs() {
        let v = json!({"key": B64.encode("/lb/vips/web"), "value": B64.encode("{}"), "mod_revision": "42"});
        assert_eq!(
            kv(&v),
            Some(Kv {
                key: "/lb/vips/web".into(),
                value: b"{}".to_vec(),
                mod_revision: 42
            })
        );
    }
}
