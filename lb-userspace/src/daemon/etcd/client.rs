//! The etcd v3 client the feed and the fleet view use: the maintained
//! `etcd-client` crate (gRPC), over TLS with client certificates and with
//! user/password authentication when configured. This module keeps the
//! small surface the rest of the agent needs (range, put, delete, leases,
//! a prefix watch) and turns the crate's errors into [`EtcdError`].

use std::{path::PathBuf, time::Duration};

use etcd_client::{
    Certificate, ConnectOptions, EventType, GetOptions, Identity, PutOptions, SortOrder,
    SortTarget, TlsOptions, WatchOptions,
};

#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    #[error("etcd {endpoint}: {message}")]
    Io { endpoint: String, message: String },
    #[error("etcd {endpoint}: unexpected answer: {message}")]
    Protocol { endpoint: String, message: String },
    #[error("etcd watch on {endpoint} was cancelled (revision compacted?): resyncing")]
    Cancelled { endpoint: String },
}

/// How to reach etcd securely: all optional; `https://` endpoints need
/// `ca_file`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EtcdSecurity {
    /// CA certificate (PEM) etcd's server certificate must chain to.
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key (PEM), for `--client-cert-auth`.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// etcd user (with `auth enable`); the password comes from a file.
    pub user: Option<String>,
    pub password_file: Option<PathBuf>,
}

