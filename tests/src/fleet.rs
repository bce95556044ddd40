//! The lab as a fleet: K LB hosts on the LB segment, each running BIRD and
//! lbd, announcing the VIPs by BGP to the router's BIRD, which spreads
//! flows over them by ECMP (the 5-tuple hash) and routes around a dead
//! host within BFD's 300 ms.

use std::{
    collections::BTreeSet,
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use anyhow::{Result, bail};

use crate::{
    bird::{self, Bird},
    lab::{Lab, Shape, lb_host_port, lb_host_v4},
    netns::Netns,
    procs::{Etcd, Lbd},
};

/// The lab's configuration plus `shop`, a VIP on the aws backends alone,
/// so all of one VIP's backends can fail while the others serve.
pub fn base_config() -> Result<String> {
    Ok(format!(
        "{}{}",
        crate::lab::lab_config()?,
        r#"
  - name: shop
    address: 10.100.0.5
    port: 80
    health_check: {type: tcp, interval: 300ms, timeout: 200ms, rise: 2, fall: 2}
    backends:
      - {address: 10.20.0.11, forwarding: l2-dsr, labels: {cloud: aws, region: eu-west-1}}
      - {address: 10.20.0.12, forwarding: l2-dsr, labels: {cloud: aws, region: eu-west-1}}
"#
    ))
}

pub struct Fleet {
    pub lab: Lab,
    pub router_bird: Bird,
    /// The fleet's etcd, on the router (10.20.0.1:2379): every agent
    /// publishes its view there and reads the others'.
    pub etcd: Etcd,
    /// One per LB host, in host order.
    pub birds: Vec<Bird>,
    /// The agent of each host, when running.
    pub agents: Vec<Option<Lbd>>,
}

impl Fleet {
    pub fn build(hosts: usize) -> Result<Self> {
        let lab = Lab::build_with(Shape {
            lb_hosts: hosts,
            static_vip_route: false,
        })?;
        let addrs: Vec<Ipv4Addr> = (0..hosts).map(lb_host_v4).collect();
        let router_bird = Bird::start(&lab.router, "bird-router", &bird::router_config(&addrs))?;
        let etcd = Etcd::start_on(&lab.router, "10.20.0.1", 2379)?;
        let mut birds = vec![];
        for (i, a) in addrs.iter().enumerate() {
            let ns = host_ns(&lab, i);
            birds.push(Bird::start(
                ns,
                &format!("bird-lb{}", i + 1),
                &bird::lb_host_config(*a),
            )?);
        }
        Ok(Self {
            lab,
            router_bird,
            etcd,
            birds,
            agents: (0..hosts).map(|_| None).collect(),
        })
    }

    pub fn hosts(&self) -> usize {
        self.birds.len()
    }

    pub fn host(&self, i: usize) -> &Netns {
        host_ns(&self.lab, i)
    }

    /// `base` (the lab's configuration) for host `i`: its own node name,
    /// and route control through its BIRD.
    pub fn config_for(&self, i: usize, base: &str) -> String {
        let b = &self.birds[i];
        format!(
            "{}\nannounce: {{bird_socket: {}, include_file: {}, drain_time: 1s}}\n",
            base.replacen("name: lab-lb", &format!("name: lab-lb{}", i + 1), 1),
            b.socket.display(),
            b.include_file().display()
        )
    }

    /// The agents' arguments: the fleet's etcd.
    pub fn args(&self) -> Vec<String> {
        let mut a = self.etcd.lbd_args();
        a.extend(["--etcd-prefix".into(), "/lb".into()]);
        a
    }

    pub fn start_agent(&mut self, i: usize, base: &str) -> Result<()> {
        let args = self.args();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let a = Lbd::start(self.host(i), &self.config_for(i, base), &args)?;
        self.agents[i] = Some(a);
        Ok(())
    }

    /// (Re)starts host `i`'s agent with the files it had.
    pub fn respawn_agent(&mut self, i: usize) -> Result<()> {
        let args = self.args();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.agent_mut(i).spawn(&args)
    }

    pub fn agent(&self, i: usize) -> &Lbd {
        self.agents[i].as_ref().expect("agent running")
    }

    pub fn agent_mut(&mut self, i: usize) -> &mut Lbd {
        self.agents[i].as_mut().expect("agent running")
    }

    /// Starts every host's agent on `base` and waits until each sees every
    /// backend healthy and the router has every host as a next hop.
    pub fn start_all(&mut self, base: &str) -> Result<()> {
        for i in 0..self.hosts() {
            self.start_agent(i, base)?;
        }
        self.wait_serving()
    }

    /// Every agent sees every backend of web healthy; every host announces.
    pub fn wait_serving(&self) -> Result<()> {
        for i in 0..self.hosts() {
            for b in crate::lab::LAB_BACKENDS {
                let a = self.agent(i);
                a.wait_healthy("web", b, true, Duration::from_secs(15))
                    .map_err(|e| {
                        let log = a.log_text();
                        let tail: Vec<&str> = log.lines().rev().take(30).collect();
                        let tail: Vec<&str> = tail.into_iter().rev().collect();
                        e.context(format!("host {i}'s agent log ends:\n{}", tail.join("\n")))
                    })?;
            }
        }
        self.wait_nexthops("10.100.0.1".parse()?, &self.all(), Duration::from_secs(15))
            .map(|_| ())
    }

    /// The next hops the router's kernel has for `vip` (its ECMP set).
    pub fn nexthops(&self, vip: Ipv4Addr) -> Result<BTreeSet<Ipv4Addr>> {
        let out = self
            .lab
            .router
            .ip(&["route", "show", &format!("{vip}/32")])?;
        Ok(out
            .split_whitespace()
            .collect::<Vec<_>>()
            .windows(2)
            .filter(|w| w[0] == "via")
            .filter_map(|w| w[1].parse().ok())
            .collect())
    }

    /// Waits until the router's next hops for `vip` are `want`; returns
    /// how long that took.
    pub fn wait_nexthops(
        &self,
        vip: Ipv4Addr,
        want: &BTreeSet<Ipv4Addr>,
        timeout: Duration,
    ) -> Result<Duration> {
        let t0 = Instant::now();
        loop {
            let now = self.nexthops(vip)?;
            if &now == want {
                return Ok(t0.elapsed());
            }
            if t0.elapsed() > timeout {
                bail!(
                    "{vip}: next hops {now:?}, want {want:?} after {timeout:?}\nrouter BIRD:\n{}",
                    self.router_bird.birdc("show protocols").unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Kills both aws servers, `shop`'s only backends, and waits until no
    /// host announces `shop` (10.100.0.5); returns how long that took.
    pub fn kill_shop_backends(&mut self) -> Result<Duration> {
        let shop: Ipv4Addr = "10.100.0.5".parse()?;
        self.wait_nexthops(shop, &self.all(), Duration::from_secs(15))?;
        let t0 = Instant::now();
        self.lab.kill_server("a1");
        self.lab.kill_server("a2");
        self.wait_nexthops(shop, &BTreeSet::new(), Duration::from_secs(15))?;
        Ok(t0.elapsed())
    }

    /// Every host's address.
    pub fn all(&self) -> BTreeSet<Ipv4Addr> {
        (0..self.hosts()).map(lb_host_v4).collect()
    }

    /// Host `i` dies: its link to the router cut, its agent and BIRD
    /// killed (no withdrawal: BFD has to notice).
    pub fn lose(&mut self, i: usize) -> Result<()> {
        self.lab
            .router
            .ip(&["link", "set", &lb_host_port(i), "down"])?;
        if let Some(a) = self.agents[i].as_mut() {
            a.kill();
        }
        self.birds[i].kill();
        Ok(())
    }

    /// Host `i` comes back: link up, BIRD and lbd started again (lbd
    /// adopts the pinned data path it left).
    pub fn bring_back(&mut self, i: usize) -> Result<()> {
        self.lab
            .router
            .ip(&["link", "set", &lb_host_port(i), "up"])?;
        self.birds[i].spawn()?;
        if self.agents[i].is_some() {
            self.respawn_agent(i)?;
        }
        Ok(())
    }
}

fn host_ns(lab: &Lab, i: usize) -> &Netns {
    if i == 0 {
        &lab.lb
    } else {
        &lab.more_lbs[i - 1]
    }
}
