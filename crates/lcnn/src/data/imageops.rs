//! Pixel operations that Keras' `load_img` delegates to Pillow, reimplemented to give the same
//! bytes: colour conversion (`convert("L")` / `convert("RGB")`) and resizing with Pillow's
//! nearest and bilinear filters. Images are u8, HWC.
//!
//! Checked byte for byte against Pillow on random images (1 and 3 channels, shrinking and
//! growing). Bilinear runs the horizontal pass first, as Pillow up to 12 always does; Pillow 13
//! runs the vertical pass first when the height shrinks while the width grows, which moves
//! some pixels by one grey level in that case only.

use std::fmt;
use std::str::FromStr;

use super::error::DataError;

/// Resampling filter used to bring images to the target size (Keras `interpolation`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Interpolation {
    /// Keras' default (Pillow `NEAREST`).
    #[default]
    Nearest,
    /// Pillow `BILINEAR` (a triangle filter widened when shrinking, i.e. antialiased).
    Bilinear,
}

impl FromStr for Interpolation {
    type Err = DataError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "nearest" => Ok(Interpolation::Nearest),
            "bilinear" => Ok(Interpolation::Bilinear),
            _ => Err(DataError::invalid(
                "interpolation",
                s,
                "nearest or bilinear",
            )),
        }
    }
}

impl fmt::Display for Interpolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Interpolation::Nearest => "nearest",
            Interpolation::Bilinear => "bilinear",
        })
    }
}

/// Channels images are converted to (Keras `color_mode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ColorMode {
    /// Three channels (Keras' default).
    #[default]
    Rgb,
    /// One channel, Pillow's ITU-R 601-2 luma: `L = (19595 R + 38470 G + 7471 B + 2^15) >> 16`.
    Grayscale,
}

impl ColorMode {
    /// The mode that gives `channels` channels (1: grayscale, else RGB): how images are read
    /// for a model of that input.
    pub fn for_channels(channels: usize) -> Self {
        if channels == 1 {
            ColorMode::Grayscale
        } else {
            ColorMode::Rgb
        }
    }

    pub fn channels(self) -> usize {
        match self {
            ColorMode::Rgb => 3,
            ColorMode::Grayscale => 1,
        }
    }
}

impl FromStr for ColorMode {
    type Err = DataError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "rgb" => Ok(ColorMode::Rgb),
            "grayscale" | "greyscale" | "gray" | "grey" => Ok(ColorMode::Grayscale),
            _ => Err(DataError::invalid("color mode", s, "rgb or grayscale")),
        }
    }
}

impl fmt::Display for ColorMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ColorMode::Rgb => "rgb",
            ColorMode::Grayscale => "grayscale",
        })
    }
}

/// Pillow's RGB to L conversion of one pixel.
#[inline]
pub fn luma(r: u8, g: u8, b: u8) -> u8 {
    ((r as u32 * 19595 + g as u32 * 38470 + b as u32 * 7471 + 0x8000) >> 16) as u8
}

/// Converts interleaved RGB to one channel (`out.len() == rgb.len() / 3`).
pub fn rgb_to_gray(rgb: &[u8], out: &mut [u8]) {
    for (o, p) in out.iter_mut().zip(rgb.chunks_exact(3)) {
        *o = luma(p[0], p[1], p[2]);
    }
}

/// Converts one channel to RGB by repeating it (`out.len() == 3 * gray.len()`).
pub fn gray_to_rgb(gray: &[u8], out: &mut [u8]) {
    for (o, &g) in out.chunks_exact_mut(3).zip(gray) {
        o.fill(g);
    }
}

