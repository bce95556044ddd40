//! Health checks: probes (TCP connect, HTTP(S) GET with an expected status,
//! UDP echo, DNS query), a rise/fall state machine per backend, and a
//! scheduler with jittered intervals and bounded concurrency. Verdicts (only
//! transitions) go to the agent over a channel.

mod latency;
mod probe;

use std::{collections::BTreeMap, net::IpAddr, sync::Arc, time::Duration};

use tokio::{
    sync::{Semaphore, mpsc},
    task::JoinHandle,
};

pub use latency::Latency;
pub use probe::{Failure, dns_check, dns_query, probe};

use crate::core::config::{Config, HealthCheck, Probe, VipIdent};

/// One backend to watch.
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    pub vip: VipIdent,
    pub vip_name: String,
    pub backend: IpAddr,
    pub port: u16,
    pub check: HealthCheck,
}

/// A change of a backend's health: up or down, or (while down) whether it
/// answers at all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub vip: VipIdent,
    pub backend: IpAddr,
    pub up: bool,
    pub reachable: bool,
    pub reason: String,
}

/// Rise/fall hysteresis: `rise` successes in a row to come up, `fall`
/// failures in a row to go down.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tracker {
    pub up: bool,
    /// The last probe got an answer (a connection, a reply).
    pub reachable: bool,
    rise: u32,
    fall: u32,
    successes: u32,
    failures: u32,
    /// How long its probes took.
    pub latency: Latency,
}

impl Tracker {
    pub fn new(initially_up: bool, rise: u32, fall: u32) -> Self {
        Self {
            up: initially_up,
            reachable: initially_up,
            rise,
            fall,
            successes: 0,
            failures: 0,
            latency: Latency::default(),
        }
    }

    /// Feeds one probe result; returns the new state on a transition.
    pub fn observe(&mut self, ok: bool) -> Option<bool> {
        if ok {
            self.successes += 1;
            self.failures = 0;
            if !self.up && self.successes >= self.rise {
                self.up = true;
                return Some(true);
            }
        } else {
            self.failures += 1;
            self.successes = 0;
            if self.up && self.failures >= self.fall {
                self.up = false;
                return Some(false);
            }
        }
        None
    }
}

/// Every backend of every VIP with a probe.
pub fn targets(c: &Config) -> Vec<Target> {
    let mut out = vec![];
    for v in &c.vips {
        if v.health_check.probe == Probe::None {
            continue;
        }
        for b in &v.backends {
            let port =
                v.health_check
                    .port
                    .or(b.port)
                    .unwrap_or(if v.port == 0 { 80 } else { v.port });
            out.push(Target {
                vip: v.ident(),
                vip_name: v.name.clone(),
                backend: b.address,
                port,
                check: v.health_check.clone(),
            });
        }
    }
    out
}

pub type TrackerKey = (VipIdent, IpAddr);
type Trackers = Arc<std::sync::Mutex<BTreeMap<TrackerKey, Tracker>>>;

/// The running checks; dropping it stops them.
pub struct Checker {
    /// One task per target, with the target it runs.
    tasks: BTreeMap<TrackerKey, (Target, JoinHandle<()>)>,
    trackers: Trackers,
    limit: Arc<Semaphore>,
    max_concurrent: usize,
    tx: mpsc::Sender<Verdict>,
    /// Tasks started so far (tests check what a change restarts).
    started: usize,
}

impl Drop for Checker {
    fn drop(&mut self) {
        for (_, task) in self.tasks.values() {
            task.abort();
        }
    }
}

impl Checker {
    /// Starts one task per target. `previous`, a checker being replaced,
    /// is updated in place instead (see [`Checker::update`]). `known`: the
    /// state a backend starts in when it has no tracker yet (what a
    /// previous agent saw), instead of the check's initial state; a backend
    /// known down needs `rise` successes to come up.
    pub fn start(
        targets: Vec<Target>,
        max_concurrent: usize,
        tx: mpsc::Sender<Verdict>,
        previous: Option<Checker>,
        known: &BTreeMap<TrackerKey, bool>,
    ) -> Self {
        let mut c = previous.unwrap_or_else(|| Self {
            tasks: BTreeMap::new(),
            trackers: Arc::default(),
            limit: Arc::new(Semaphore::new(max_concurrent)),
            max_concurrent,
            tx,
            started: 0,
        });
        c.update(targets, max_concurrent, known);
        c
    }

