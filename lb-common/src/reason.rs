//! Why the data path did what it did. One per-CPU counter per reason
//! (`STATS`, index = reason), named for `lbctl stats` and Prometheus, as
//! Cilium's `drop_reasons.h`.

macro_rules! reasons {
    ($( $(#[doc = $doc:literal])* $variant:ident = $value:literal => $name:literal, )+) => {
        /// Outcome counters of the XDP programs.
        #[repr(u32)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Reason {
            $( $(#[doc = $doc])* $variant = $value, )+
        }

        impl Reason {
            /// Every reason, in index order.
            pub const ALL: &'static [Reason] = &[ $( Reason::$variant, )+ ];

            /// Stable snake_case name used in metrics and the CLI.
            pub const fn name(self) -> &'static str {
                match self { $( Reason::$variant => $name, )+ }
            }

            /// One-line explanation for operators.
            pub const fn describe(self) -> &'static str {
                match self { $( Reason::$variant => concat!($($doc),+), )+ }
            }

            pub const fn from_index(index: u32) -> Option<Reason> {
                match index { $( $value => Some(Reason::$variant), )+ _ => None }
            }
        }
    };
}

reasons! {
    /// Not IPv4/IPv6 (ARP, LLDP, ...): passed to the host stack.
    PassNotIp = 0 => "pass_not_ip",
    /// IP packet not addressed to a VIP: passed to the host stack.
    PassNotVip = 1 => "pass_not_vip",
    /// Addressed to a VIP address but no VIP matches its port/protocol and it
    /// is not ICMP: passed to the host stack.
    PassVipNoService = 2 => "pass_vip_no_service",
    /// Forwarded out of the receiving interface (XDP_TX).
    FwdTx = 3 => "fwd_tx",
    /// Forwarded out of another interface (XDP_REDIRECT through the devmap).
    FwdRedirect = 4 => "fwd_redirect",
    /// Connection table hit: the flow kept its backend.
    ConntrackHit = 5 => "conntrack_hit",
    /// Connection table miss: the ring chose the backend.
    ConntrackMiss = 6 => "conntrack_miss",
    /// A UDP entry was idle past the timeout and was replaced.
    ConntrackUdpExpired = 7 => "conntrack_udp_expired",
    /// A pinned backend was down and the VIP moves flows: re-steered.
    ConntrackBackendDown = 8 => "conntrack_backend_down",
    /// New-flow flood guard: the flow was steered but not recorded.
    FloodGuard = 9 => "flood_guard",
    /// The VIP has no usable backend (empty ring): dropped.
    DropNoBackend = 10 => "drop_no_backend",
    /// The ring pointed at an invalid backend slot: dropped.
    DropBadBackend = 11 => "drop_bad_backend",
    /// IP fragment to a VIP (no reassembly in XDP): dropped.
    DropFragment = 12 => "drop_fragment",
    /// Frame shorter than its Ethernet/VLAN header: dropped.
    DropMalformedL2 = 13 => "drop_malformed_l2",
    /// Truncated or invalid IPv4/IPv6 header (version, IHL, length): dropped.
    DropMalformedL3 = 14 => "drop_malformed_l3",
    /// Truncated TCP/UDP header to a VIP: dropped.
    DropMalformedL4 = 15 => "drop_malformed_l4",
    /// Truncated or unparsable ICMP to a VIP: dropped.
    DropMalformedIcmp = 16 => "drop_malformed_icmp",
    /// Unsupported IPv6 extension header chain to a VIP: dropped.
    DropIpv6ExtHeaders = 17 => "drop_ipv6_ext_headers",
    /// ICMP echo request to a VIP answered.
    IcmpEchoReply = 18 => "icmp_echo_reply",
    /// Packet too big after encapsulation: ICMP frag-needed / packet-too-big
    /// sent to the client.
    IcmpTooBigSent = 19 => "icmp_too_big_sent",
    /// Inbound ICMP frag-needed / packet-too-big about a VIP flow steered to
    /// that flow's backend.
    IcmpSteered = 20 => "icmp_steered",
    /// Other ICMP to a VIP address (unrelated errors, other types): passed.
    PassIcmpOther = 21 => "pass_icmp_other",
    /// Next hop resolved by the kernel FIB and neighbour table.
    FibOk = 22 => "fib_ok",
    /// No neighbour entry: the configured gateway or backend MAC was used.
    FibFallbackMac = 23 => "fib_fallback_mac",
    /// No route, no neighbour and no configured MAC: dropped.
    DropNoNextHop = 24 => "drop_no_next_hop",
    /// bpf_xdp_adjust_head failed (no headroom): dropped.
    DropNoHeadroom = 25 => "drop_no_headroom",
    /// bpf_redirect_map failed (egress interface not in the devmap): dropped.
    DropRedirect = 26 => "drop_redirect",
    /// Packet too big but DF not set (IPv4): forwarded anyway, the backend
    /// path fragments.
    TooBigNoDf = 27 => "too_big_no_df",
    /// Decap: tunnel header removed, inner packet passed up.
    DecapOk = 28 => "decap_ok",
    /// Decap: not a tunnel for this host: passed untouched.
    DecapPass = 29 => "decap_pass",
    /// Decap: malformed tunnel packet: dropped.
    DecapDropMalformed = 30 => "decap_drop_malformed",
    /// The configuration map is missing (program not provisioned): passed.
    PassNotConfigured = 31 => "pass_not_configured",
    /// Forwarded by L2 direct server return (subset of fwd_*).
    FwdL2Dsr = 32 => "fwd_l2_dsr",
    /// Forwarded inside a tunnel (subset of fwd_*).
    FwdEncap = 33 => "fwd_encap",
    /// Decap: a tunnel from a source outside the LB prefixes: passed
    /// untouched (or dropped, `--refused drop`).
    DecapRefusedSource = 34 => "decap_refused_source",
    /// Decap: a tunnel whose inner destination is not a local VIP address:
    /// passed untouched (or dropped, `--refused drop`).
    DecapRefusedInner = 35 => "decap_refused_inner",
    /// A TCP connection-table entry belonged to an earlier connection of
    /// the same addresses and ports (its sequence number is far from this
    /// packet's): re-steered by the ring.
    ConntrackStale = 36 => "conntrack_stale",
    /// A source no client has (0/8, 127/8, multicast, 240/4, the VIP
    /// itself; ::, ::1, ff00::/8, v4-mapped): dropped.
    DropMartianSource = 37 => "drop_martian_source",
    /// An impossible TCP flag set (SYN+FIN, SYN+RST, no flags): dropped.
    DropBadTcpFlags = 38 => "drop_bad_tcp_flags",
    /// IPv4 options whose lengths overrun the header: dropped.
    DropBadIpOptions = 39 => "drop_bad_ip_options",
    /// The source is on the VIP's deny list: dropped.
    DropDenied = 40 => "drop_denied",
    /// The VIP has an allow list and the source is not on it: dropped.
    DropNotAllowed = 41 => "drop_not_allowed",
    /// The source prefix is over its packets-per-second limit: dropped.
    DropSourceRateLimit = 42 => "drop_source_rate_limit",
    /// The source prefix is over its new-flows-per-second limit: dropped.
    DropSourceFlowLimit = 43 => "drop_source_flow_limit",
    /// The VIP is over its new-flows-per-second budget: dropped.
    DropVipFlowBudget = 44 => "drop_vip_flow_budget",
}

impl Reason {
    /// Number of reasons (the `STATS` array has `REASON_SLOTS`).
    pub const COUNT: u32 = Reason::ALL.len() as u32;
}

/// What the balancer finally did with a packet. Every packet it sees ends
/// on exactly one reason that has a verdict, so the verdict counters add up
/// to the packets seen; the other reasons are steps counted on the way
/// (a connection-table hit, the FIB answer, the forwarding mode).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Verdict {
    /// Handed to the host stack untouched (`XDP_PASS`).
    Pass,
    /// Dropped and counted (`XDP_DROP`).
    Drop,
    /// Sent on to a backend (`XDP_TX` or `XDP_REDIRECT`).
    Forward,
    /// Answered by the balancer itself: an ICMP echo reply or a too-big
    /// error back to the client (`XDP_TX`).
    Answer,
}

