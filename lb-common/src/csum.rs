//! Internet checksum (RFC 1071) helpers. Words are big-endian (network
//! order); results are to be stored with `to_be_bytes`.

/// Folds a 64-bit running sum to 16 bits with end-around carry (not inverted).
#[inline(always)]
pub fn fold(mut sum: u64) -> u16 {
    // Four rounds always suffice for a 64-bit sum; a fixed count keeps the
    // BPF verifier happy.
    sum = (sum & 0xffff_ffff) + (sum >> 32);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum as u16
}

/// Sum of big-endian 16-bit words of a fixed-size buffer (even length).
#[inline(always)]
pub fn sum_words<const N: usize>(bytes: &[u8; N], initial: u64) -> u64 {
    let mut sum = initial;
    let mut i = 0;
    while i + 1 < N {
        sum += u16::from_be_bytes([bytes[i], bytes[i + 1]]) as u64;
        i += 2;
    }
    if N % 2 == 1 {
        sum += (bytes[N - 1] as u64) << 8;
    }
    sum
}

/// Checksum of a whole buffer of any length (userspace and tests).
pub fn checksum(bytes: &[u8]) -> u16 {
    let mut sum = 0u64;
    let mut chunks = bytes.chunks_exact(2);
    for c in &mut chunks {
        sum += u16::from_be_bytes([c[0], c[1]]) as u64;
    }
    if let [last] = chunks.remainder() {
        sum += (*last as u64) << 8;
    }
    !fold(sum)
}

/// Checksum of a 20-byte IPv4 header whose checksum field is zero.
#[inline(always)]
pub fn ipv4_header_checksum(header: &[u8; 20]) -> u16 {
    !fold(sum_words(header, 0))
}

/// RFC 1624 incremental update: the checksum after a 16-bit word of the
/// covered data changed from `old` to `new`.
#[inline(always)]
pub fn replace_u16(check: u16, old: u16, new: u16) -> u16 {
    !fold(!check as u64 + !old as u64 + new as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3 example: words 0001 f203 f4f5 f6f7 sum to ddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum_words(&data, 0)), 0xddf2);
        assert_eq!(checksum(&data), !0xddf2);
    }

    #[test]
    fn golden_ipv4_header() {
        // A well-known header (Wikipedia's IPv4 checksum example):
        // 4500 0073 0000 4000 4011 [b861] c0a8 0001 c0a8 00c7
        let mut h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(ipv4_header_checksum(&h), 0xb861);
        h[10..12].copy_from_slice(&0xb861u16.to_be_bytes());
        assert_eq!(checksum(&h), 0, "a correct header sums to zero");
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(checksum(&[0x12]), checksum(&[0x12, 0x00]));
    }

    #[test]
    fn incremental_matches_full_recompute() {
        // ICMP echo request type 8 -> echo reply type 0.
        let mut msg = [0x08, 0x00, 0x00, 0x00, 0x12, 0x34, 0x00, 0x01, 0xde, 0xad];
        let c = checksum(&msg);
        msg[2..4].copy_from_slice(&c.to_be_bytes());
        let updated = replace_u16(c, 0x0800, 0x0000);
        msg[0] = 0;
        msg[2..4].copy_from_slice(&[0, 0]);
        assert_eq!(updated, checksum(&msg));
    }
}
