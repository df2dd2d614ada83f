//! Image folders as Keras' `flow_from_directory`: `DIR/train/<class>/...` and, when present,
//! `DIR/test/<class>/...`. Classes are the sorted subfolder names; files are found recursively
//! in the order Keras uses (folders sorted by path, files sorted by name) and kept when their
//! extension is jpg, jpeg, png or bmp (any case). Images are decoded in parallel, converted to
//! the colour mode, then resized to the target size, as Keras' `load_img` does.

use std::path::{Path, PathBuf};

use image::{DynamicImage, ImageFormat};
use rayon::prelude::*;

use super::dataset::{Dataset, Splits, ValidationRule};
use super::error::DataError;
use super::imageops::{self, ColorMode, Interpolation};

/// File extensions (lowercase) that are read; other files are skipped.
pub const EXTENSIONS: [&str; 4] = ["jpg", "jpeg", "png", "bmp"];

/// How images of a folder are brought to one shape.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FolderOptions {
    /// `(height, width)`; `None` keeps the images' own size, which must then be the same for all.
    pub target_size: Option<(usize, usize)>,
    pub interpolation: Interpolation,
    pub color_mode: ColorMode,
}

/// Loads `root/train` and, when it exists, `root/test`.
pub fn load(root: &Path, opts: &FolderOptions) -> Result<Splits, DataError> {
    if !root.is_dir() {
        return Err(DataError::NotFound {
            path: root.to_path_buf(),
            what: "a folder holding train/<class>/ (and optionally test/<class>/) image folders"
                .into(),
        });
    }
    let train_dir = root.join("train");
    if !train_dir.is_dir() {
        return Err(DataError::NotFound {
            path: train_dir,
            what: "one subfolder per class with the training images (train/<class>/*.jpg)".into(),
        });
    }
    let (classes, files) = scan(&train_dir)?;
    let train = decode_all(&files, classes.clone(), opts, None)?;
    let test_dir = root.join("test");
    let test = if test_dir.is_dir() {
        let (test_classes, test_files) = scan(&test_dir)?;
        if test_classes != classes {
            return Err(DataError::ClassMismatch {
                path: test_dir,
                expected: classes,
                found: test_classes,
            });
        }
        Some(decode_all(
            &test_files,
            classes,
            opts,
            Some((train.height, train.width)),
        )?)
    } else {
        None
    };
    Ok(Splits {
        name: format!("images:{}", root.display()),
        train,
        test,
        validation_rule: ValidationRule::FirstOfEachClass,
        val: None,
    })
}

/// Class names, and every image file with its class index.
pub type Scan = (Vec<String>, Vec<(PathBuf, u32)>);

/// The sorted class folders of `split_dir` and every image file with its class index.
/// Hidden folders (name starting with `.`) are not classes.
pub fn scan(split_dir: &Path) -> Result<Scan, DataError> {
    scan_files(split_dir, has_image_extension, ".jpg, .jpeg, .png or .bmp")
}

/// [`scan`] for the files whose name `accept` takes (`expected` names them in errors).
pub fn scan_files(
    split_dir: &Path,
    accept: fn(&str) -> bool,
    expected: &'static str,
) -> Result<Scan, DataError> {
    let mut classes: Vec<(String, PathBuf)> = Vec::new();
    for entry in std::fs::read_dir(split_dir).map_err(|e| DataError::io(split_dir, e))? {
        let entry = entry.map_err(|e| DataError::io(split_dir, e))?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with('.') && path.is_dir() {
            classes.push((name, path));
        }
    }
    if classes.is_empty() {
        return Err(DataError::NoClasses {
            path: split_dir.to_path_buf(),
        });
    }
    classes.sort();
    let mut files = Vec::new();
    for (label, (_, dir)) in classes.iter().enumerate() {
        let mut found = Vec::new();
        walk(dir, accept, &mut found)?;
        if found.is_empty() {
            return Err(DataError::EmptyClass {
                path: dir.clone(),
                expected,
            });
        }
        // Keras: folders sorted by path, then files sorted by name within each folder.
        found.sort();
        files.extend(
            found
                .into_iter()
                .map(|(root, name)| (PathBuf::from(root).join(name), label as u32)),
        );
    }
    Ok((classes.into_iter().map(|(n, _)| n).collect(), files))
}

