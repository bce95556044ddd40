//! The flow hash. The data path and userspace (`lbctl explain`, tests, the
//! ring builder's slot check) run this same function, so they agree on which
//! ring slot a flow takes.
//!
//! MurmurHash3 (x86, 32-bit): over whole 32-bit words for flows (a handful
//! of multiplies and rotates per word, no table, no loop the verifier has to
//! bound beyond a constant trip count), and over bytes for the Maglev
//! permutations userspace derives from backend keys.

use crate::maps::{FlowKey, HASH_SRC_IP, HASH_SRC_IP_DST_PORT};

const C1: u32 = 0xcc9e_2d51;
const C2: u32 = 0x1b87_3593;

#[inline(always)]
fn mix(h: u32, k: u32) -> u32 {
    let k = k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
    (h ^ k)
        .rotate_left(13)
        .wrapping_mul(5)
        .wrapping_add(0xe654_6b64)
}

#[inline(always)]
fn finish(mut h: u32, len_bytes: u32) -> u32 {
    h ^= len_bytes;
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

/// MurmurHash3_x86_32 of `words` (each word taken in native byte order).
#[inline(always)]
pub fn murmur3_words<const N: usize>(words: &[u32; N], seed: u32) -> u32 {
    let mut h = seed;
    let mut i = 0;
    while i < N {
        h = mix(h, words[i]);
        i += 1;
    }
    finish(h, (N * 4) as u32)
}

/// MurmurHash3_x86_32 of a byte string (little-endian words, the tail
/// mixed in as Appleby's reference does).
pub fn murmur3_bytes(data: &[u8], seed: u32) -> u32 {
    let mut h = seed;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        h = mix(h, u32::from_le_bytes([c[0], c[1], c[2], c[3]]));
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        let mut k = 0u32;
        for (i, b) in tail.iter().enumerate() {
            k |= (*b as u32) << (8 * i);
        }
        h ^= k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
    }
    finish(h, data.len() as u32)
}

/// Hash of a flow under a VIP's hash mode (`HASH_*`). Fields the mode leaves
/// out are zero, so e.g. every connection of one client hashes alike under
/// `HASH_SRC_IP`.
#[inline(always)]
pub fn flow_hash(key: &FlowKey, mode: u32, seed: u32) -> u32 {
    let ports = ((key.sport as u32) << 16) | key.dport as u32;
    let (dst, ports, proto) = match mode {
        HASH_SRC_IP => ([0; 4], 0, 0),
        // `dport` is the low half in native order on either endianness.
        HASH_SRC_IP_DST_PORT => ([0; 4], key.dport as u32, 0),
        _ => (key.dst, ports, key.proto as u32),
    };
    murmur3_words(
        &[
            key.src[0], key.src[1], key.src[2], key.src[3], dst[0], dst[1], dst[2], dst[3], ports,
            proto,
        ],
        seed,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::maps::{HASH_FIVE_TUPLE, PROTO_TCP};

    #[test]
    fn matches_reference_murmur3() {
        // Reference values of MurmurHash3_x86_32 (Appleby's smhasher) for
        // little-endian byte strings.
        assert_eq!(murmur3_words::<0>(&[], 0), 0);
        assert_eq!(murmur3_words::<0>(&[], 1), 0x514e_28b7);
        assert_eq!(
            murmur3_words(&[u32::from_le_bytes(*b"test")], 0),
            0xba6b_d213
        );
        assert_eq!(
            murmur3_words(&[0x6c6c_6548, 0x6f77_206f, 0x21646c72], 0),
            // "Hello world!" is 12 bytes = 3 words.
            murmur3_bytes(b"Hello world!", 0)
        );
    }

    #[test]
    fn murmur3_bytes_reference_values() {
        assert_eq!(murmur3_bytes(b"", 0), 0);
        assert_eq!(murmur3_bytes(b"", 1), 0x514e_28b7);
        assert_eq!(murmur3_bytes(b"test", 0), 0xba6b_d213);
        assert_eq!(murmur3_bytes(b"Hello, world!", 1234), 0xfaf6_cdb3);
        assert_eq!(
            murmur3_bytes(b"The quick brown fox jumps over the lazy dog", 0x9747b28c),
            0x2fa8_26cd
        );
    }

    fn key(sport: u16) -> FlowKey {
        FlowKey {
            src: [u32::from_ne_bytes([10, 0, 0, 1]), 0, 0, 0],
            dst: [u32::from_ne_bytes([192, 0, 2, 1]), 0, 0, 0],
            sport: sport.to_be(),
            dport: 80u16.to_be(),
            proto: PROTO_TCP,
            family: 4,
            _pad: [0; 2],
        }
    }

    #[test]
    fn modes_select_fields() {
        let (a, b) = (key(1000), key(2000));
        assert_ne!(
            flow_hash(&a, HASH_FIVE_TUPLE, 7),
            flow_hash(&b, HASH_FIVE_TUPLE, 7)
        );
        assert_eq!(flow_hash(&a, HASH_SRC_IP, 7), flow_hash(&b, HASH_SRC_IP, 7));
        assert_eq!(
            flow_hash(&a, HASH_SRC_IP_DST_PORT, 7),
            flow_hash(&b, HASH_SRC_IP_DST_PORT, 7)
        );
        let mut c = a;
        c.dport = 443u16.to_be();
        assert_ne!(
            flow_hash(&a, HASH_SRC_IP_DST_PORT, 7),
            flow_hash(&c, HASH_SRC_IP_DST_PORT, 7)
        );
        assert_ne!(
            flow_hash(&a, HASH_FIVE_TUPLE, 7),
            flow_hash(&a, HASH_FIVE_TUPLE, 8)
        );
    }
}
