//! Who may drive the agent: API tokens with a role and, optionally, a
//! tenant, and what each route needs. Pure: the daemon reads the files and
//! asks [`Tokens::principal`] and [`need`].
//!
//! The tokens file (`api.tokens_file`, YAML, mode 0600):
//!
//! ```yaml
//! tokens:
//!   - id: oncall          # who the audit log names
//!     token: "at least 16 characters of secret"
//!     role: operate       # read | operate | admin
//!   - id: acme-ci
//!     token: "..."
//!     role: admin
//!     tenant: acme        # sees and changes only acme's VIPs
//! ```

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::config::FieldError;

/// What a token may do. Ordered: each role may do what the ones before
/// it may.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads: state, events, drills, node.
    Read,
    /// Also drains, undrains, maintenance, weights, drills.
    Operate,
    /// Everything: backend lists, the node's announcement.
    Admin,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Operate => "operate",
            Role::Admin => "admin",
        }
    }
}

/// Who a request is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// `token:<id>` or `uid:<n>` (Unix socket peer credentials).
    pub who: String,
    pub role: Role,
    /// `Some`: only this tenant's VIPs exist for it.
    pub tenant: Option<String>,
}

impl Principal {
    /// A local user on the Unix socket (mode 0600: root or the agent's
    /// owner): admin of everything.
    pub fn local(uid: u32, pid: Option<i32>) -> Self {
        let who = match pid {
            Some(p) => format!("uid:{uid} pid:{p}"),
            None => format!("uid:{uid}"),
        };
        Self {
            who,
            role: Role::Admin,
            tenant: None,
        }
    }

    /// Whether it may see a VIP of `tenant`.
    pub fn sees(&self, tenant: &str) -> bool {
        self.tenant.as_deref().is_none_or(|t| t == tenant)
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTokens {
    tokens: Vec<RawToken>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawToken {
    id: String,
    token: String,
    role: Role,
    tenant: Option<String>,
}

#[derive(Clone)]
struct Token {
    id: String,
    secret: Vec<u8>,
    role: Role,
    tenant: Option<String>,
}

/// The tokens the TCP API accepts.
#[derive(Clone, Default)]
pub struct Tokens {
    tokens: Vec<Token>,
}

/// Shorter tokens are refused: the API is reachable over the network.
pub const MIN_TOKEN_LEN: usize = 16;

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secrets.
        f.debug_list()
            .entries(self.tokens.iter().map(|t| (&t.id, t.role, &t.tenant)))
            .finish()
    }
}

impl Tokens {
    /// One admin token (`api.token_file`), id `token_file`.
    pub fn single_admin(secret: &str) -> Result<Self, FieldError> {
        if secret.len() < MIN_TOKEN_LEN {
            return Err(FieldError {
                path: "api.token_file".into(),
                message: format!("the token must be at least {MIN_TOKEN_LEN} characters"),
            });
        }
        Ok(Self {
            tokens: vec![Token {
                id: "token_file".into(),
                secret: secret.as_bytes().to_vec(),
                role: Role::Admin,
                tenant: None,
            }],
        })
    }