/// Collects `(folder, file name)` of the files under `dir` that `accept` takes, recursively.
/// Folder links are not followed (Keras' `follow_links=False`); file links are.
pub fn walk(
    dir: &Path,
    accept: fn(&str) -> bool,
    out: &mut Vec<(String, String)>,
) -> Result<(), DataError> {
    let root = dir.to_string_lossy().into_owned();
    for entry in std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))? {
        let entry = entry.map_err(|e| DataError::io(dir, e))?;
        let kind = entry
            .file_type()
            .map_err(|e| DataError::io(entry.path(), e))?;
        let path = entry.path();
        if kind.is_dir() {
            walk(&path, accept, out)?;
        } else if kind.is_file() || (kind.is_symlink() && path.is_file()) {
            let name = entry.file_name().to_string_lossy().into_owned();
            if accept(&name) {
                out.push((root.clone(), name));
            }
        }
    }
    Ok(())
}

/// True for names ending in `.jpg`, `.jpeg`, `.png` or `.bmp` (any case).
pub fn has_image_extension(name: &str) -> bool {
    name.rsplit_once('.')
        .is_some_and(|(_, ext)| EXTENSIONS.iter().any(|e| ext.eq_ignore_ascii_case(e)))
}

/// Decodes `files` into one dataset. The shape is the target size, else `expected` (the
/// training images' size, for the test split), else the first image's size.
fn decode_all(
    files: &[(PathBuf, u32)],
    classes: Vec<String>,
    opts: &FolderOptions,
    expected: Option<(usize, usize)>,
) -> Result<Dataset, DataError> {
    let channels = opts.color_mode.channels();
    let (h, w) = match opts.target_size.or(expected) {
        Some(size) => size,
        None => {
            let Some((first, _)) = files.first() else {
                return Err(DataError::invalid(
                    "image list",
                    "empty",
                    "at least one image",
                ));
            };
            let (_, h, w) = decode_file(first, opts.color_mode)?;
            (h, w)
        }
    };
    let size = h
        .checked_mul(w)
        .and_then(|p| p.checked_mul(channels))
        .filter(|&s| s > 0)
        .ok_or_else(|| DataError::invalid("target size", format!("{h}x{w}"), "a positive size"))?;
    let total = size.checked_mul(files.len()).ok_or_else(|| {
        DataError::invalid("dataset size", files.len(), "a size that fits in memory")
    })?;
    let mut images = vec![0u8; total];
    let first_error = images
        .par_chunks_mut(size)
        .zip(files.par_iter())
        .enumerate()
        .filter_map(|(i, (out, (path, _)))| {
            decode_into(path, opts, (h, w), out).err().map(|e| (i, e))
        })
        .min_by_key(|(i, _)| *i);
    if let Some((_, e)) = first_error {
        return Err(e);
    }
    Ok(Dataset {
        images,
        labels: files.iter().map(|(_, l)| *l).collect(),
        height: h,
        width: w,
        channels,
        classes,
    })
}

fn decode_into(
    path: &Path,
    opts: &FolderOptions,
    (h, w): (usize, usize),
    out: &mut [u8],
) -> Result<(), DataError> {
    let (pixels, ih, iw) = decode_file(path, opts.color_mode)?;
    if (ih, iw) == (h, w) {
        out.copy_from_slice(&pixels);
    } else if opts.target_size.is_some() {
        let c = opts.color_mode.channels();
        imageops::resize_into(&pixels, (ih, iw, c), (h, w), opts.interpolation, out);
    } else {
        return Err(DataError::ImageSize {
            path: path.to_path_buf(),
            expected_h: h,
            expected_w: w,
            found_h: ih,
            found_w: iw,
        });
    }
    Ok(())
}

/// Reads and decodes one image file into `(HWC pixels in the colour mode, height, width)`.
pub fn decode_file(path: &Path, color: ColorMode) -> Result<(Vec<u8>, usize, usize), DataError> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    decode_bytes(&bytes, color).map_err(|reason| DataError::Image {
        path: path.to_path_buf(),
        reason,
    })
}

/// Decodes a JPEG, PNG or BMP image held in memory (format from the content, not the name).
pub fn decode_bytes(bytes: &[u8], color: ColorMode) -> Result<(Vec<u8>, usize, usize), String> {
    if bytes.is_empty() {
        return Err("the file is empty".into());
    }
    let format = image::guess_format(bytes)
        .map_err(|_| "the content is not a JPEG, PNG or BMP image".to_string())?;
    if !matches!(
        format,
        ImageFormat::Jpeg | ImageFormat::Png | ImageFormat::Bmp
    ) {
        return Err(format!("{format:?} images are not supported"));
    }
    if format == ImageFormat::Jpeg && !jpeg_is_complete(bytes) {
        return Err(
            "the JPEG data is truncated or corrupt (no end-of-image marker after the image data)"
                .into(),
        );
    }
    let img = image::load_from_memory_with_format(bytes, format).map_err(|e| e.to_string())?;
    let (w, h) = (img.width() as usize, img.height() as usize);
    let pixels = match (color, img) {
        (ColorMode::Rgb, DynamicImage::ImageRgb8(b)) => b.into_raw(),
        (ColorMode::Rgb, DynamicImage::ImageLuma8(b)) => {
            let mut out = vec![0; 3 * b.len()];
            imageops::gray_to_rgb(b.as_raw(), &mut out);
            out
        }
        (ColorMode::Rgb, other) => other.to_rgb8().into_raw(),
        (ColorMode::Grayscale, DynamicImage::ImageLuma8(b)) => b.into_raw(),
        (ColorMode::Grayscale, DynamicImage::ImageLumaA8(b)) => {
            b.as_raw().chunks_exact(2).map(|p| p[0]).collect()
        }
        (ColorMode::Grayscale, other) => {
            let rgb = other.to_rgb8();
            let mut out = vec![0; w * h];
            imageops::rgb_to_gray(rgb.as_raw(), &mut out);
            out
        }
    };
    Ok((pixels, h, w))
}

