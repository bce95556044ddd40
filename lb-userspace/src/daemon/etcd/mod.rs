//! etcd as the fleet's source of truth for VIPs and backends.
//!
//! Layout under the prefix P:
//! - `P/vips/<name>`: one VIP, JSON (or YAML) with the schema of a `vips[]`
//!   entry of the configuration file. Added to the file's VIPs (a same-named
//!   file VIP is replaced).
//! - `P/agents/<node>`: written by each agent with a lease ([`fleet`]).
//!
//! The keys changed in one etcd revision (one transaction) take effect
//! together or not at all: if any of them is invalid, the revision is
//! refused and every key of it keeps its previous good value. A resync
//! (on start and after any reconnect) reads everything at the current
//! revision and applies it at once; if that fails, key by key, so one bad
//! value does not hold back the others. The last good state is saved
//! ([`Snapshot`]) and used when an agent starts while etcd is away.
//!
//! While connected, a probe every [`PROBE_EVERY`] checks that etcd answers
//! and that the watch keeps up; a half-open connection (no answer, or newer
//! revisions the watch never delivered) is dropped and the feed reconnects
//! — and says so in the API and in `lb_etcd_connected` meanwhile. Retries
//! back off with jitter, so a fleet does not reconnect in lockstep.

mod client;
pub mod fleet;
mod snapshot;

use std::{
    collections::BTreeMap,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicI64, Ordering},
    },
    time::Duration,
};

pub use client::{Change, Client, EtcdError, EtcdSecurity, Kv};
pub use snapshot::Snapshot;

use super::{
    audit,
    shared::{FeedStatus, Peer, Shared},
    state::unix_now,
};
use crate::core::{config, events::EventKind, tables::Tables};

#[derive(Clone, Debug)]
pub struct EtcdOptions {
    /// `http://host:port` or `https://host:port` client URLs, tried in turn.
    pub endpoints: Vec<String>,
    /// TLS and authentication.
    pub security: EtcdSecurity,
    /// Key prefix, e.g. `/lb`.
    pub prefix: String,
    /// Where the last good revision is kept (none: not kept).
    pub state_dir: Option<PathBuf>,
}

/// How often a connected feed checks that etcd answers and the watch keeps
/// up, and how long an answer may take.
pub const PROBE_EVERY: Duration = Duration::from_secs(1);
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Failed or lagging probes in a row before the connection is dropped.
const PROBES_BEFORE_GIVING_UP: u32 = 2;

pub fn vips_prefix(p: &str) -> String {
    format!("{}/vips/", p.trim_end_matches('/'))
}

/// `d` ± 50%, so that a fleet's agents spread their retries.
fn jittered(d: Duration) -> Duration {
    d.mul_f64(0.5 + fastrand::f64())
}

/// One key's new value, or its deletion.
type KeyChange = (String, Option<String>);

struct Feed<T: Tables + Send + 'static> {
    shared: Arc<Shared<T>>,
    opts: EtcdOptions,
    status: FeedStatus,
    /// The raw values in effect, by key (what the snapshot saves).
    good: BTreeMap<String, String>,
}