    /// Makes the running checks match `targets`. A target that did not
    /// change keeps its task and schedule: configuration churn (API pushes,
    /// etcd puts, reloads) must not postpone probes and so blind the health
    /// checks. Changed and new targets (re)start, gone ones stop. Trackers
    /// carry over for every backend still checked, so a reload does not
    /// make backends flap.
    pub fn update(
        &mut self,
        targets: Vec<Target>,
        max_concurrent: usize,
        known: &BTreeMap<TrackerKey, bool>,
    ) {
        if max_concurrent != self.max_concurrent {
            // Running tasks hold the old semaphore: restart them all.
            self.limit = Arc::new(Semaphore::new(max_concurrent));
            self.max_concurrent = max_concurrent;
            for (_, (_, task)) in std::mem::take(&mut self.tasks) {
                task.abort();
            }
        }
        let mut old = std::mem::take(&mut self.tasks);
        let shared = self.trackers.clone();
        let mut trackers = shared.lock().expect("not poisoned");
        for t in targets {
            let key = (t.vip, t.backend);
            match old.remove(&key) {
                Some((running, task)) if running == t => {
                    self.tasks.insert(key, (running, task));
                }
                replaced => {
                    if let Some((_, task)) = replaced {
                        task.abort();
                    }
                    let tracker = trackers.get(&key).cloned().unwrap_or_else(|| {
                        let up = known.get(&key).copied().unwrap_or(t.check.initially_up);
                        Tracker::new(up, t.check.rise, t.check.fall)
                    });
                    trackers.insert(
                        key,
                        Tracker {
                            rise: t.check.rise,
                            fall: t.check.fall,
                            ..tracker
                        },
                    );
                    let task = spawn_check(
                        t.clone(),
                        self.limit.clone(),
                        self.tx.clone(),
                        self.trackers.clone(),
                    );
                    self.started += 1;
                    self.tasks.insert(key, (t, task));
                }
            }
        }
        for (key, (_, task)) in old {
            task.abort();
            trackers.remove(&key);
        }
    }

    /// How long each tracked backend's probes took.
    pub fn latencies(&self) -> BTreeMap<TrackerKey, Latency> {
        self.trackers
            .lock()
            .expect("not poisoned")
            .iter()
            .map(|(k, t)| (*k, t.latency.clone()))
            .collect()
    }

    /// Current state of every tracked backend.
    pub fn states(&self) -> BTreeMap<(VipIdent, IpAddr), bool> {
        self.trackers
            .lock()
            .expect("not poisoned")
            .iter()
            .map(|(k, t)| (*k, t.up))
            .collect()
    }
}

/// The probe loop of one target: probes every interval (with jitter), feeds
/// its tracker, and sends a verdict on each transition.
fn spawn_check(
    t: Target,
    limit: Arc<Semaphore>,
    tx: mpsc::Sender<Verdict>,
    trackers: Trackers,
) -> JoinHandle<()> {
    let key = (t.vip, t.backend);
    tokio::spawn(async move {
        // Spread the first probes over one interval.
        tokio::time::sleep(t.check.interval.mul_f64(fastrand::f64())).await;
        loop {
            let (result, took) = {
                let _permit = limit.acquire().await;
                // Timed without the wait for a permit: the backend's time.
                let started = std::time::Instant::now();
                (probe(&t).await, started.elapsed())
            };
            let reachable = result.as_ref().map_or_else(|f| f.reachable, |_| true);
            let (transition, up, answer_changed) = {
                let mut map = trackers.lock().expect("not poisoned");
                // Gone from the map: the checker stopped watching it.
                let Some(tr) = map.get_mut(&key) else { return };
                tr.latency.observe(took);
                let was_reachable = std::mem::replace(&mut tr.reachable, reachable);
                let transition = tr.observe(result.is_ok());
                (transition, tr.up, !tr.up && was_reachable != reachable)
            };
            if transition.is_some() || answer_changed {
                let reason = match &result {
                    Ok(()) => format!("{} consecutive successful checks", t.check.rise),
                    Err(f) if transition.is_some() => {
                        format!(
                            "{} consecutive failed checks, last: {}",
                            t.check.fall, f.reason
                        )
                    }
                    Err(f) => format!("still failing checks, last: {}", f.reason),
                };
                let verdict = Verdict {
                    vip: t.vip,
                    backend: t.backend,
                    up,
                    reachable,
                    reason,
                };
                if tx.send(verdict).await.is_err() {
                    return;
                }
            }
            let jitter = 1.0 + t.check.jitter * (2.0 * fastrand::f64() - 1.0);
            tokio::time::sleep(t.check.interval.mul_f64(jitter)).await;
        }
    })
}

/// Shortest interval of any check, to size the reconcile tick.
pub fn shortest_interval(c: &Config) -> Duration {
    c.vips
        .iter()
        .map(|v| v.health_check.interval)
        .min()
        .unwrap_or(Duration::from_secs(1))
}

#[cfg(test)]
mod tests;
