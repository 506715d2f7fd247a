//! Reed–Solomon coding of one block into `k` data and `m` parity shards, and back.
//!
//! The codec is [`CODEC`] (`rs-simd-1`), stored with every coded block so the format can
//! change later without misreading old blocks: `reed-solomon-simd` 3 (Leopard-RS, GF(2^16),
//! O(n log n)), shards of [`shard_len`] bytes: the block cut into `k` equal pieces, the
//! last one padded with zeros, the length rounded up to an even number (the library
//! works on 16-bit symbols). Data shard `i` is bytes `i * len .. (i + 1) * len` of the
//! padded block, so a read that has every data shard concatenates them and decodes
//! nothing; parity shards are needed only when a data shard is missing.
//!
//! Invariant: [`decode`] returns exactly the block [`encode`] was given, from any `k` of
//! its shards, or an error; never other bytes. (The gateway also checks the result
//! against the block's SHA-256 id.)

use bytes::{Bytes, BytesMut};
use lingjing_model::ErasureCode;

/// The codec id stored with each coded block.
pub const CODEC: &str = "rs-simd-1";

/// Why shards could not be made or read back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("unknown codec {0:?} (this build reads {CODEC})")]
    UnknownCodec(String),
    #[error("{have} of the {need} shards a read needs")]
    TooFewShards { have: usize, need: usize },
    #[error("shard {index} is {got} bytes, not {want}")]
    BadShardLength {
        index: usize,
        got: usize,
        want: usize,
    },
    #[error("{0} shards given for a code of {1}")]
    WrongShardCount(usize, usize),
    #[error("reed-solomon: {0}")]
    Library(String),
}

/// The length of each shard of a `len`-byte block under `code`: `len / k` rounded up,
/// then up to an even number, at least 2.
pub fn shard_len(code: ErasureCode, len: usize) -> usize {
    let l = len.div_ceil(code.data()).max(2);
    l + (l & 1)
}

/// The `k + m` shards of `block`, data shards first.
pub fn encode(code: ErasureCode, block: &[u8]) -> Result<Vec<Bytes>, CodecError> {
    let k = code.data();
    let len = shard_len(code, block.len());
    let mut data: Vec<Bytes> = Vec::with_capacity(code.total());
    for i in 0..k {
        let start = (i * len).min(block.len());
        let end = ((i + 1) * len).min(block.len());
        let mut shard = BytesMut::with_capacity(len);
        shard.extend_from_slice(&block[start..end]);
        shard.resize(len, 0);
        data.push(shard.freeze());
    }
    let parity = reed_solomon_simd::encode(k, code.parity(), &data)
        .map_err(|e| CodecError::Library(e.to_string()))?;
    data.extend(parity.into_iter().map(Bytes::from));
    Ok(data)
}

/// The `block_len`-byte block from `shards` (index `0..k` data, `k..k+m` parity; `None`
/// where a shard is missing). Needs any `k` of them; decodes only when a data shard is
/// missing.
pub fn decode(
    code: ErasureCode,
    block_len: usize,
    shards: &[Option<Bytes>],
) -> Result<Bytes, CodecError> {
    let (k, m) = (code.data(), code.parity());
    if shards.len() != k + m {
        return Err(CodecError::WrongShardCount(shards.len(), k + m));
    }
    let len = shard_len(code, block_len);
    for (index, s) in shards.iter().enumerate() {
        if let Some(s) = s
            && s.len() != len
        {
            return Err(CodecError::BadShardLength {
                index,
                got: s.len(),
                want: len,
            });
        }
    }
    let have = shards.iter().filter(|s| s.is_some()).count();
    if have < k {
        return Err(CodecError::TooFewShards { have, need: k });
    }
    let mut data: Vec<Bytes> = Vec::with_capacity(k);
    if shards[..k].iter().all(Option::is_some) {
        data.extend(shards[..k].iter().flatten().cloned());
    } else {
        let originals = shards[..k]
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().map(|s| (i, s)));
        let recovery = shards[k..]
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().map(|s| (i, s)));
        let mut restored = reed_solomon_simd::decode(k, m, originals, recovery)
            .map_err(|e| CodecError::Library(e.to_string()))?;
        for (i, s) in shards[..k].iter().enumerate() {
            match s {
                Some(s) => data.push(s.clone()),
                None => data.push(Bytes::from(restored.remove(&i).ok_or_else(|| {
                    CodecError::Library(format!("data shard {i} was not restored"))
                })?)),
            }
        }
    }
    let mut block = BytesMut::with_capacity(block_len);
    for s in &data {
        let want = (block_len - block.len()).min(s.len());
        block.extend_from_slice(&s[..want]);
    }
    Ok(block.freeze())
}