impl<T: Tables + Send + 'static> Feed<T> {
    fn publish(&self) {
        *self.shared.etcd_status.lock().expect("not poisoned") = Some(self.status.clone());
    }

    fn save_snapshot(&self) {
        let Some(dir) = &self.opts.state_dir else {
            return;
        };
        let snap = Snapshot {
            prefix: self.opts.prefix.clone(),
            revision: self.status.revision,
            values: self.good.clone(),
        };
        if let Err(e) = snap.save(dir) {
            tracing::warn!(error = %e, "saving the etcd revision failed");
        }
    }

    /// The audit record of one key's change (etcd does not say who wrote
    /// it: the record names the endpoint it came from).
    fn audit(&self, key: &str, deleted: bool, result: Result<&str, &str>) {
        let verb = if deleted { "delete" } else { "put" };
        let r = audit::Record::new(
            format!("etcd:{}", self.status.endpoint),
            "etcd",
            format!("{verb} {key}"),
        );
        self.shared.audit(&match result {
            Ok(what) => r.accepted(what),
            Err(why) => r.rejected(why),
        });
    }

    fn reject(&mut self, key: &str, deleted: bool, why: String) {
        self.audit(key, deleted, Err(&why));
        tracing::warn!(key, error = %why, "etcd value refused; the key keeps its previous good value");
        self.shared
            .record(EventKind::ConfigRejected, format!("etcd key {key}: {why}"));
        self.status.rejected_keys.insert(key.to_string(), why);
    }

    /// Applies `changes` together, or none of them.
    fn apply(&mut self, what: &str, changes: &[KeyChange]) -> bool {
        let base = self
            .shared
            .sources
            .lock()
            .expect("not poisoned")
            .file
            .clone();
        let mut vips = vec![];
        let mut bad = BTreeMap::new();
        for (key, value) in changes {
            let vip = value
                .as_ref()
                .map(|text| config::parse_vip(text, &format!("etcd {key}"), &base));
            match vip {
                Some(Err(e)) => {
                    bad.insert(key.clone(), e.to_string());
                }
                Some(Ok(v)) => vips.push((key.clone(), Some(v))),
                None => vips.push((key.clone(), None)),
            }
        }
        let refused = match bad.keys().next() {
            Some(k) => format!("refused with {what}: {k} in it is invalid"),
            None => match self.shared.change(what, |s| {
                for (key, vip) in vips {
                    match vip {
                        Some(v) => s.etcd.insert(key, v),
                        None => s.etcd.remove(&key),
                    };
                }
                Ok(())
            }) {
                Ok(()) => {
                    for (key, value) in changes {
                        self.audit(key, value.is_none(), Ok(what));
                        self.status.rejected_keys.remove(key);
                        match value {
                            Some(v) => self.good.insert(key.clone(), v.clone()),
                            None => self.good.remove(key),
                        };
                    }
                    return true;
                }
                Err(e) => e.to_string(),
            },
        };
        for (key, value) in changes {
            let why = bad.remove(key).unwrap_or_else(|| refused.clone());
            self.reject(key, value.is_none(), why);
        }
        false
    }

    /// Reads everything under the prefix and makes the sources match it.
    async fn resync(&mut self, client: &Client) -> Result<i64, EtcdError> {
        let (rev, kvs) = client.range_prefix(&vips_prefix(&self.opts.prefix)).await?;
        // etcd answered: say so before applying, so the status never shows
        // this revision's VIPs beside an earlier attempt's "disconnected".
        self.status.connected = true;
        self.status.last_error = None;
        self.publish();
        let present: BTreeMap<String, String> = kvs
            .into_iter()
            .map(|k| (k.key, String::from_utf8_lossy(&k.value).into_owned()))
            .collect();
        let known: Vec<String> = self
            .shared
            .sources
            .lock()
            .expect("not poisoned")
            .etcd
            .keys()
            .cloned()
            .collect();
        let mut changes: Vec<KeyChange> = known
            .into_iter()
            .filter(|k| !present.contains_key(k))
            .map(|k| (k, None))
            .collect();
        changes.extend(
            present
                .into_iter()
                .filter(|(k, v)| {
                    self.good.get(k) != Some(v) || self.status.rejected_keys.contains_key(k)
                })
                .map(|(k, v)| (k, Some(v))),
        );
        let what = format!("etcd revision {rev} (resync)");
        if !changes.is_empty() && !self.apply(&what, &changes) {
            // One bad key must not hold back the others.
            for c in &changes {
                self.apply(
                    &format!("etcd {} at revision {rev}", c.0),
                    std::slice::from_ref(c),
                );
            }
        }
        self.status.revision = rev;
        self.save_snapshot();
        Ok(rev)
    }

    /// Applies a watch batch, one revision at a time.
    fn on_watch(&mut self, changes: Vec<Change>, applied: &AtomicI64) {
        let mut i = 0;
        while i < changes.len() {
            let rev = changes[i].revision();
            let mut batch: Vec<KeyChange> = vec![];
            while i < changes.len() && changes[i].revision() == rev {
                batch.push(match &changes[i] {
                    Change::Put(kv) => (
                        kv.key.clone(),
                        Some(String::from_utf8_lossy(&kv.value).into_owned()),
                    ),
                    Change::Delete { key, .. } => (key.clone(), None),
                });
                i += 1;
            }
            self.apply(&format!("etcd revision {rev}"), &batch);
            self.status.revision = rev;
            applied.store(rev, Ordering::Relaxed);
        }
        self.save_snapshot();
        self.publish();
    }

    fn disconnected(&mut self, why: String) {
        if self.status.connected || self.status.last_error.is_none() {
            tracing::warn!(error = %why, "etcd feed disconnected; keeping the last good state and retrying");
        }
        self.status.connected = false;
        self.status.last_error = Some(why);
        self.publish();
    }

    async fn run(mut self) {
        let mut backoff = Duration::from_millis(250);
        let mut i = 0;
        loop {
            let endpoint = &self.opts.endpoints[i % self.opts.endpoints.len()];
            self.status.endpoint = endpoint.trim_end_matches('/').to_string();
            let client = match Client::connect(endpoint, &self.opts.security).await {
                Ok(c) => c,
                Err(e) => {
                    self.disconnected(e.to_string());
                    i += 1;
                    tokio::time::sleep(jittered(backoff)).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            };
            let was_connected = self.status.connected;
            match tokio::time::timeout(PROBE_TIMEOUT * 5, self.resync(&client)).await {
                Ok(Ok(rev)) => {
                    if !was_connected {
                        tracing::info!(
                            endpoint = client.endpoint(),
                            revision = rev,
                            "etcd feed in sync"
                        );
                    }
                    // resync marked the feed connected; this publishes the
                    // revision it reached.
                    self.publish();
                    backoff = Duration::from_millis(250);
                    let e = self.watch(&client, rev).await;
                    self.disconnected(e.to_string());
                }
                Ok(Err(e)) => {
                    self.disconnected(e.to_string());
                    i += 1;
                }
                Err(_) => {
                    self.disconnected(format!("etcd {}: no answer to a range", client.endpoint()));
                    i += 1;
                }
            }
            tokio::time::sleep(jittered(backoff)).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    /// Watches from `rev + 1` until the stream ends or the probe finds the
    /// connection dead or the watch behind.
    async fn watch(&mut self, client: &Client, rev: i64) -> EtcdError {
        let prefix = vips_prefix(&self.opts.prefix);
        let applied = Arc::new(AtomicI64::new(rev));
        let seen = applied.clone();
        let watching = client.watch_prefix(&prefix, rev + 1, |changes| {
            self.on_watch(changes, &seen);
            true
        });
        tokio::select! {
            r = watching => r.err().unwrap_or_else(|| EtcdError::Io {
                endpoint: client.endpoint().into(),
                message: "watch ended".into(),
            }),
            e = probe(client, &prefix, &applied) => e,
        }
    }
}

/// Returns when etcd stops answering, or has revisions under `prefix` the
/// watch did not deliver, `PROBES_BEFORE_GIVING_UP` probes in a row.
async fn probe(client: &Client, prefix: &str, applied: &AtomicI64) -> EtcdError {
    let mut failures = 0;
    loop {
        tokio::time::sleep(jittered(PROBE_EVERY)).await;
        let why = match tokio::time::timeout(PROBE_TIMEOUT, client.newest_revision(prefix)).await {
            Err(_) => Some(format!("no answer within {PROBE_TIMEOUT:?} (half-open?)")),
            Ok(Err(e)) => Some(e.to_string()),
            Ok(Ok(newest)) if newest > applied.load(Ordering::Relaxed) => Some(format!(
                "the watch is behind: revision {newest} exists, {} applied",
                applied.load(Ordering::Relaxed)
            )),
            Ok(Ok(_)) => None,
        };
        match why {
            None => failures = 0,
            Some(why) => {
                failures += 1;
                if failures >= PROBES_BEFORE_GIVING_UP {
                    return EtcdError::Io {
                        endpoint: client.endpoint().into(),
                        message: why,
                    };
                }
            }
        }
    }
}

/// Runs the feed and publishes this agent's view. `good`: the raw values
/// the sources started with (a saved snapshot), so a resync only applies
/// what changed.
pub fn spawn_feed<T: Tables + Send + 'static>(
    shared: Arc<Shared<T>>,
    opts: EtcdOptions,
    start: Option<Snapshot>,
) {
    let mut status = FeedStatus::default();
    if let Some(s) = &start {
        status.revision = s.revision;
    }
    let feed = Feed {
        shared: shared.clone(),
        opts: opts.clone(),
        status,
        good: start.map(|s| s.values).unwrap_or_default(),
    };
    feed.publish();
    tokio::spawn(feed.run());
    tokio::spawn(watch_peers(shared.clone(), opts.clone()));
    tokio::spawn(publish_view(shared, opts));
}

async fn publish_view<T: Tables + Send + 'static>(shared: Arc<Shared<T>>, opts: EtcdOptions) {
    let node = shared.balancer().config().node.name.clone();
    let key = format!("{}/agents/{node}", opts.prefix.trim_end_matches('/'));
    let mut lease: Option<i64> = None;
    let mut i = 0;
    let mut connected: Option<Client> = None;
    loop {
        let extras = shared.fleet_extras();
        let view = fleet::AgentView::of(&shared.balancer().state(), unix_now(), &extras);
        let body = serde_json::to_vec(&view).unwrap_or_default();
        let ok = async {
            let client = reuse_or_connect(&mut connected, &opts, i).await?;
            let l = match lease {
                Some(l) if client.keepalive(l).await? => l,
                _ => client.grant_lease(10).await?,
            };
            lease = Some(l);
            client.put(&key, &body, Some(l)).await?;
            Ok::<_, EtcdError>(())
        }
        .await;
        if ok.is_err() {
            lease = None;
            connected = None;
            i += 1;
        }
        // Every 2 s (jittered), and at once when a local verdict changes:
        // the fleet view votes with what is published here.
        tokio::select! {
            _ = tokio::time::sleep(jittered(Duration::from_secs(2))) => {}
            _ = shared.publish_wake.notified() => {}
        }
    }
}

