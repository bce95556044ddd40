//! IP prefixes (`10.20.0.0/16`, `fd00::/8`, or a bare address for one
//! host), as allow lists and the decap program's source list take them.

use std::{fmt, net::IpAddr, str::FromStr};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Prefix {
    addr: IpAddr,
    len: u8,
}

impl Prefix {
    /// The network address (host bits zero).
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    pub fn len(&self) -> u8 {
        self.len
    }

    /// Whether the prefix matches every address of its family (`/0`).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn contains(&self, a: IpAddr) -> bool {
        match (self.addr, a) {
            (IpAddr::V4(n), IpAddr::V4(a)) => mask32(u32::from(a), self.len) == u32::from(n),
            (IpAddr::V6(n), IpAddr::V6(a)) => mask128(u128::from(a), self.len) == u128::from(n),
            _ => false,
        }
    }
}

fn mask32(v: u32, len: u8) -> u32 {
    v.checked_shr(32 - u32::from(len))
        .map_or(0, |x| x << (32 - u32::from(len)))
}

fn mask128(v: u128, len: u8) -> u128 {
    v.checked_shr(128 - u32::from(len))
        .map_or(0, |x| x << (128 - u32::from(len)))
}

impl FromStr for Prefix {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (a, len) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let addr: IpAddr = a
            .trim()
            .parse()
            .map_err(|_| format!("{s:?} is not an address or prefix (10.0.0.0/8, fd00::/8)"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = match len {
            None => max,
            Some(l) => l
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|l| *l <= max)
                .ok_or_else(|| format!("{s:?}: the prefix length must be 0..={max}"))?,
        };
        let network = match addr {
            IpAddr::V4(v) => IpAddr::from(mask32(u32::from(v), len).to_be_bytes()),
            IpAddr::V6(v) => IpAddr::from(mask128(u128::from(v), len).to_be_bytes()),
        };
        if network != addr {
            return Err(format!(
                "{s:?} has host bits set (did you mean {network}/{len}?)"
            ));
        }
        Ok(Self { addr, len })
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl serde::Serialize for Prefix {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Prefix {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_prefixes_and_bare_addresses() {
        let p: Prefix = "10.20.0.0/16".parse().unwrap();
        assert!(p.contains("10.20.3.4".parse().unwrap()));
        assert!(!p.contains("10.21.0.1".parse().unwrap()));
        assert!(!p.contains("fd00::1".parse().unwrap()));
        let host: Prefix = "fd00::5".parse().unwrap();
        assert_eq!(host.to_string(), "fd00::5/128");
        let all: Prefix = "0.0.0.0/0".parse().unwrap();
        assert!(all.is_empty() && all.contains("192.0.2.1".parse().unwrap()));
        assert!(
            "::/0"
                .parse::<Prefix>()
                .unwrap()
                .contains("2001:db8::1".parse().unwrap())
        );
    }

    #[test]
    fn refuses_what_is_not_a_prefix() {
        for bad in [
            "10.20.0.1/16",
            "10.0.0.0/33",
            "fd00::/129",
            "x/8",
            "",
            "10.0.0.0/",
            "/8",
        ] {
            assert!(bad.parse::<Prefix>().is_err(), "{bad}");
        }
        let e = "10.20.0.1/16".parse::<Prefix>().unwrap_err();
        assert!(e.contains("10.20.0.0/16"), "{e}");
    }
}
