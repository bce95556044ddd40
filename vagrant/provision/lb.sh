#!/bin/sh
# An LB host: the lb package, BIRD announcing the VIP to the router while
# lbd says so, the lab's configuration, the agent.
set -eu
. /vagrant/provision/lib.sh

install_lb
edge=$(iface_for 192.168.50.)
# The backends' networks are behind the router.
ip route replace 10.10.0.0/24 via 192.168.50.254 dev "$edge"
ip route replace 10.20.0.0/24 via 192.168.50.254 dev "$edge"

# Native XDP on virtio-net transmits (XDP_TX) on queues of its own: give
# the NIC as many as it allows.
max=$(ethtool -l "$edge" 2>/dev/null | awk '/^Combined:/ { print $2; exit }')
[ -n "$max" ] && ethtool -L "$edge" combined "$max" 2>/dev/null || true

mode=driver
sed -e "s/@EDGE@/$edge/" -e "s/@XDP_MODE@/$mode/" /vagrant/config/lb.yaml > /etc/lb/lb.yaml
lbd check --config /etc/lb/lb.yaml

# BIRD: one BGP session to the router, exporting exactly the static routes
# lbd writes into /var/lib/lb-bird/vips.conf (OPERATIONS.md, "How BIRD is
# wired"). `lbd withdraw` creates that file, empty, before BIRD first reads
# its configuration.
addr=$(ip -o -4 addr show dev "$edge" | awk '{ split($4, a, "/"); print a[1]; exit }')
apt-get install -y -qq --no-install-recommends bird2
install -d -m 0755 /var/lib/lb-bird
lbd withdraw --config /etc/lb/lb.yaml
cat > /etc/bird/bird.conf <<CONF
router id $addr;
protocol device {}
include "/var/lib/lb-bird/vips.conf";
protocol bfd { interface "$edge" { min rx interval 100 ms; min tx interval 100 ms; multiplier 3; }; }
protocol bgp uplink {
  local $addr as 65001;
  neighbor 192.168.50.254 as 65000;
  ipv4 { import none; export where proto = "lb_vips4"; };
  bfd on;
}
CONF
systemctl enable bird
systemctl restart bird
# lbd talks to BIRD's control socket, which belongs to BIRD's group.
mkdir -p /etc/systemd/system/lbd.service.d
printf '[Service]\nSupplementaryGroups=bird\n' > /etc/systemd/system/lbd.service.d/bird.conf
systemctl daemon-reload
systemctl enable lbd
systemctl restart lbd
sleep 3
if ! systemctl is-active --quiet lbd; then
    # A NIC (or hypervisor) without native XDP: fall back to generic mode,
    # slower but the same behaviour. README: "It doesn't forward".
    journalctl -u lbd -n 20 --no-pager >&2 || true
    echo "lbd did not start in driver mode on $edge; using generic XDP" >&2
    sed -e "s/@EDGE@/$edge/" -e "s/@XDP_MODE@/generic/" /vagrant/config/lb.yaml > /etc/lb/lb.yaml
    systemctl restart lbd
fi
systemctl is-active lbd