/// The connection in `slot`, or a new one to endpoint `i` (kept there):
/// the publishers keep one connection (TLS and authentication done once)
/// until it fails.
async fn reuse_or_connect(
    slot: &mut Option<Client>,
    opts: &EtcdOptions,
    i: usize,
) -> Result<Client, EtcdError> {
    if let Some(c) = slot {
        return Ok(c.clone());
    }
    let c = Client::connect(&opts.endpoints[i % opts.endpoints.len()], &opts.security).await?;
    *slot = Some(c.clone());
    Ok(c)
}

/// How often the other agents' views are read for the fleet health view.
const PEERS_EVERY: Duration = Duration::from_millis(250);

/// Reads the other agents' published probe verdicts and hands them to the
/// fleet view (which ignores them unless `health.fleet_view` is on).
async fn watch_peers<T: Tables + Send + 'static>(shared: Arc<Shared<T>>, opts: EtcdOptions) {
    let node = shared.balancer().config().node.name.clone();
    let prefix = format!("{}/agents/", opts.prefix.trim_end_matches('/'));
    let mut i = 0;
    let mut connected: Option<Client> = None;
    loop {
        tokio::time::sleep(PEERS_EVERY).await;
        if !shared.balancer().config().health.fleet_view {
            continue;
        }
        let read = async {
            let client = reuse_or_connect(&mut connected, &opts, i).await?;
            client.range_prefix(&prefix).await
        };
        match read.await {
            Ok((_, kvs)) => {
                let peers = kvs
                    .iter()
                    .filter_map(|kv| serde_json::from_slice::<fleet::AgentView>(&kv.value).ok())
                    .filter(|v| v.node != node)
                    .map(|v| {
                        let probes = v
                            .vips
                            .iter()
                            .flat_map(|vip| {
                                vip.probes.iter().filter_map(|(addr, up)| {
                                    Some(((vip.name.clone(), addr.parse().ok()?), *up))
                                })
                            })
                            .collect();
                        (
                            v.node.clone(),
                            Peer {
                                time: v.time,
                                probes,
                            },
                        )
                    })
                    .collect();
                shared.set_peers(Some(peers));
            }
            // etcd away: the views age out and each agent uses its own.
            Err(_) => {
                i += 1;
                connected = None;
                shared.set_peers(None);
            }
        }
    }
}