/// Resizes a HWC u8 image of `(h, w, c)` to `(dh, dw)` into `out` (`dh * dw * c` bytes), giving
/// the same bytes as Pillow's `Image.resize((dw, dh), filter)`.
pub fn resize_into(
    src: &[u8],
    (h, w, c): (usize, usize, usize),
    (dh, dw): (usize, usize),
    filter: Interpolation,
    out: &mut [u8],
) {
    debug_assert_eq!(src.len(), h * w * c);
    debug_assert_eq!(out.len(), dh * dw * c);
    if (h, w) == (dh, dw) {
        out.copy_from_slice(src);
        return;
    }
    match filter {
        Interpolation::Nearest => nearest(src, (h, w, c), (dh, dw), out),
        Interpolation::Bilinear => bilinear(src, (h, w, c), (dh, dw), out),
    }
}

/// Allocating version of [`resize_into`].
pub fn resize(
    src: &[u8],
    shape: (usize, usize, usize),
    size: (usize, usize),
    filter: Interpolation,
) -> Vec<u8> {
    let mut out = vec![0; size.0 * size.1 * shape.2];
    resize_into(src, shape, size, filter, &mut out);
    out
}

/// Pillow's nearest-neighbour scaling (`ImagingScaleAffine`): the source coordinate of output
/// pixel `x` is `floor(scale * 0.5 + x * scale)`, accumulated step by step in double precision.
fn positions(src: usize, dst: usize) -> Vec<usize> {
    let scale = src as f64 / dst as f64;
    let mut pos = scale * 0.5;
    let mut v = Vec::with_capacity(dst);
    for _ in 0..dst {
        let p = if pos < 0.0 { 0 } else { pos as usize };
        v.push(p.min(src - 1));
        pos += scale;
    }
    v
}

fn nearest(src: &[u8], (h, w, c): (usize, usize, usize), (dh, dw): (usize, usize), out: &mut [u8]) {
    let xs = positions(w, dw);
    let ys = positions(h, dh);
    for (row, &y) in out.chunks_exact_mut(dw * c).zip(&ys) {
        let src_row = &src[y * w * c..(y + 1) * w * c];
        for (px, &x) in row.chunks_exact_mut(c).zip(&xs) {
            px.copy_from_slice(&src_row[x * c..(x + 1) * c]);
        }
    }
}

