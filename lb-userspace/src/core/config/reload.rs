//! What a reload may change. The maps are sized by `limits` and pinned at
//! `pin_path`, the program is attached to `interfaces`, the API and
//! metrics sockets are bound, the state directory opened and the route
//! control (`announce`), the etcd feed and logging started once, at
//! start-up: a reload keeps their running values and says which ones wait
//! for a restart, so an operator is never told a change applied that did
//! not.

use super::{Config, FieldError};

/// A reloaded file, ready to apply.
#[derive(Debug)]
pub struct Reload {
    /// The new file with its restart-only fields at their running values.
    pub config: Config,
    /// Restart-only fields whose new value waits for a restart.
    pub needs_restart: Vec<&'static str>,
}

/// Plans the reload of `next` over the `running` file configuration.
/// `serving` is how many VIPs the agent serves now, from every source;
/// `after` how many it would serve with `next`. Refuses a reload that
/// would remove every VIP unless the new file says `allow_no_vips: true`:
/// an empty or cut-short file must not take every service down.
pub fn plan(
    running: &Config,
    mut next: Config,
    serving: usize,
    after: usize,
) -> Result<Reload, FieldError> {
    if serving > 0 && after == 0 && !next.allow_no_vips {
        return Err(FieldError {
            path: "vips".into(),
            message: format!(
                "the reload would remove all {serving} VIPs; set `allow_no_vips: true` in the file to mean it"
            ),
        });
    }
    let mut needs_restart = vec![];
    let mut keep = |name: &'static str, differs: bool| {
        if differs {
            needs_restart.push(name);
        }
        differs
    };
    if keep("interfaces", next.interfaces != running.interfaces) {
        next.interfaces = running.interfaces.clone();
    }
    if keep("api", next.api != running.api) {
        next.api = running.api.clone();
    }
    if keep("metrics", next.metrics_listen != running.metrics_listen) {
        next.metrics_listen = running.metrics_listen;
    }
    if keep("limits", next.limits != running.limits) {
        next.limits = running.limits;
    }
    if keep("pin_path", next.pin_path != running.pin_path) {
        next.pin_path = running.pin_path.clone();
    }
    if keep("state_dir", next.state_dir != running.state_dir) {
        next.state_dir = running.state_dir.clone();
    }
    if keep("announce", next.announce != running.announce) {
        next.announce = running.announce.clone();
    }
    if keep("etcd", next.etcd != running.etcd) {
        next.etcd = running.etcd.clone();
    }
    if keep("log", next.log != running.log) {
        next.log = running.log;
    }
    Ok(Reload {
        config: next,
        needs_restart,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::config::parse;

    const FILE: &str = "node: {name: a}\ninterfaces: [{name: eth0}]\nvips:\n  - {name: w, address: 10.0.0.1, port: 80, backends: [{address: 10.0.1.1}]}\n";

    fn cfg(text: &str) -> Config {
        parse(text, "test").unwrap()
    }

    #[test]
    fn restart_only_fields_keep_their_running_values_and_are_named() {
        let running = cfg(FILE);
        let next = cfg(&format!(
            "{}limits: {{max_vips: 9}}\nmetrics: {{listen: 127.0.0.1:9}}\n",
            FILE.replace("eth0", "eth1")
        ));
        let r = plan(&running, next, 1, 1).unwrap();
        assert_eq!(r.needs_restart, ["interfaces", "metrics", "limits"]);
        assert_eq!(r.config.interfaces, running.interfaces);
        assert_eq!(r.config.limits, running.limits);
        assert_eq!(r.config.metrics_listen, running.metrics_listen);
    }

    #[test]
    fn a_live_change_needs_no_restart() {
        let running = cfg(FILE);
        let r = plan(&running, cfg(&FILE.replace("port: 80", "port: 81")), 1, 1).unwrap();
        assert!(r.needs_restart.is_empty());
        assert_eq!(r.config.vips[0].port, 81);
    }

    #[test]
    fn removing_every_vip_needs_the_flag() {
        let running = cfg(FILE);
        let empty = "node: {name: a}\ninterfaces: [{name: eth0}]\n";
        let e = plan(&running, cfg(empty), 1, 0).unwrap_err();
        assert_eq!(e.path, "vips");
        let meant = cfg(&format!("{empty}allow_no_vips: true\n"));
        assert!(plan(&running, meant, 1, 0).is_ok());
        // Nothing served, nothing to lose.
        assert!(plan(&cfg(empty), cfg(empty), 0, 0).is_ok());
    }
}
