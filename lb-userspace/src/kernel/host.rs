//! What the host must provide around the maps and programs: capabilities,
//! a bpffs mount for the pins, interface indexes, IP forwarding for the FIB
//! helper.

use std::path::Path;

/// The capabilities a process needs to run the data path that its
/// effective set lacks: CAP_BPF to create maps and programs and to pin
/// them; CAP_PERFMON, without which the verifier refuses the balancer
/// ("pointer arithmetic prohibited for !root" on its packet bounds checks);
/// CAP_NET_ADMIN to attach XDP and set the interfaces' forwarding sysctls.
/// CAP_SYS_ADMIN stands in for the first two, as it does in the kernel;
/// the agent does not need it.
pub fn missing_capabilities() -> Vec<&'static str> {
    const NET_ADMIN: u32 = 12;
    const SYS_ADMIN: u32 = 21;
    const PERFMON: u32 = 38;
    const BPF: u32 = 39;
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let effective = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    let has = |bit: u32| effective & (1 << bit) != 0;
    [
        (has(BPF) || has(SYS_ADMIN), "CAP_BPF"),
        (has(PERFMON) || has(SYS_ADMIN), "CAP_PERFMON"),
        (has(NET_ADMIN), "CAP_NET_ADMIN"),
    ]
    .into_iter()
    .filter(|(present, _)| !present)
    .map(|(_, name)| name)
    .collect()
}

/// Makes sure `pin_path` is on a bpffs mount and exists; the error says
/// how to fix it.
pub fn ensure_bpffs(pin_path: &Path) -> Result<(), String> {
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    let on_bpffs = mounts.lines().any(|l| {
        let mut f = l.split_whitespace();
        let (Some(mnt), Some(fs)) = (f.nth(1), f.next()) else {
            return false;
        };
        fs == "bpf" && pin_path.starts_with(mnt)
    });
    if !on_bpffs {
        return Err(format!(
            "{} is not on a bpffs mount: mount it with `mount -t bpf bpf /sys/fs/bpf` (or set pin_path); \
             inside `ip netns exec` /sys is remounted, use `nsenter --net=/var/run/netns/NAME` instead",
            pin_path.display()
        ));
    }
    std::fs::create_dir_all(pin_path).map_err(|e| format!("create {}: {e}", pin_path.display()))
}

/// The kernel's FIB helper refuses to resolve next hops for interfaces
/// without forwarding; turn it on, or say so.
pub fn ensure_forwarding(iface: &str) {
    for family in ["ipv4", "ipv6"] {
        let path = format!("/proc/sys/net/{family}/conf/{iface}/forwarding");
        if let Ok(v) = std::fs::read_to_string(&path)
            && v.trim() != "1"
        {
            match std::fs::write(&path, "1") {
                Ok(()) => tracing::info!(
                    interface = iface,
                    family,
                    "enabled forwarding (bpf_fib_lookup needs it)"
                ),
                Err(e) => {
                    tracing::warn!(interface = iface, family, error = %e, "forwarding is off: next hops will not resolve (drop_no_next_hop)")
                }
            }
        }
    }
}

pub fn ifindex(name: &str) -> Option<u32> {
    let c = std::ffi::CString::new(name).ok()?;
    // SAFETY: c is a valid NUL-terminated string.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (i != 0).then_some(i)
}
