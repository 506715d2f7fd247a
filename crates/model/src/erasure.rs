//! The erasure code object storage writes large blocks with: `k` data shards and `m`
//! parity shards (Reed–Solomon), written `K+M` ("4+2", "6+3"). Any `k` of the `k + m`
//! shards rebuild the block; the raw bytes stored per byte of data are `(k + m) / k`
//! (1.5 for 4+2, against 3 for three replicas).
//!
//! Invariant: a value of this type is always a code the storage layer can use: 2 to 16
//! data shards, 1 to 8 parity shards (parsing and deserializing refuse anything else).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Most data shards a code may have.
pub const MAX_DATA_SHARDS: u8 = 16;
/// Most parity shards a code may have.
pub const MAX_PARITY_SHARDS: u8 = 8;

/// `k` data + `m` parity shards. Serialized as the string `"K+M"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ErasureCode {
    data: u8,
    parity: u8,
}

/// Why a `K+M` text is not a usable code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "erasure code {text:?}: {why} (write it as K+M, e.g. 4+2: 2 to {MAX_DATA_SHARDS} data shards and 1 to {MAX_PARITY_SHARDS} parity shards)"
)]
pub struct BadErasureCode {
    text: String,
    why: &'static str,
}

impl ErasureCode {
    /// The code with `data` data and `parity` parity shards, if it is in range.
    pub fn new(data: u8, parity: u8) -> Result<ErasureCode, BadErasureCode> {
        let bad = |why| BadErasureCode {
            text: format!("{data}+{parity}"),
            why,
        };
        if !(2..=MAX_DATA_SHARDS).contains(&data) {
            return Err(bad("data shards out of range"));
        }
        if !(1..=MAX_PARITY_SHARDS).contains(&parity) {
            return Err(bad("parity shards out of range"));
        }
        Ok(ErasureCode { data, parity })
    }

    /// `k`: the shards a block is cut into, and the number any read needs.
    pub fn data(self) -> usize {
        usize::from(self.data)
    }

    /// `m`: the shards that may be lost without losing the block.
    pub fn parity(self) -> usize {
        usize::from(self.parity)
    }

    /// `k + m`.
    pub fn total(self) -> usize {
        self.data() + self.parity()
    }
}

impl fmt::Display for ErasureCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}+{}", self.data, self.parity)
    }
}

impl FromStr for ErasureCode {
    type Err = BadErasureCode;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why| BadErasureCode {
            text: s.chars().take(32).collect(),
            why,
        };
        let (k, m) = s.trim().split_once('+').ok_or_else(|| bad("no '+'"))?;
        let k: u8 = k
            .trim()
            .parse()
            .map_err(|_| bad("data shards not a number"))?;
        let m: u8 = m
            .trim()
            .parse()
            .map_err(|_| bad("parity shards not a number"))?;
        ErasureCode::new(k, m).map_err(|e| bad(e.why))
    }
}

impl Serialize for ErasureCode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ErasureCode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_k_plus_m() {
        let c: ErasureCode = "4+2".parse().expect("4+2");
        assert_eq!((c.data(), c.parity(), c.total()), (4, 2, 6));
        assert_eq!(c.to_string(), "4+2");
        assert_eq!(
            " 6 + 3 "
                .parse::<ErasureCode>()
                .expect("spaces")
                .to_string(),
            "6+3"
        );
        assert_eq!(serde_json::to_string(&c).expect("json"), "\"4+2\"");
        let back: ErasureCode = serde_json::from_str("\"10+4\"").expect("json");
        assert_eq!(back, ErasureCode::new(10, 4).expect("10+4"));
    }

    #[test]
    fn refuses_codes_out_of_range_with_a_hint() {
        for bad in [
            "", "4", "4+", "+2", "1+1", "4+0", "17+2", "4+9", "a+b", "4+2+1", "-4+2",
        ] {
            let e = bad.parse::<ErasureCode>().expect_err(bad).to_string();
            assert!(e.contains("K+M"), "{bad}: {e}");
        }
        assert!(serde_json::from_str::<ErasureCode>("\"4+0\"").is_err());
    }
}