/// A connection to one etcd endpoint.
#[derive(Clone)]
pub struct Client {
    endpoint: String,
    inner: etcd_client::Client,
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

/// Bound on connecting (TCP, TLS, authentication).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Bound on one unary request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

fn read(path: &PathBuf, what: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{what} {}: {e}", path.display()))
}

/// The crate's connection options for `sec`.
fn options(sec: &EtcdSecurity) -> Result<ConnectOptions, String> {
    let mut o = ConnectOptions::new()
        .with_connect_timeout(CONNECT_TIMEOUT)
        .with_timeout(REQUEST_TIMEOUT)
        .with_keep_alive(Duration::from_secs(5), Duration::from_secs(3));
    if sec.ca_file.is_some() || sec.cert_file.is_some() {
        let mut tls = TlsOptions::new();
        if let Some(ca) = &sec.ca_file {
            tls = tls.ca_certificate(Certificate::from_pem(read(ca, "etcd CA")?));
        }
        match (&sec.cert_file, &sec.key_file) {
            (Some(c), Some(k)) => {
                tls = tls.identity(Identity::from_pem(
                    read(c, "etcd client certificate")?,
                    read(k, "etcd client key")?,
                ));
            }
            (None, None) => {}
            _ => return Err("an etcd client certificate needs both a cert and a key file".into()),
        }
        o = o.with_tls(tls);
    }
    if let Some(user) = &sec.user {
        let file = sec
            .password_file
            .as_ref()
            .ok_or("an etcd user needs a password file")?;
        let pw = String::from_utf8(read(file, "etcd password file")?)
            .map_err(|_| format!("etcd password file {}: not UTF-8", file.display()))?;
        o = o.with_user(user.clone(), pw.trim_end_matches(['\n', '\r']).to_string());
    }
    Ok(o)
}

impl Client {
    /// Connects (and authenticates) to one endpoint.
    pub async fn connect(endpoint: &str, sec: &EtcdSecurity) -> Result<Self, EtcdError> {
        let endpoint = endpoint.trim_end_matches('/').to_string();
        let io = |message: String| EtcdError::Io {
            endpoint: endpoint.clone(),
            message,
        };
        let opts = options(sec).map_err(io)?;
        let connecting = etcd_client::Client::connect([endpoint.as_str()], Some(opts));
        // Authentication is a request the crate makes while connecting.
        let inner = tokio::time::timeout(CONNECT_TIMEOUT + REQUEST_TIMEOUT, connecting)
            .await
            .map_err(|_| io("connect timed out".into()))?
            .map_err(|e| io(describe(&e)))?;
        Ok(Self { endpoint, inner })
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn error(&self, e: etcd_client::Error) -> EtcdError {
        EtcdError::Io {
            endpoint: self.endpoint.clone(),
            message: describe(&e),
        }
    }

    /// Every key under `prefix` and the store's revision.
    pub async fn range_prefix(&self, prefix: &str) -> Result<(i64, Vec<Kv>), EtcdError> {
        let r = self
            .inner
            .clone()
            .get(prefix, Some(GetOptions::new().with_prefix()))
            .await
            .map_err(|e| self.error(e))?;
        let rev = r.header().map_or(0, |h| h.revision());
        Ok((rev, r.kvs().iter().map(kv).collect()))
    }

    pub async fn put(&self, key: &str, value: &[u8], lease: Option<i64>) -> Result<i64, EtcdError> {
        let opts = lease.map(|l| PutOptions::new().with_lease(l));
        let r = self
            .inner
            .clone()
            .put(key, value, opts)
            .await
            .map_err(|e| self.error(e))?;
        Ok(r.header().map_or(0, |h| h.revision()))
    }

    pub async fn delete(&self, key: &str) -> Result<i64, EtcdError> {
        let r = self
            .inner
            .clone()
            .delete(key, None)
            .await
            .map_err(|e| self.error(e))?;
        Ok(r.header().map_or(0, |h| h.revision()))
    }

    pub async fn grant_lease(&self, ttl_secs: i64) -> Result<i64, EtcdError> {
        let r = self
            .inner
            .clone()
            .lease_grant(ttl_secs, None)
            .await
            .map_err(|e| self.error(e))?;
        Ok(r.id())
    }

    /// Renews a lease once; false if it no longer exists.
    pub async fn keepalive(&self, lease: i64) -> Result<bool, EtcdError> {
        let once = async {
            let (mut keeper, mut answers) = self.inner.clone().lease_keep_alive(lease).await?;
            keeper.keep_alive().await?;
            answers.message().await
        };
        match tokio::time::timeout(REQUEST_TIMEOUT, once).await {
            Err(_) => Err(EtcdError::Io {
                endpoint: self.endpoint.clone(),
                message: "keepalive timed out".into(),
            }),
            Ok(Err(e)) => Err(self.error(e)),
            Ok(Ok(answer)) => Ok(answer.is_some_and(|a| a.ttl() > 0)),
        }
    }

    /// The highest modification revision of a key under `prefix` (0 when
    /// there is none): a cheap probe that etcd answers and how far it is.
    pub async fn newest_revision(&self, prefix: &str) -> Result<i64, EtcdError> {
        let opts = GetOptions::new()
            .with_prefix()
            .with_limit(1)
            .with_sort(SortTarget::Mod, SortOrder::Descend)
            .with_keys_only();
        let r = self
            .inner
            .clone()
            .get(prefix, Some(opts))
            .await
            .map_err(|e| self.error(e))?;
        Ok(r.kvs().first().map_or(0, |k| k.mod_revision()))
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
        let opts = WatchOptions::new()
            .with_prefix()
            .with_start_revision(start_revision)
            .with_progress_notify();
        let mut stream = self
            .inner
            .clone()
            .watch(prefix, Some(opts))
            .await
            .map_err(|e| self.error(e))?;
        while let Some(r) = stream.message().await.map_err(|e| self.error(e))? {
            if r.canceled() || r.compact_revision() > 0 {
                return Err(EtcdError::Cancelled {
                    endpoint: self.endpoint.clone(),
                });
            }
            let changes: Vec<Change> = r
                .events()
                .iter()
                .filter_map(|e| {
                    let k = kv(e.kv()?);
                    Some(match e.event_type() {
                        EventType::Delete => Change::Delete {
                            key: k.key,
                            revision: k.mod_revision,
                        },
                        EventType::Put => Change::Put(k),
                    })
                })
                .collect();
            if !changes.is_empty() && !on(changes) {
                return Ok(());
            }
        }
        Err(EtcdError::Io {
            endpoint: self.endpoint.clone(),
            message: "watch stream ended".into(),
        })
    }
}

fn kv(k: &etcd_client::KeyValue) -> Kv {
    Kv {
        key: String::from_utf8_lossy(k.key()).into_owned(),
        value: k.value().to_vec(),
        mod_revision: k.mod_revision(),
    }
}

/// The crate's error as an operator reads it: a gRPC status by its
/// message (e.g. "etcdserver: authentication failed, invalid user ID or
/// password"), a transport error with its cause.
fn describe(e: &etcd_client::Error) -> String {
    fn causes(mut msg: String, e: &dyn std::error::Error) -> String {
        let mut src = e.source();
        while let Some(s) = src {
            msg.push_str(&format!(": {s}"));
            src = s.source();
        }
        msg
    }
    match e {
        etcd_client::Error::GRpcStatus(s) => causes(format!("{:?}: {}", s.code(), s.message()), s),
        etcd_client::Error::TransportError(t) => causes(t.to_string(), t),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_half_configured_client_certificate_is_refused() {
        let sec = EtcdSecurity {
            cert_file: Some("/nonexistent/c.pem".into()),
            ..Default::default()
        };
        assert!(options(&sec).is_err());
        let sec = EtcdSecurity {
            user: Some("lbd".into()),
            ..Default::default()
        };
        assert_eq!(
            options(&sec).err().as_deref(),
            Some("an etcd user needs a password file")
        );
    }
}
