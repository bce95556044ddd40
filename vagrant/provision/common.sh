#!/bin/sh
# Every VM: tools the lab and its README use.
set -eu
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends iproute2 ethtool tcpdump curl bpftool
