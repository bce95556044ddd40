#!/bin/sh
# An LB host: the lb package, the lab's configuration, the agent.
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
