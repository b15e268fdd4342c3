//! Byte sizes as users write them (`64MiB`, `512KiB`, `1GB`, `1048576`).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A number of bytes. Parses `64MiB`-style strings and plain integers; prints the shortest
/// exact binary unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Size(pub u64);

pub const KIB: u64 = 1024;
pub const MIB: u64 = 1024 * KIB;
pub const GIB: u64 = 1024 * MIB;

impl Size {
    pub const fn mib(n: u64) -> Self {
        Self(n * MIB)
    }

    pub const fn bytes(self) -> u64 {
        self.0
    }

    /// For people: the largest binary unit with one decimal (`17.7GiB`), exact when round.
    pub fn human(self) -> String {
        let n = self.0;
        for (unit, name) in [(GIB, "GiB"), (MIB, "MiB"), (KIB, "KiB")] {
            if n >= unit {
                if n.is_multiple_of(unit) {
                    return format!("{}{name}", n / unit);
                }
                return format!("{:.1}{name}", n as f64 / unit as f64);
            }
        }
        format!("{n}B")
    }

    /// `self` for people next to a limit it passed: exact when rounding would make the two
    /// read the same (a memory grown one page past 1GiB is not "1.0GiB" but "1048640KiB").
    pub fn human_past(self, limit: Size) -> String {
        let human = self.human();
        if self != limit && human.replacen(".0", "", 1) == limit.human() {
            return self.to_string();
        }
        human
    }
}

#[derive(Debug, thiserror::Error)]
#[error("invalid size `{0}`: expected a number of bytes or a size such as 64MiB, 512KiB or 2GiB")]
pub struct SizeError(String);

impl FromStr for Size {
    type Err = SizeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        if t.is_empty() || t.starts_with('-') {
            return Err(SizeError(s.to_string()));
        }
        match t.parse::<bytesize::ByteSize>() {
            // bytesize saturates past 16EiB instead of failing.
            Ok(b) if b.as_u64() < u64::MAX => Ok(Self(b.as_u64())),
            _ => Err(SizeError(s.to_string())),
        }
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        for (unit, name) in [(GIB, "GiB"), (MIB, "MiB"), (KIB, "KiB")] {
            if n >= unit && n.is_multiple_of(unit) {
                return write!(f, "{}{name}", n / unit);
            }
        }
        write!(f, "{n}B")
    }
}

impl Serialize for Size {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(SizeVisitor)
    }
}

/// A size in a config file: `"64MiB"`, or a whole number of bytes.
struct SizeVisitor;

impl serde::de::Visitor<'_> for SizeVisitor {
    type Value = Size;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a size such as \"64MiB\", or a whole number of bytes")
    }

    fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<Size, E> {
        Ok(Size(n))
    }

    fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<Size, E> {
        u64::try_from(n).map(Size).map_err(|_| E::custom(format!("a size cannot be negative: {n}")))
    }

    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Size, E> {
        s.parse().map_err(E::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_sizes_from_toml_and_says_what_is_wrong() {
        #[derive(Debug, Deserialize)]
        struct C {
            #[allow(dead_code)]
            size: Size,
        }
        let read = |v: &str| toml::from_str::<C>(&format!("size = {v}")).map(|c| c.size).map_err(|e| e.to_string());
        assert_eq!(read("\"64MiB\""), Ok(Size::mib(64)));
        assert_eq!(read("1024"), Ok(Size(1024)));
        assert!(read("-5").unwrap_err().contains("a size cannot be negative: -5"));
        assert!(read("1.5").unwrap_err().contains("a size such as \"64MiB\""));
        assert!(read("\"lots\"").is_err());
    }

    #[test]
    fn parses_user_sizes() {
        assert_eq!("64MiB".parse::<Size>().unwrap(), Size::mib(64));
        assert_eq!("64 MiB".parse::<Size>().unwrap(), Size::mib(64));
        assert_eq!("1048576".parse::<Size>().unwrap(), Size::mib(1));
        assert_eq!("2GiB".parse::<Size>().unwrap(), Size(2 * GIB));
        assert!("lots".parse::<Size>().is_err());
        assert!("-1".parse::<Size>().is_err());
        assert!("".parse::<Size>().is_err());
        assert!("17EiB".parse::<Size>().is_err(), "past u64, not saturated");
        assert!("16EiB".parse::<Size>().is_err());
        assert_eq!("15EiB".parse::<Size>().unwrap(), Size(15 << 60));
    }

    #[test]
    fn prints_approximate_units_for_people() {
        assert_eq!(Size(18_956_000_000).human(), "17.7GiB");
        assert_eq!(Size::mib(64).human(), "64MiB");
        assert_eq!(Size(100).human(), "100B");
        // Past a limit: exact where rounding would read as the limit itself.
        assert_eq!(Size((1 << 30) + (64 << 10)).human_past(Size(1 << 30)), "1048640KiB");
        assert_eq!(Size::mib(1536).human_past(Size(1 << 30)), "1.5GiB");
        assert_eq!(Size::mib(1).human_past(Size::mib(1)), "1MiB");
    }

    #[test]
    fn prints_exact_units() {
        assert_eq!(Size::mib(64).to_string(), "64MiB");
        assert_eq!(Size(1536).to_string(), "1536B");
        assert_eq!(Size(3 * KIB).to_string(), "3KiB");
        assert_eq!(Size(0).to_string(), "0B");
    }
}
