#!/bin/sh
# The client: reaches the VIP through the router.
set -eu
ip route replace "$VIP/32" via 192.168.60.254