impl Verdict {
    /// Stable label value in metrics and the CLI.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Pass => "pass",
            Self::Drop => "drop",
            Self::Forward => "forward",
            Self::Answer => "answer",
        }
    }
}

impl Reason {
    /// The verdict a balancer packet ends on when this is its last reason;
    /// `None` for a step (counted besides the verdict) and for the decap
    /// program's own reasons.
    pub const fn verdict(self) -> Option<Verdict> {
        use Reason::*;
        match self {
            PassNotIp | PassNotVip | PassVipNoService | PassIcmpOther | PassNotConfigured => {
                Some(Verdict::Pass)
            }
            FwdTx | FwdRedirect => Some(Verdict::Forward),
            IcmpEchoReply | IcmpTooBigSent => Some(Verdict::Answer),
            DropNoBackend | DropBadBackend | DropFragment | DropMalformedL2 | DropMalformedL3
            | DropMalformedL4 | DropMalformedIcmp | DropIpv6ExtHeaders | DropNoNextHop
            | DropNoHeadroom | DropRedirect | DropMartianSource | DropBadTcpFlags
            | DropBadIpOptions | DropDenied | DropNotAllowed | DropSourceRateLimit
            | DropSourceFlowLimit | DropVipFlowBudget => Some(Verdict::Drop),
            ConntrackHit | ConntrackMiss | ConntrackUdpExpired | ConntrackBackendDown
            | FloodGuard | IcmpSteered | FibOk | FibFallbackMac | TooBigNoDf | FwdL2Dsr
            | FwdEncap | ConntrackStale => None,
            DecapOk | DecapPass | DecapDropMalformed | DecapRefusedSource | DecapRefusedInner => {
                None
            }
        }
    }
}

const _: () = assert!(Reason::COUNT <= crate::limits::REASON_SLOTS);
// The guard's per-VIP counters are indexed from the first guard reason.
const _: () = assert!(
    Reason::DropVipFlowBudget as usize - Reason::DropMartianSource as usize + 1
        == crate::maps::GUARD_REASONS
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_are_dense_and_names_unique() {
        for (i, r) in Reason::ALL.iter().enumerate() {
            assert_eq!(*r as u32, i as u32, "{r:?} out of order");
            assert_eq!(Reason::from_index(i as u32), Some(*r));
            for other in &Reason::ALL[..i] {
                assert_ne!(r.name(), other.name());
            }
            assert!(!r.describe().is_empty());
        }
        assert_eq!(Reason::from_index(Reason::COUNT), None);
    }

    #[test]
    fn verdict_names_follow_the_reason_names() {
        // A verdict reason's name says what happened (pass_/drop_/fwd_/icmp_),
        // so a new reason placed in the wrong arm shows here.
        for r in Reason::ALL {
            let want = match r.verdict() {
                Some(Verdict::Pass) => "pass_",
                Some(Verdict::Drop) => "drop_",
                Some(Verdict::Forward) => "fwd_",
                Some(Verdict::Answer) => "icmp_",
                None => continue,
            };
            assert!(r.name().starts_with(want), "{r:?} as {:?}", r.verdict());
        }
    }
}
