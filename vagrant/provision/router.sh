#!/bin/sh
# The router between the client, the LB hosts and the two clouds. It sends
# the VIP to both LB hosts by ECMP, hashing on the 5-tuple so a connection
# stays on one LB (README: "Sharing the VIP").
set -eu
. /vagrant/provision/lib.sh

edge=$(iface_for 192.168.50.)
sysctl -qw net.ipv4.ip_forward=1
sysctl -qw net.ipv4.fib_multipath_hash_policy=1
# Replies come straight from the backends (direct server return), from the
# VIP, on interfaces the VIP is not routed through: loose reverse-path check.
sysctl -qw net.ipv4.conf.all.rp_filter=2
for i in $(ls /sys/class/net); do sysctl -qw "net.ipv4.conf.$i.rp_filter=2" || true; done
ip route replace "$VIP/32" \
    nexthop via 192.168.50.11 dev "$edge" \
    nexthop via 192.168.50.12 dev "$edge"
