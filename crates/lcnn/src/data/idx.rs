//! IDX file format (MNIST): a 4-byte magic `00 00 <type> <rank>`, `rank` big-endian u32
//! dimensions, then the data. Only unsigned bytes (type 0x08) are supported.
//!
//! This file uses `std` only, so the fuzz target (`fuzz/fuzz_targets/idx.rs`) compiles it as is.

use std::fmt;

/// The IDX type code of unsigned bytes.
pub const UBYTE: u8 = 0x08;

/// A parsed IDX array that borrows its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idx<'a> {
    /// The dimensions from the header (e.g. `[60000, 28, 28]`), all non-zero.
    pub dims: Vec<usize>,
    /// The `dims.product()` data bytes.
    pub data: &'a [u8],
}

/// Why a byte buffer is not a valid unsigned-byte IDX array of the expected rank.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdxError {
    /// Zero bytes.
    Empty,
    /// Fewer bytes than the magic and dimensions need.
    HeaderTooShort { len: usize, expected: usize },
    /// The magic number is not `00 00 08 <rank>`.
    BadMagic { found: [u8; 4], rank: u8 },
    /// A dimension of zero: the file holds no data.
    ZeroDimension { dims: Vec<usize> },
    /// Dimensions whose product overflows.
    Overflow { dims: Vec<usize> },
    /// The data length differs from the product of the dimensions.
    DataLength {
        dims: Vec<usize>,
        expected: usize,
        found: usize,
    },
}

impl fmt::Display for IdxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdxError::Empty => write!(f, "the file is empty; expected an IDX header"),
            IdxError::HeaderTooShort { len, expected } => write!(
                f,
                "only {len} bytes; expected a header of {expected} bytes followed by data"
            ),
            IdxError::BadMagic { found, rank } => write!(
                f,
                "magic number {:02x} {:02x} {:02x} {:02x}; expected 00 00 08 {rank:02x} (unsigned bytes, {rank} dimensions)",
                found[0], found[1], found[2], found[3]
            ),
            IdxError::ZeroDimension { dims } => {
                write!(f, "dimensions {dims:?} contain a zero; expected non-empty data")
            }
            IdxError::Overflow { dims } => {
                write!(f, "dimensions {dims:?} are too large; expected a realistic size")
            }
            IdxError::DataLength {
                dims,
                expected,
                found,
            } => {
                if *found < *expected {
                    write!(
                        f,
                        "header {dims:?} announces {expected} data bytes but only {found} follow (truncated)"
                    )
                } else {
                    write!(
                        f,
                        "header {dims:?} announces {expected} data bytes but {found} follow (trailing bytes)"
                    )
                }
            }
        }
    }
}

impl std::error::Error for IdxError {}

/// Data larger than this is refused before anything is allocated (16 GiB).
pub const MAX_DATA_BYTES: usize = 1 << 34;

/// Parses an unsigned-byte IDX array of `rank` dimensions from `bytes`.
///
/// Never panics and never allocates more than the dimension list: sizes come from checked
/// arithmetic and are compared with the actual data length.
pub fn parse(bytes: &[u8], rank: u8) -> Result<Idx<'_>, IdxError> {
    if bytes.is_empty() {
        return Err(IdxError::Empty);
    }
    let header_len = 4 + 4 * rank as usize;
    if bytes.len() < 4 {
        return Err(IdxError::HeaderTooShort {
            len: bytes.len(),
            expected: header_len,
        });
    }
    let magic = [bytes[0], bytes[1], bytes[2], bytes[3]];
    if magic != [0, 0, UBYTE, rank] {
        return Err(IdxError::BadMagic { found: magic, rank });
    }
    if bytes.len() < header_len {
        return Err(IdxError::HeaderTooShort {
            len: bytes.len(),
            expected: header_len,
        });
    }
    let dims: Vec<usize> = bytes[4..header_len]
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect();
    if dims.contains(&0) {
        return Err(IdxError::ZeroDimension { dims });
    }
    let expected = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .filter(|&n| n <= MAX_DATA_BYTES);
    let Some(expected) = expected else {
        return Err(IdxError::Overflow { dims });
    };
    let data = &bytes[header_len..];
    if data.len() != expected {
        return Err(IdxError::DataLength {
            dims,
            expected,
            found: data.len(),
        });
    }
    Ok(Idx { dims, data })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(rank: u8, dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut v = vec![0, 0, UBYTE, rank];
        for d in dims {
            v.extend_from_slice(&d.to_be_bytes());
        }
        v.extend_from_slice(data);
        v
    }

    #[test]
    fn parses_a_valid_rank_3_file() {
        let bytes = file(3, &[2, 2, 3], &[1; 12]);
        let idx = parse(&bytes, 3).unwrap();
        assert_eq!(idx.dims, vec![2, 2, 3]);
        assert_eq!(idx.data.len(), 12);
    }

    #[test]
    fn rejects_empty_short_and_bad_magic() {
        assert_eq!(parse(&[], 1), Err(IdxError::Empty));
        assert!(matches!(
            parse(&[0, 0], 1),
            Err(IdxError::HeaderTooShort { .. })
        ));
        let labels = file(1, &[3], &[1, 2, 3]);
        assert!(matches!(
            parse(&labels, 3),
            Err(IdxError::BadMagic { rank: 3, .. })
        ));
        let mut wrong_type = labels.clone();
        wrong_type[2] = 0x0d;
        assert!(matches!(
            parse(&wrong_type, 1),
            Err(IdxError::BadMagic { .. })
        ));
        assert!(matches!(
            parse(&labels[..6], 1),
            Err(IdxError::HeaderTooShort { .. })
        ));
    }

    #[test]
    fn rejects_header_without_data_truncation_and_trailing_bytes() {
        let header_only = file(1, &[10], &[]);
        let e = parse(&header_only, 1).unwrap_err();
        assert!(e.to_string().contains("truncated"), "{e}");
        let trailing = file(1, &[2], &[1, 2, 3]);
        let e = parse(&trailing, 1).unwrap_err();
        assert!(e.to_string().contains("trailing"), "{e}");
    }

    #[test]
    fn huge_or_zero_dimensions_do_not_allocate() {
        let huge = file(3, &[u32::MAX, u32::MAX, u32::MAX], &[0; 16]);
        assert!(matches!(parse(&huge, 3), Err(IdxError::Overflow { .. })));
        let zero = file(3, &[0, 28, 28], &[]);
        assert!(matches!(
            parse(&zero, 3),
            Err(IdxError::ZeroDimension { .. })
        ));
    }
}