const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc` for the bilinear (triangle) filter:
/// for each output position, the first input index and fixed-point weights.
fn coeffs(in_size: usize, out_size: usize) -> Vec<(usize, Vec<i32>)> {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filterscale; // bilinear support 1.0, widened when shrinking
    let ss = 1.0 / filterscale;
    (0..out_size)
        .map(|xx| {
            let center = (xx as f64 + 0.5) * scale;
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
            let mut k: Vec<f64> = (xmin..xmax.max(xmin))
                .map(|x| {
                    let t = ((x as f64 - center + 0.5) * ss).abs();
                    if t < 1.0 {
                        1.0 - t
                    } else {
                        0.0
                    }
                })
                .collect();
            let ww: f64 = k.iter().sum();
            if ww != 0.0 {
                for v in &mut k {
                    *v /= ww;
                }
            }
            let fixed = k
                .iter()
                .map(|&v| {
                    let s = v * (1u32 << PRECISION_BITS) as f64;
                    if v < 0.0 {
                        (-0.5 + s) as i32
                    } else {
                        (0.5 + s) as i32
                    }
                })
                .collect();
            (xmin, fixed)
        })
        .collect()
}

#[inline]
fn clip8(v: i32) -> u8 {
    (v >> PRECISION_BITS).clamp(0, 255) as u8
}

fn bilinear(
    src: &[u8],
    (h, w, c): (usize, usize, usize),
    (dh, dw): (usize, usize),
    out: &mut [u8],
) {
    // Horizontal pass (when the width changes), then vertical pass, 8-bit in between: as Pillow.
    let horizontal;
    let (mid, mid_w): (&[u8], usize) = if w != dw {
        let kx = coeffs(w, dw);
        let mut tmp = vec![0u8; h * dw * c];
        for (y, row) in tmp.chunks_exact_mut(dw * c).enumerate() {
            let src_row = &src[y * w * c..(y + 1) * w * c];
            for ((xmin, k), px) in kx.iter().zip(row.chunks_exact_mut(c)) {
                for (ch, o) in px.iter_mut().enumerate() {
                    let mut acc: i32 = 1 << (PRECISION_BITS - 1);
                    for (j, &kk) in k.iter().enumerate() {
                        acc = acc.wrapping_add(src_row[(xmin + j) * c + ch] as i32 * kk);
                    }
                    *o = clip8(acc);
                }
            }
        }
        horizontal = tmp;
        (&horizontal, dw)
    } else {
        (src, w)
    };
    if h == dh {
        out.copy_from_slice(mid);
        return;
    }
    let ky = coeffs(h, dh);
    let row_len = mid_w * c;
    for ((ymin, k), row) in ky.iter().zip(out.chunks_exact_mut(row_len)) {
        for (i, o) in row.iter_mut().enumerate() {
            let mut acc: i32 = 1 << (PRECISION_BITS - 1);
            for (j, &kk) in k.iter().enumerate() {
                acc = acc.wrapping_add(mid[(ymin + j) * row_len + i] as i32 * kk);
            }
            *o = clip8(acc);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luma_matches_pillow() {
        // PIL: Image.new("RGB", (1, 1), (255, 0, 0)).convert("L").getpixel((0, 0)) == 76
        assert_eq!(luma(255, 0, 0), 76);
        assert_eq!(luma(0, 255, 0), 150);
        assert_eq!(luma(0, 0, 255), 29);
        assert_eq!(luma(255, 255, 255), 255);
        assert_eq!(luma(10, 20, 30), 18);
    }

    #[test]
    fn nearest_matches_pillow_positions() {
        // PIL: Image.resize from 5 to 3 pixels (NEAREST) picks columns 0, 2, 4.
        assert_eq!(positions(5, 3), vec![0, 2, 4]);
        // 4 -> 2 picks 1 and 3 (centres), 2 -> 4 duplicates.
        assert_eq!(positions(4, 2), vec![1, 3]);
        assert_eq!(positions(2, 4), vec![0, 0, 1, 1]);
        let src: Vec<u8> = (0..12).collect(); // 2x2x3
        let out = resize(&src, (2, 2, 3), (4, 4), Interpolation::Nearest);
        assert_eq!(&out[0..6], &[0, 1, 2, 0, 1, 2]);
        assert_eq!(&out[out.len() - 3..], &[9, 10, 11]);
    }

    #[test]
    fn bilinear_keeps_constants_and_interpolates() {
        let src = vec![100u8; 7 * 5];
        let out = resize(&src, (7, 5, 1), (3, 11), Interpolation::Bilinear);
        assert!(out.iter().all(|&v| v == 100));
        // Downscaling [0, 255] pairs 4 -> 2 with support 2 averages neighbours.
        let src = vec![0u8, 255, 0, 255];
        let out = resize(&src, (1, 4, 1), (1, 2), Interpolation::Bilinear);
        // PIL: Image.frombytes("L", (4, 1), bytes([0, 255, 0, 255])).resize((2, 1), Image.BILINEAR) -> [109, 146]
        assert_eq!(out, vec![109, 146]);
        // Upscaling 2 -> 4: weights 0.75/0.25 at the inner samples.
        let src = vec![0u8, 200];
        let out = resize(&src, (1, 2, 1), (1, 4), Interpolation::Bilinear);
        assert_eq!(out, vec![0, 50, 150, 200]);
    }

    #[test]
    fn parse_modes() {
        assert_eq!("RGB".parse::<ColorMode>().unwrap(), ColorMode::Rgb);
        assert_eq!(
            "grayscale".parse::<ColorMode>().unwrap(),
            ColorMode::Grayscale
        );
        assert!("cmyk".parse::<ColorMode>().is_err());
        assert_eq!(
            "bilinear".parse::<Interpolation>().unwrap(),
            Interpolation::Bilinear
        );
        assert!("cubic".parse::<Interpolation>().is_err());
    }
}
