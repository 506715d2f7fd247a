//! The deterministic content of `/large.bin`: byte `i` is a cheap pure function of `i`
//! (a SplitMix64 finaliser over the 8-byte word index), so any range can be produced
//! without state and checked by tests without downloading the rest.

/// The 8 bytes starting at offset `8 * index`, little-endian.
fn word(index: u64) -> u64 {
    let mut z = index.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Byte `i` of `/large.bin` (the same for every size; the file is a prefix).
pub fn large_byte(i: u64) -> u8 {
    word(i / 8).to_le_bytes()[(i % 8) as usize]
}

/// Fills `buf` with the bytes of `/large.bin` starting at `offset`.
pub fn fill_large(offset: u64, buf: &mut [u8]) {
    let misalign = (offset % 8) as usize;
    let head = if misalign == 0 {
        0
    } else {
        (8 - misalign).min(buf.len())
    };
    let (head_buf, rest) = buf.split_at_mut(head);
    for (k, b) in head_buf.iter_mut().enumerate() {
        *b = large_byte(offset + k as u64);
    }
    let mut pos = offset + head as u64;
    let mut words = rest.chunks_exact_mut(8);
    for chunk in &mut words {
        chunk.copy_from_slice(&word(pos / 8).to_le_bytes());
        pos += 8;
    }
    for b in words.into_remainder() {
        *b = large_byte(pos);
        pos += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_matches_bytes_at_any_alignment() {
        for offset in 0..20u64 {
            for len in [0usize, 1, 7, 8, 9, 31] {
                let mut buf = vec![0u8; len];
                fill_large(offset, &mut buf);
                let want: Vec<u8> = (offset..offset + len as u64).map(large_byte).collect();
                assert_eq!(buf, want, "offset {offset} len {len}");
            }
        }
    }

    #[test]
    fn content_is_not_trivial() {
        let mut buf = vec![0u8; 4096];
        fill_large(0, &mut buf);
        let distinct: std::collections::HashSet<u8> = buf.iter().copied().collect();
        assert!(distinct.len() > 200);
    }
}
