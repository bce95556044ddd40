#!/bin/sh
# A backend: nginx answering with its name, the VIP on loopback, and lb's
# decap program on the interface the tunnels arrive on.
set -eu
. /vagrant/provision/lib.sh

install_lb
apt-get install -y -qq --no-install-recommends nginx-light
hostname > /var/www/html/index.html
# Something to download slowly: a connection that outlives agent restarts.
truncate -s 50M /var/www/html/big

net=10.10.0.
[ "$CLOUD" = gcp ] && net=10.20.0.
nic=$(iface_for "$net")
addr=$(ip -o -4 addr show dev "$nic" | awk '{ split($4, a, "/"); print a[1]; exit }')

# The VIP is a local address (so the stack accepts the decapsulated
# packets) that the backend never answers ARP for.
ip addr replace "$VIP/32" dev lo
sysctl -qw net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2
# Replies go straight to the client through the router, and the client (and
# the LB hosts' health checks) are reached through the cloud network, not the
# management NIC: route them so, and keep the reverse-path check loose
# (README: "It doesn't forward").
ip route replace 192.168.60.0/24 via "${net}254" dev "$nic"
ip route replace 192.168.50.0/24 via "${net}254" dev "$nic"
sysctl -qw net.ipv4.conf.all.rp_filter=2 "net.ipv4.conf.$nic.rp_filter=2"

# Tunnels come from the LB hosts' encapsulation sources (the default
# dataplane.encap_source_v4) and carry packets for the VIP; nothing else is
# unwrapped.
echo "LB_DECAP_ARGS=\"--address $addr --lb-source 172.16.0.0/16 --vip $VIP\"" > "/etc/lb/decap-$nic.env"
systemctl enable "lb-decap@$nic"
systemctl restart "lb-decap@$nic"
