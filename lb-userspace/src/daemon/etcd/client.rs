//! etcd as the fleet's source of truth for VIPs and backends, through
//! etcd's v3 JSON gateway (`/v3/kv/range`, `/v3/watch`, ...), which every
//! etcd 3.4+ serves on its client port — no gRPC stack needed.
//!
//! Layout under the prefix P:
//! - `P/vips/<name>`: one VIP, JSON (or YAML) with the schema of a `vips[]`
//!   entry of the configuration file. Added to the file's VIPs (a same-named
//!   file VIP is replaced).
//! - `P/agents/<node>`: written by each agent (with a lease, so it vanishes
//!   with the agent): its health observations, active tiers and table
//!   digest per VIP, so an operator can see whether the fleet agrees.
//!
//! Each revision is applied atomically. An invalid value is rejected for
//! that key alone (an event says why) and the key keeps its previous good
//! value. If etcd is unreachable the agent keeps forwarding with the last
//! good state, retries with backoff, and on reconnect reads everything at
//! the current revision before watching again, so no update is missed.

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, SystemTime},
};

use base64::{Engine as _, engine::general_purpose::STANDARD as B64};
use http_body_util::BodyExt as _;
use hyper::Method;
use serde_json::{Value, json};

use super::shared::{ChangeError, FeedStatus, Shared};
use crate::{
    core::{config, events::EventKind, tables::Tables},
    http::{self, Call, HttpError, Target},
};

#[derive(Clone, Debug)]
pub struct EtcdOptions {
    /// `http://host:port` client URLs, tried in order.
    pub endpoints: Vec<String>,
    /// Key prefix, e.g. `/lb`.
    pub prefix: String,
}

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