/// True when the JPEG has an end-of-image marker (`FF D9`) after the start of its first scan.
/// Pillow refuses truncated JPEGs; the decoder used here would silently fill the missing part
/// with grey. Marker segments before the scan are skipped by their length, so an EOI inside an
/// embedded EXIF thumbnail does not count; inside the entropy-coded data `FF` is always
/// stuffed, so any `FF D9` after the scan header is the image's own end.
fn jpeg_is_complete(b: &[u8]) -> bool {
    let mut i = 2; // after SOI
    while i + 4 <= b.len() {
        if b[i] != 0xFF {
            return false;
        }
        let marker = b[i + 1];
        match marker {
            0xFF => i += 1,               // fill byte
            0x01 | 0xD0..=0xD8 => i += 2, // markers without a length
            0xD9 => return false,         // EOI before any scan
            _ => {
                let len = u16::from_be_bytes([b[i + 2], b[i + 3]]) as usize;
                if marker == 0xDA {
                    return b
                        .get(i + 2 + len..)
                        .is_some_and(|rest| rest.windows(2).any(|w| w == [0xFF, 0xD9]));
                }
                i += 2 + len;
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extensions_are_case_insensitive() {
        assert!(has_image_extension("a.JPG"));
        assert!(has_image_extension("b.jpeg"));
        assert!(has_image_extension("c.Png"));
        assert!(has_image_extension("d.bmp"));
        assert!(!has_image_extension("e.gif"));
        assert!(!has_image_extension("png"));
        assert!(!has_image_extension("notes.txt"));
    }

    #[test]
    fn text_and_empty_files_are_not_images() {
        assert!(decode_bytes(b"", ColorMode::Rgb)
            .unwrap_err()
            .contains("empty"));
        assert!(decode_bytes(b"hello, I am text", ColorMode::Rgb)
            .unwrap_err()
            .contains("not a JPEG"));
    }

    #[test]
    fn png_roundtrip_in_both_colour_modes() {
        let mut png = Vec::new();
        let img =
            image::RgbImage::from_fn(3, 2, |x, y| image::Rgb([x as u8 * 80, y as u8 * 100, 7]));
        img.write_to(&mut std::io::Cursor::new(&mut png), ImageFormat::Png)
            .unwrap();
        let (rgb, h, w) = decode_bytes(&png, ColorMode::Rgb).unwrap();
        assert_eq!((h, w), (2, 3));
        assert_eq!(&rgb[3 * 4..3 * 4 + 3], &[80, 100, 7]);
        let (gray, _, _) = decode_bytes(&png, ColorMode::Grayscale).unwrap();
        assert_eq!(gray[4], imageops::luma(80, 100, 7));
        let cut = &png[..png.len() - 20];
        assert!(decode_bytes(cut, ColorMode::Rgb).is_err());
    }

    #[test]
    fn truncated_jpegs_are_refused() {
        let mut jpg = Vec::new();
        let img =
            image::RgbImage::from_fn(16, 16, |x, y| image::Rgb([x as u8 * 16, y as u8 * 16, 99]));
        img.write_to(&mut std::io::Cursor::new(&mut jpg), ImageFormat::Jpeg)
            .unwrap();
        assert!(jpeg_is_complete(&jpg));
        assert!(decode_bytes(&jpg, ColorMode::Rgb).is_ok());
        let mut padded = jpg.clone();
        padded.extend_from_slice(&[0; 10]);
        assert!(
            decode_bytes(&padded, ColorMode::Rgb).is_ok(),
            "padding after EOI is fine"
        );
        for cut in [2, 10, jpg.len() / 2] {
            let e = decode_bytes(&jpg[..jpg.len() - cut], ColorMode::Rgb).unwrap_err();
            assert!(e.contains("truncated"), "{cut}: {e}");
        }
        assert!(decode_bytes(&jpg[..3], ColorMode::Rgb).is_err());
    }
}
