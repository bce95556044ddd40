# Helpers shared by the provisioning scripts (sourced, not run).

# The interface holding an IPv4 address that starts with $1 (e.g. 192.168.50.).
iface_for() {
    ip -o -4 addr show | awk -v p="$1" 'index($4, p) == 1 { print $2; exit }'
}

# Installs the lb package the host built with `cargo xtask package`.
install_lb() {
    deb=$(ls /lb-package/lb_*.deb 2>/dev/null | sort -V | tail -n 1)
    if [ -z "$deb" ]; then
        echo "no lb package in /lb-package: run 'cargo xtask package' on the host, then 'vagrant reload --provision'" >&2
        exit 1
    fi
    apt-get install -y -qq "$deb"
}
