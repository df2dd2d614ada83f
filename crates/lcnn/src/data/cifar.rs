//! CIFAR-10 binary batch format: records of 1 label byte followed by a 32x32 image stored as
//! three 1024-byte planes (red, green, blue), rows top to bottom.
//!
//! This file uses `std` only, so the fuzz target (`fuzz/fuzz_targets/cifar.rs`) compiles it as is.

use std::fmt;

/// Image side in pixels.
pub const SIDE: usize = 32;
/// Pixels per image and channel.
pub const PLANE: usize = SIDE * SIDE;
/// Bytes of one image (3 planes).
pub const IMAGE_BYTES: usize = 3 * PLANE;
/// Bytes of one record (label + image).
pub const RECORD_BYTES: usize = 1 + IMAGE_BYTES;
/// Number of CIFAR-10 classes.
pub const CLASSES: usize = 10;

/// Why a byte buffer is not a valid CIFAR-10 binary batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CifarError {
    /// Zero bytes.
    Empty,
    /// A length that is not a whole number of 3073-byte records.
    Length { len: usize },
    /// A label byte that is not a class index.
    Label { record: usize, label: u8 },
}

impl fmt::Display for CifarError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CifarError::Empty => write!(f, "the file is empty; expected records of {RECORD_BYTES} bytes"),
            CifarError::Length { len } => write!(
                f,
                "length {len} is not a multiple of {RECORD_BYTES} (1 label byte + 32x32x3 pixels): {} whole records and {} extra bytes",
                len / RECORD_BYTES,
                len % RECORD_BYTES
            ),
            CifarError::Label { record, label } => write!(
                f,
                "record {record} has label {label}; expected 0..={}",
                CLASSES - 1
            ),
        }
    }
}

impl std::error::Error for CifarError {}

/// Checks `bytes` and returns its number of records.
pub fn validate(bytes: &[u8]) -> Result<usize, CifarError> {
    if bytes.is_empty() {
        return Err(CifarError::Empty);
    }
    if !bytes.len().is_multiple_of(RECORD_BYTES) {
        return Err(CifarError::Length { len: bytes.len() });
    }
    for (record, rec) in bytes.chunks_exact(RECORD_BYTES).enumerate() {
        if rec[0] as usize >= CLASSES {
            return Err(CifarError::Label {
                record,
                label: rec[0],
            });
        }
    }
    Ok(bytes.len() / RECORD_BYTES)
}

/// Parses a batch and appends its images (HWC, 32x32x3) to `images` and labels to `labels`.
/// Nothing is appended when the batch is invalid.
pub fn parse_into(
    bytes: &[u8],
    images: &mut Vec<u8>,
    labels: &mut Vec<u32>,
) -> Result<usize, CifarError> {
    let n = validate(bytes)?;
    let start = images.len();
    images.resize(start + n * IMAGE_BYTES, 0);
    labels.reserve(n);
    for (rec, out) in bytes
        .chunks_exact(RECORD_BYTES)
        .zip(images[start..].chunks_exact_mut(IMAGE_BYTES))
    {
        labels.push(rec[0] as u32);
        let (r, gb) = rec[1..].split_at(PLANE);
        let (g, b) = gb.split_at(PLANE);
        for (((px, &r), &g), &b) in out.chunks_exact_mut(3).zip(r).zip(g).zip(b) {
            px[0] = r;
            px[1] = g;
            px[2] = b;
        }
    }
    Ok(n)
}

/// Parses a batch into `(images HWC 32x32x3, labels)`.
pub fn parse(bytes: &[u8]) -> Result<(Vec<u8>, Vec<u32>), CifarError> {
    let mut images = Vec::new();
    let mut labels = Vec::new();
    parse_into(bytes, &mut images, &mut labels)?;
    Ok((images, labels))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(label: u8, seed: u8) -> Vec<u8> {
        let mut v = vec![label];
        v.extend((0..IMAGE_BYTES).map(|i| (i as u8).wrapping_mul(seed)));
        v
    }

    #[test]
    fn planes_become_hwc() {
        let rec = record(7, 3);
        let (images, labels) = parse(&rec).unwrap();
        assert_eq!(labels, vec![7]);
        assert_eq!(images.len(), IMAGE_BYTES);
        // pixel (row 1, col 2): plane index 34
        let p = 34;
        assert_eq!(
            &images[3 * p..3 * p + 3],
            &[rec[1 + p], rec[1 + PLANE + p], rec[1 + 2 * PLANE + p]]
        );
    }

    #[test]
    fn rejects_bad_lengths_and_labels() {
        assert_eq!(parse(&[]), Err(CifarError::Empty));
        let mut two = record(1, 1);
        two.extend(record(2, 2));
        assert!(matches!(
            parse(&two[..RECORD_BYTES + 5]),
            Err(CifarError::Length { .. })
        ));
        two[RECORD_BYTES] = 10;
        assert_eq!(
            parse(&two),
            Err(CifarError::Label {
                record: 1,
                label: 10
            })
        );
    }
}
