#!/bin/sh
# The router between the client, the LB hosts and the two clouds. BIRD
# learns the VIP from each LB host by BGP (each announces it only while it
# can serve it) and installs one ECMP route over them, hashing on the
# 5-tuple so a connection stays on one LB; BFD routes around a dead LB host
# in under a second (README: "Sharing the VIP").
set -eu
. /vagrant/provision/lib.sh

edge=$(iface_for 192.168.50.)
sysctl -qw net.ipv4.ip_forward=1
sysctl -qw net.ipv4.fib_multipath_hash_policy=1
# Replies come straight from the backends (direct server return), from the
# VIP, on interfaces the VIP is not routed through: loose reverse-path check.
sysctl -qw net.ipv4.conf.all.rp_filter=2
for i in $(ls /sys/class/net); do sysctl -qw "net.ipv4.conf.$i.rp_filter=2" || true; done
# The static ECMP route of earlier labs, if any: BGP decides now.
ip route del "$VIP/32" 2>/dev/null || true
apt-get install -y -qq --no-install-recommends bird2
cat > /etc/bird/bird.conf <<CONF
router id 192.168.50.254;
protocol device {}
# Equal BGP routes from the LB hosts become one multipath kernel route.
protocol kernel { ipv4 { export all; }; merge paths on; }
protocol bfd { interface "$edge" { min rx interval 100 ms; min tx interval 100 ms; multiplier 3; }; }
template bgp lbhost {
  local 192.168.50.254 as 65000;
  ipv4 { import where net = $VIP/32; export none; };
  bfd on;
}
protocol bgp lb1 from lbhost { neighbor 192.168.50.11 as 65001; }
protocol bgp lb2 from lbhost { neighbor 192.168.50.12 as 65001; }
CONF
systemctl enable bird
systemctl restart bird