/// A change seen by a watch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    Put(Kv),
    Delete(String),
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

    /// Watches `prefix` from `start_revision`, calling `on` for each batch
    /// of changes with its revision. Returns when the stream ends (an error)
    /// or `on` returns false.
    pub async fn watch_prefix(
        &self,
        prefix: &str,
        start_revision: i64,
        mut on: impl FnMut(i64, Vec<Change>) -> bool,
    ) -> Result<(), EtcdError> {
        let req = json!({"create_request": {
            "key": B64.encode(prefix),
            "range_end": B64.encode(prefix_end(prefix)),
            "start_revision": start_revision.to_string(),
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
                let rev = num(&r["header"]["revision"]);
                let changes: Vec<Change> = r["events"]
                    .as_array()
                    .map(|evs| {
                        evs.iter()
                            .filter_map(|e| {
                                let k = kv(&e["kv"])?;
                                Some(if e["type"].as_str() == Some("DELETE") {
                                    Change::Delete(k.key)
                                } else {
                                    Change::Put(k)
                                })
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                if !changes.is_empty() && !on(rev, changes) {
                    return Ok(());
                }
            }
            buf.drain(..consumed);
        }
        Err(self.io("watch stream ended"))
    }
}

fn vips_prefix(p: &str) -> String {
    format!("{}/vips/", p.trim_end_matches('/'))
}

/// Applies one key's new value (or its deletion) through the sources; an
/// invalid value is refused for that key alone.
fn apply_key<T: Tables + Send + 'static>(
    shared: &Shared<T>,
    status: &mut FeedStatus,
    key: &str,
    value: Option<&[u8]>,
) {
    let result = match value {
        None => shared.change(&format!("etcd delete {key}"), |s| {
            s.etcd.remove(key);
            Ok(())
        }),
        Some(bytes) => {
            let text = String::from_utf8_lossy(bytes);
            let base = shared.sources.lock().expect("not poisoned").file.clone();
            match config::parse_vip(&text, &format!("etcd {key}"), &base) {
                Ok(vip) => shared.change(&format!("etcd {key}"), |s| {
                    s.etcd.insert(key.to_string(), vip);
                    Ok(())
                }),
                Err(e) => Err(ChangeError::Invalid(e.errors)),
            }
        }
    };
    match result {
        Ok(()) => {
            status.rejected_keys.remove(key);
        }
        Err(e) => {
            tracing::warn!(key, error = %e, "etcd value rejected; the key keeps its previous good value");
            shared.record(EventKind::ConfigRejected, format!("etcd key {key}: {e}"));
            status.rejected_keys.insert(key.to_string(), e.to_string());
        }
    }
}

/// Reads everything under the prefix and makes the sources match it.
async fn resync<T: Tables + Send + 'static>(
    shared: &Shared<T>,
    client: &Client,
    prefix: &str,
    status: &mut FeedStatus,
) -> Result<i64, EtcdError> {
    let (rev, kvs) = client.range_prefix(&vips_prefix(prefix)).await?;
    let present: BTreeMap<String, Vec<u8>> = kvs.into_iter().map(|k| (k.key, k.value)).collect();
    let known: Vec<String> = shared
        .sources
        .lock()
        .expect("not poisoned")
        .etcd
        .keys()
        .cloned()
        .collect();
    for k in known {
        if !present.contains_key(&k) {
            apply_key(shared, status, &k, None);
        }
    }
    for (k, v) in &present {
        apply_key(shared, status, k, Some(v));
    }
    Ok(rev)
}

fn publish_status<T: Tables + Send + 'static>(shared: &Shared<T>, status: &FeedStatus) {
    *shared.etcd_status.lock().expect("not poisoned") = Some(status.clone());
}

/// Runs the feed: resync, watch, and on any failure back off and resync.
pub fn spawn_feed<T: Tables + Send + 'static>(shared: Arc<Shared<T>>, opts: EtcdOptions) {
    tokio::spawn(publish_view(shared.clone(), opts.clone()));
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(250);
        let mut status = FeedStatus::default();
        let mut i = 0;
        loop {
            let client = Client::new(&opts.endpoints[i % opts.endpoints.len()]);
            status.endpoint = client.endpoint().to_string();
            match resync(&shared, &client, &opts.prefix, &mut status).await {
                Ok(rev) => {
                    if !status.connected {
                        tracing::info!(
                            endpoint = client.endpoint(),
                            revision = rev,
                            "etcd feed in sync"
                        );
                    }
                    status.connected = true;
                    status.revision = rev;
                    status.last_error = None;
                    backoff = Duration::from_millis(250);
                    publish_status(&shared, &status);
                    let prefix = vips_prefix(&opts.prefix);
                    let mut st = status.clone();
                    let result = client
                        .watch_prefix(&prefix, rev + 1, |rev, changes| {
                            for c in changes {
                                match c {
                                    Change::Put(kv) => {
                                        apply_key(&shared, &mut st, &kv.key, Some(&kv.value))
                                    }
                                    Change::Delete(k) => apply_key(&shared, &mut st, &k, None),
                                }
                            }
                            st.revision = rev;
                            publish_status(&shared, &st);
                            true
                        })
                        .await;
                    status = st;
                    if let Err(e) = result {
                        status.connected = false;
                        status.last_error = Some(e.to_string());
                        tracing::warn!(error = %e, "etcd watch lost; keeping the last good state and retrying");
                    }
                }
                Err(e) => {
                    if status.connected || status.last_error.is_none() {
                        tracing::warn!(error = %e, "etcd unreachable; keeping the last good state and retrying");
                    }
                    status.connected = false;
                    status.last_error = Some(e.to_string());
                    i += 1;
                }
            }
            publish_status(&shared, &status);
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    });
}

/// This agent's view, as written to `P/agents/<node>`.
pub fn agent_view<T: Tables + Send + 'static>(shared: &Shared<T>) -> Value {
    let s = shared.balancer().state();
    let time = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    json!({
        "node": s.node,
        "time": time,
        "vips": s.vips.iter().map(|v| json!({
            "name": v.name,
            "digest": v.digest,
            "active_tier": v.active_tier,
            "local_share": v.local_share,
            "panic": v.panic,
            "healthy": v.backends.iter().map(|b| (b.address.to_string(), json!(b.healthy))).collect::<serde_json::Map<_, _>>(),
        })).collect::<Vec<_>>(),
    })
}

async fn publish_view<T: Tables + Send + 'static>(shared: Arc<Shared<T>>, opts: EtcdOptions) {
    let node = shared.balancer().config().node.name.clone();
    let key = format!("{}/agents/{node}", opts.prefix.trim_end_matches('/'));
    let mut lease: Option<i64> = None;
    let mut i = 0;
    loop {
        let client = Client::new(&opts.endpoints[i % opts.endpoints.len()]);
        let view = agent_view(&shared).to_string();
        let ok = async {
            let l = match lease {
                Some(l) if client.keepalive(l).await? => l,
                _ => client.grant_lease(10).await?,
            };
            lease = Some(l);
            client.put(&key, view.as_bytes(), Some(l)).await?;
            Ok::<_, EtcdError>(())
        }
        .await;
        if ok.is_err() {
            lease = None;
            i += 1;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
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
