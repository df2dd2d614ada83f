//! Fuzzes the CIFAR-10 binary batch parser: any bytes. It must never panic, and what it
//! accepts must be whole records with labels 0..=9, converted to HWC without losing a byte.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../crates/lcnn/src/data/cifar.rs"]
#[allow(dead_code)]
mod cifar;

fuzz_target!(|data: &[u8]| {
    match cifar::parse(data) {
        Ok((images, labels)) => {
            assert_eq!(data.len(), labels.len() * cifar::RECORD_BYTES);
            assert_eq!(images.len(), labels.len() * cifar::IMAGE_BYTES);
            for (i, (rec, img)) in data
                .chunks_exact(cifar::RECORD_BYTES)
                .zip(images.chunks_exact(cifar::IMAGE_BYTES))
                .enumerate()
            {
                assert_eq!(labels[i], rec[0] as u32);
                assert!(labels[i] < 10);
                // Plane byte p of channel c is HWC byte 3p + c.
                for c in 0..3 {
                    for p in [0, 511, cifar::PLANE - 1] {
                        assert_eq!(img[3 * p + c], rec[1 + c * cifar::PLANE + p]);
                    }
                }
            }
        }
        Err(e) => {
            let _ = e.to_string();
            assert!(cifar::validate(data).is_err());
        }
    }
});