/// Checks that `codec` is one this build reads.
pub fn check_codec(codec: &str) -> Result<(), CodecError> {
    if codec == CODEC {
        Ok(())
    } else {
        Err(CodecError::UnknownCodec(codec.chars().take(64).collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    fn code(k: u8, m: u8) -> ErasureCode {
        ErasureCode::new(k, m).expect("code")
    }

    fn block(rng: &mut StdRng, len: usize) -> Vec<u8> {
        let mut b = vec![0u8; len];
        rng.fill(&mut b[..]);
        b
    }

    #[test]
    fn shard_lengths_cover_the_block_and_are_even() {
        let c = code(4, 2);
        assert_eq!(shard_len(c, 0), 2);
        assert_eq!(shard_len(c, 1), 2);
        assert_eq!(shard_len(c, 8), 2);
        assert_eq!(shard_len(c, 9), 4);
        assert_eq!(shard_len(c, 1 << 20), 1 << 18);
        for len in 0..200 {
            let l = shard_len(c, len);
            assert!(l * 4 >= len && l.is_multiple_of(2), "{len}: {l}");
        }
    }

    #[test]
    fn data_shards_are_the_block_in_order() {
        let mut rng = StdRng::seed_from_u64(1);
        let b = block(&mut rng, 1001);
        let shards = encode(code(4, 2), &b).expect("encode");
        assert_eq!(shards.len(), 6);
        let joined: Vec<u8> = shards[..4].iter().flat_map(|s| s.iter().copied()).collect();
        assert_eq!(&joined[..1001], &b[..]);
        assert!(joined[1001..].iter().all(|&x| x == 0), "padding is zeros");
    }

    #[test]
    fn any_k_shards_give_back_the_block() {
        let mut rng = StdRng::seed_from_u64(2);
        for (k, m) in [(2, 1), (4, 2), (6, 3), (10, 4)] {
            let c = code(k, m);
            for len in [0, 1, 2, 3, 17, 4095, 65_536, 100_001] {
                let b = block(&mut rng, len);
                let shards = encode(c, &b).expect("encode");
                // Every way of losing exactly m shards (for the small codes), and random
                // losses of up to m for the larger ones.
                let n = c.total();
                let patterns: Vec<Vec<usize>> = if n <= 9 {
                    (0u32..1 << n)
                        .filter(|mask| mask.count_ones() as usize <= c.parity())
                        .map(|mask| (0..n).filter(|i| mask & (1 << i) != 0).collect())
                        .collect()
                } else {
                    (0..20)
                        .map(|_| {
                            let mut lost: Vec<usize> = (0..n).collect();
                            for i in (1..n).rev() {
                                lost.swap(i, rng.random_range(0..=i));
                            }
                            lost.truncate(rng.random_range(0..=c.parity()));
                            lost
                        })
                        .collect()
                };
                for lost in patterns {
                    let mut have: Vec<Option<Bytes>> = shards.iter().cloned().map(Some).collect();
                    for &i in &lost {
                        have[i] = None;
                    }
                    let back = decode(c, len, &have).expect("decode");
                    assert_eq!(&back[..], &b[..], "{c} len {len} lost {lost:?}");
                }
            }
        }
    }

    #[test]
    fn too_few_or_malformed_shards_are_errors() {
        let c = code(4, 2);
        let shards = encode(c, &[7u8; 100]).expect("encode");
        let mut have: Vec<Option<Bytes>> = shards.iter().cloned().map(Some).collect();
        have[0] = None;
        have[2] = None;
        have[5] = None;
        assert_eq!(
            decode(c, 100, &have),
            Err(CodecError::TooFewShards { have: 3, need: 4 })
        );
        let mut short: Vec<Option<Bytes>> = shards.iter().cloned().map(Some).collect();
        short[1] = Some(Bytes::from_static(b"xx"));
        assert!(matches!(
            decode(c, 100, &short),
            Err(CodecError::BadShardLength { index: 1, .. })
        ));
        assert!(matches!(
            decode(c, 100, &have[..5]),
            Err(CodecError::WrongShardCount(5, 6))
        ));
        assert!(check_codec(CODEC).is_ok());
        assert!(matches!(
            check_codec("rs-erasure-1"),
            Err(CodecError::UnknownCodec(_))
        ));
    }
}
