//! A tiny synthetic image folder for smoke tests and examples: two classes, `left` (bright left
//! half) and `right` (bright right half), grayscale PNGs with noise, in the
//! `flow_from_directory` layout (`train/<class>/`, `test/<class>/`). Deterministic.

use std::path::Path;

use super::DataError;

/// Writes `per_class` training and `per_class / 4` test images per class, `size x size`.
pub fn write_halves_folder(dir: &Path, per_class: usize, size: u32) -> Result<(), DataError> {
    let mut seed = 12345u64;
    let mut noise = move || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((seed >> 33) % 60) as u8
    };
    for (split, n) in [("train", per_class), ("test", per_class / 4)] {
        for (class, bright_left) in [("left", true), ("right", false)] {
            let folder = dir.join(split).join(class);
            std::fs::create_dir_all(&folder).map_err(|e| DataError::io(&folder, e))?;
            for i in 0..n {
                let img = image::GrayImage::from_fn(size, size, |x, _| {
                    let bright = (x < size / 2) == bright_left;
                    image::Luma([if bright { 150 + noise() } else { 20 + noise() }])
                });
                let path = folder.join(format!("{i:03}.png"));
                img.save(&path)
                    .map_err(|e| DataError::io(&path, std::io::Error::other(e.to_string())))?;
            }
        }
    }
    Ok(())
}