    /// A tokens file; `tenants`: the configured tenant names.
    pub fn parse(text: &str, tenants: &BTreeSet<String>) -> Result<Self, Vec<FieldError>> {
        let de = serde_norway::Deserializer::from_str(text);
        let raw: RawTokens = serde_path_to_error::deserialize(de).map_err(|e| {
            vec![FieldError {
                path: e.path().to_string(),
                message: e.inner().to_string(),
            }]
        })?;
        let mut errors = vec![];
        let mut ids = BTreeSet::new();
        let mut secrets = BTreeSet::new();
        let mut tokens = vec![];
        for (i, t) in raw.tokens.into_iter().enumerate() {
            let path = |f: &str| format!("tokens[{i}].{f}");
            if t.id.is_empty() || !ids.insert(t.id.clone()) {
                errors.push(FieldError {
                    path: path("id"),
                    message: format!("must be non-empty and unique, got {:?}", t.id),
                });
            }
            if t.token.len() < MIN_TOKEN_LEN {
                errors.push(FieldError {
                    path: path("token"),
                    message: format!("must be at least {MIN_TOKEN_LEN} characters"),
                });
            } else if !secrets.insert(t.token.clone()) {
                errors.push(FieldError {
                    path: path("token"),
                    message: "is also another token's secret".into(),
                });
            }
            if let Some(tenant) = &t.tenant
                && !tenants.contains(tenant)
            {
                errors.push(FieldError {
                    path: path("tenant"),
                    message: format!("no tenant {tenant:?} in the configuration"),
                });
            }
            tokens.push(Token {
                id: t.id,
                secret: t.token.into_bytes(),
                role: t.role,
                tenant: t.tenant,
            });
        }
        if errors.is_empty() {
            Ok(Self { tokens })
        } else {
            Err(errors)
        }
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Who presents `Authorization: <header>`, if anyone. Every token is
    /// compared in constant time, so timing tells nothing about which.
    pub fn principal(&self, header: Option<&str>) -> Option<Principal> {
        let presented = header?.strip_prefix("Bearer ")?.as_bytes();
        let mut found = None;
        for t in &self.tokens {
            if constant_time_eq(presented, &t.secret) {
                found = Some(t);
            }
        }
        found.map(|t| Principal {
            who: format!("token:{}", t.id),
            role: t.role,
            tenant: t.tenant.clone(),
        })
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// What a request needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Need {
    pub role: Role,
    /// The VIP the route names (`/v1/vips/{vip}/...`): a tenant-scoped
    /// principal must own it, or the VIP does not exist for it.
    pub vip: Option<String>,
    /// The route acts on the whole host (node, drills): no tenant token.
    pub host_wide: bool,
}

/// What `method path` needs. Reads need `read`; drains, weights and drills
/// `operate`; backend lists and the node's announcement `admin`.
pub fn need(method: &str, path: &str) -> Need {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let vip = match segs.as_slice() {
        ["v1", "vips", vip, ..] => Some(percent_decode(vip)),
        _ => None,
    };
    let host_wide = matches!(segs.as_slice(), ["v1", "node", ..] | ["v1", "drill", ..]);
    let role = match (method, segs.as_slice()) {
        ("GET" | "HEAD", _) => Role::Read,
        (
            _,
            [
                "v1",
                "vips",
                _,
                "backends",
                _,
                "drain" | "undrain" | "maintenance" | "weight",
            ],
        ) => Role::Operate,
        (_, ["v1", "drill"]) => Role::Operate,
        _ => Role::Admin,
    };
    Need {
        role,
        vip,
        host_wide,
    }
}

/// `%XX` escapes of a path segment (VIP names may hold `:` or `/`-free
/// punctuation clients escape).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match hex {
            Some(v) if b[i] == b'%' => {
                out.push(v);
                i += 3;
            }
            _ => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenants() -> BTreeSet<String> {
        ["acme".to_string()].into()
    }

    const FILE: &str = "tokens:\n  - {id: ro, token: read-only-token-0001, role: read}\n  - {id: ops, token: operator-token-0002, role: operate}\n  - {id: acme, token: acme-admin-token-03, role: admin, tenant: acme}\n";

    #[test]
    fn tokens_map_to_principals() {
        let t = Tokens::parse(FILE, &tenants()).unwrap();
        let p = t.principal(Some("Bearer operator-token-0002")).unwrap();
        assert_eq!(
            (p.who.as_str(), p.role, p.tenant),
            ("token:ops", Role::Operate, None)
        );
        let p = t.principal(Some("Bearer acme-admin-token-03")).unwrap();
        assert_eq!(p.tenant.as_deref(), Some("acme"));
        assert!(p.sees("acme") && !p.sees("default"));
        assert_eq!(t.principal(Some("Bearer operator-token-000")), None);
        assert_eq!(t.principal(Some("operator-token-0002")), None);
        assert_eq!(t.principal(None), None);
    }

    #[test]
    fn bad_token_files_name_the_field() {
        let e = Tokens::parse(
            "tokens:\n  - {id: a, token: short, role: read}\n",
            &tenants(),
        )
        .unwrap_err();
        assert_eq!(e[0].path, "tokens[0].token");
        let e = Tokens::parse(
            "tokens:\n  - {id: a, token: long-enough-token-1, role: root}\n",
            &tenants(),
        )
        .unwrap_err();
        assert!(e[0].path.starts_with("tokens[0]"), "{e:?}");
        let e = Tokens::parse(
            "tokens:\n  - {id: a, token: long-enough-token-1, role: read, tenant: nope}\n",
            &tenants(),
        )
        .unwrap_err();
        assert_eq!(e[0].path, "tokens[0].tenant");
        let e = Tokens::parse(
            "tokens:\n  - {id: a, token: long-enough-token-1, role: read}\n  - {id: a, token: long-enough-token-2, role: read}\n",
            &tenants(),
        )
        .unwrap_err();
        assert_eq!(e[0].path, "tokens[1].id");
    }

    #[test]
    fn routes_need_the_right_role() {
        assert_eq!(need("GET", "/v1/state").role, Role::Read);
        let drain = need("POST", "/v1/vips/web/backends/10.0.0.1/drain");
        assert_eq!(
            (drain.role, drain.vip.as_deref()),
            (Role::Operate, Some("web"))
        );
        assert_eq!(
            need("PUT", "/v1/vips/web/backends/10.0.0.1/weight").role,
            Role::Operate
        );
        assert_eq!(need("POST", "/v1/drill").role, Role::Operate);
        assert!(need("POST", "/v1/drill").host_wide);
        assert_eq!(need("PUT", "/v1/vips/web/backends").role, Role::Admin);
        assert_eq!(need("POST", "/v1/node/drain").role, Role::Admin);
        assert!(need("GET", "/v1/node").host_wide);
        assert_eq!(
            need("GET", "/v1/vips/a%3Ab/backends").vip.as_deref(),
            Some("a:b")
        );
        assert!(Role::Admin > Role::Operate && Role::Operate > Role::Read);
    }
}
