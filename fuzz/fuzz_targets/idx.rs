//! Fuzzes the IDX parser (MNIST files): any bytes, any rank. It must never panic, and what it
//! accepts must be consistent: `rank` non-zero dimensions whose product is the data length.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../crates/lcnn/src/data/idx.rs"]
#[allow(dead_code)]
mod idx;

fuzz_target!(|data: &[u8]| {
    // The first byte picks the expected rank (0..=4); the rest is the file.
    let Some((&r, file)) = data.split_first() else {
        return;
    };
    let rank = r % 5;
    if let Ok(parsed) = idx::parse(file, rank) {
        assert_eq!(parsed.dims.len(), rank as usize);
        assert!(parsed.dims.iter().all(|&d| d > 0));
        let n = parsed.dims.iter().product::<usize>();
        assert_eq!(parsed.data.len(), n);
        assert_eq!(file.len(), 4 + 4 * rank as usize + n);
    }
    // Error messages must format without panicking.
    if let Err(e) = idx::parse(file, 3) {
        let _ = e.to_string();
    }
});
