//! `history.png`: the learning curves of a run, the picture people usually draw from Keras'
//! `History` with matplotlib.
//!
//! Two panels side by side: `loss` and `val_loss` on the left, `accuracy` and `val_accuracy`
//! on the right, against the 1-based epoch number (the one shown as `Epoch 3/10`), each
//! with axis labels and a legend. A quantity absent from a row (no validation data) or not
//! finite is left out of its curve; a panel with no data says so.
//!
//! The image is drawn with `plotters` into an in-memory RGB buffer, encoded as PNG with the
//! `png` crate and written with [`crate::util::write_atomic`]. Text uses a subset of DejaVu
//! Sans (printable ASCII, about 10 KB, `assets/DejaVuSans-ASCII.ttf`, license beside it)
//! embedded in the binary and rasterized by `ab_glyph`, so drawing needs no system font
//! library and gives the same picture on every machine.

use std::path::Path;
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{register_font, FontStyle};

use super::error::CallbackError;
use super::logs::{keys, Logs};

/// The file name the training loop uses in its run folder.
pub const HISTORY_PNG: &str = "history.png";

/// Width and height of the image, in pixels.
pub const PLOT_SIZE: (u32, u32) = (1200, 480);

pub(crate) const FONT_FAMILY: &str = "sans-serif";
static FONT: &[u8] = include_bytes!("../../assets/DejaVuSans-ASCII.ttf");

/// Matplotlib's first two default colors, for the training and validation curves.
const TRAIN_COLOR: RGBColor = RGBColor(31, 119, 180);
const VAL_COLOR: RGBColor = RGBColor(255, 127, 14);

/// Draws the learning curves of `rows` (one [`Logs`] per epoch, in order, as from
/// [`CsvLogger::history`](super::CsvLogger::history)) into the PNG file `path`, replacing it
/// atomically.
pub fn plot_history(rows: &[Logs], path: &Path) -> Result<(), CallbackError> {
    let png = render_history_png(rows).map_err(|reason| CallbackError::Plot {
        path: path.to_path_buf(),
        reason,
    })?;
    crate::util::write_atomic(path, &png).map_err(|source| CallbackError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// The PNG bytes of the plot [`plot_history`] writes.
pub fn render_history_png(rows: &[Logs]) -> Result<Vec<u8>, String> {
    register_embedded_font()?;
    let (w, h) = PLOT_SIZE;
    let mut rgb = vec![0u8; w as usize * h as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let (left, right) = root.split_horizontally(w / 2);
        draw_panel(
            &left,
            rows,
            "Loss",
            "loss",
            [keys::LOSS, keys::VAL_LOSS],
            SeriesLabelPosition::UpperRight,
        )?;
        draw_panel(
            &right,
            rows,
            "Accuracy",
            "accuracy",
            [keys::ACCURACY, keys::VAL_ACCURACY],
            SeriesLabelPosition::LowerRight,
        )?;
        root.present().map_err(|e| e.to_string())?;
    }
    encode_png(&rgb, w, h)
}

pub(crate) fn register_embedded_font() -> Result<(), String> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok =
        *REGISTERED.get_or_init(|| register_font(FONT_FAMILY, FontStyle::Normal, FONT).is_ok());
    if ok {
        Ok(())
    } else {
        Err("the embedded font DejaVuSans-ASCII.ttf is not a valid font".to_string())
    }
}

/// The finite values of `key`, as (1-based epoch, value) points.
fn series(rows: &[Logs], key: &str) -> Vec<(f64, f64)> {
    rows.iter()
        .enumerate()
        .filter_map(|(i, logs)| {
            let v = *logs.get(key)?;
            v.is_finite().then_some(((i + 1) as f64, v))
        })
        .collect()
}

/// A y range holding all `values` with a 5% margin; `0..1` when there are none.
fn y_range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if lo > hi {
        return (0.0, 1.0);
    }
    let span = hi - lo;
    if span <= f64::EPSILON * hi.abs().max(1.0) {
        let pad = (hi.abs() * 0.05).max(0.05);
        return (lo - pad, hi + pad);
    }
    (lo - span * 0.05, hi + span * 0.05)
}

/// Number of decimals that tells apart labels about `span / 6` apart.
fn decimals_for(span: f64) -> usize {
    let step = span / 6.0;
    if step <= 0.0 || !step.is_finite() {
        return 2;
    }
    (-step.log10().floor()).clamp(0.0, 8.0) as usize
}

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    rows: &[Logs],
    title: &str,
    y_desc: &str,
    keys: [&str; 2],
    legend_at: SeriesLabelPosition,
) -> Result<(), String> {
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    let curves = [
        (keys[0], TRAIN_COLOR, series(rows, keys[0])),
        (keys[1], VAL_COLOR, series(rows, keys[1])),
    ];
    let n = rows.len().max(1) as f64;
    let x_pad = if n <= 1.0 { 0.5 } else { (n - 1.0) * 0.03 };
    let (y_lo, y_hi) = y_range(curves.iter().flat_map(|c| c.2.iter().map(|p| p.1)));
    let y_decimals = decimals_for(y_hi - y_lo);

    let mut chart = ChartBuilder::on(area)
        .caption(title, (FONT_FAMILY, 24))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(72)
        .build_cartesian_2d((1.0 - x_pad)..(n + x_pad), y_lo..y_hi)
        .map_err(err)?;

    let x_fmt = |x: &f64| {
        if (x - x.round()).abs() < 1e-6 {
            format!("{}", x.round() as i64)
        } else {
            String::new()
        }
    };
    let y_fmt = |y: &f64| format!("{y:.y_decimals$}");
    chart
        .configure_mesh()
        .x_labels((rows.len()).clamp(1, 10))
        .y_labels(6)
        .x_label_formatter(&x_fmt)
        .y_label_formatter(&y_fmt)
        .x_desc("epoch")
        .y_desc(y_desc)
        .label_style((FONT_FAMILY, 14))
        .axis_desc_style((FONT_FAMILY, 16))
        .bold_line_style(BLACK.mix(0.12))
        .light_line_style(BLACK.mix(0.04))
        .draw()
        .map_err(err)?;

    let mut drawn = 0;
    for (label, color, points) in curves {
        if points.is_empty() {
            continue;
        }
        drawn += 1;
        let style = color.stroke_width(2);
        chart
            .draw_series(LineSeries::new(points.iter().copied(), style))
            .map_err(err)?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], style));
        if points.len() <= 60 {
            chart
                .draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled())))
                .map_err(err)?;
        }
    }

    if drawn > 0 {
        chart
            .configure_series_labels()
            .position(legend_at)
            .label_font((FONT_FAMILY, 15))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .draw()
            .map_err(err)?;
    } else {
        let centered = (FONT_FAMILY, 16)
            .into_font()
            .color(&BLACK.mix(0.5))
            .pos(Pos::new(HPos::Center, VPos::Center));
        chart
            .plotting_area()
            .draw(&Text::new(
                format!("no {y_desc} recorded"),
                ((n + 1.0) / 2.0, (y_lo + y_hi) / 2.0),
                centered,
            ))
            .map_err(err)?;
    }
    Ok(())
}

pub(crate) fn encode_png(rgb: &[u8], w: u32, h: u32) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, w, h);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let mut writer = enc.write_header().map_err(|e| e.to_string())?;
    writer.write_image_data(rgb).map_err(|e| e.to_string())?;
    writer.finish().map_err(|e| e.to_string())?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history(n: usize, with_val: bool) -> Vec<Logs> {
        (0..n)
            .map(|e| {
                let mut l = Logs::new();
                let t = e as f64;
                l.insert("loss".into(), 2.0 * (-0.3 * t).exp() + 0.05);
                l.insert("accuracy".into(), 0.98 - 0.6 * (-0.35 * t).exp());
                if with_val {
                    l.insert("val_loss".into(), 2.1 * (-0.25 * t).exp() + 0.09);
                    l.insert("val_accuracy".into(), 0.96 - 0.55 * (-0.3 * t).exp());
                }
                l.insert("lr".into(), 1e-3);
                l
            })
            .collect()
    }

    /// Decodes a PNG, checking it is well-formed; returns (width, height, RGB bytes).
    fn decode(bytes: &[u8]) -> (u32, u32, Vec<u8>) {
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        let mut reader = png::Decoder::new(std::io::Cursor::new(bytes))
            .read_info()
            .unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!(info.color_type, png::ColorType::Rgb);
        buf.truncate(info.buffer_size());
        (info.width, info.height, buf)
    }

    fn count_color(rgb: &[u8], c: RGBColor) -> usize {
        rgb.chunks_exact(3)
            .filter(|p| p[0] == c.0 && p[1] == c.1 && p[2] == c.2)
            .count()
    }

    fn count_dark(rgb: &[u8]) -> usize {
        rgb.chunks_exact(3)
            .filter(|p| p.iter().all(|&v| v < 80))
            .count()
    }

    #[test]
    fn embedded_font_registers_and_measures_text() {
        use plotters::style::{FontDesc, FontFamily};
        assert!(FONT.len() < 64 * 1024);
        register_embedded_font().unwrap();
        let desc = FontDesc::new(FontFamily::SansSerif, 20.0, FontStyle::Normal);
        let (w1, h1) = desc.box_size("l").unwrap();
        let (w2, _) = desc.box_size("val_accuracy").unwrap();
        assert!(w1 > 0 && h1 > 0 && w2 > 5 * w1, "{w1} {h1} {w2}");
    }

    #[test]
    fn plot_writes_a_valid_png_with_both_panels() {
        let dir = std::env::temp_dir().join(format!("lcnn-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(HISTORY_PNG);
        plot_history(&history(12, true), &path).unwrap();
        let (w, h, rgb) = decode(&std::fs::read(&path).unwrap());
        assert_eq!((w, h), PLOT_SIZE);
        // Both curves of both panels, and text (captions, labels, legend).
        let half = (w as usize / 2) * 3;
        let left: Vec<u8> = rgb
            .chunks(w as usize * 3)
            .flat_map(|r| r[..half].to_vec())
            .collect();
        let right: Vec<u8> = rgb
            .chunks(w as usize * 3)
            .flat_map(|r| r[half..].to_vec())
            .collect();
        for panel in [&left, &right] {
            assert!(count_color(panel, TRAIN_COLOR) > 200);
            assert!(count_color(panel, VAL_COLOR) > 200);
            assert!(count_dark(panel) > 500);
        }
        // Nothing but the PNG in the folder.
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn plot_handles_missing_validation_single_epoch_empty_and_nan() {
        let (_, _, rgb) = decode(&render_history_png(&history(5, false)).unwrap());
        assert!(count_color(&rgb, TRAIN_COLOR) > 100);
        assert_eq!(count_color(&rgb, VAL_COLOR), 0);

        let (_, _, rgb) = decode(&render_history_png(&history(1, true)).unwrap());
        assert!(count_color(&rgb, VAL_COLOR) > 10);

        let (w, h, _) = decode(&render_history_png(&[]).unwrap());
        assert_eq!((w, h), PLOT_SIZE);

        let mut rows = history(4, true);
        rows[2].insert("loss".into(), f64::NAN);
        rows[3].insert("val_loss".into(), f64::INFINITY);
        let mut flat = Logs::new();
        flat.insert("loss".into(), 0.5);
        flat.insert("accuracy".into(), 0.5);
        rows.push(flat);
        decode(&render_history_png(&rows).unwrap());
    }

    #[test]
    fn plot_write_error_names_the_file() {
        let path = std::env::temp_dir()
            .join(format!("lcnn-plot-missing-{}", std::process::id()))
            .join(HISTORY_PNG);
        let e = plot_history(&history(2, true), &path).unwrap_err();
        assert!(matches!(e, CallbackError::Write { path: ref p, .. } if *p == path));
    }

    #[test]
    fn y_range_and_decimals() {
        assert_eq!(y_range(std::iter::empty()), (0.0, 1.0));
        let (lo, hi) = y_range([0.5, 0.5].into_iter());
        assert!(lo < 0.5 && hi > 0.5);
        let (lo, hi) = y_range([0.0, 1.0].into_iter());
        assert!((lo + 0.05).abs() < 1e-12 && (hi - 1.05).abs() < 1e-12);
        assert_eq!(decimals_for(1.0), 1);
        assert_eq!(decimals_for(0.09), 2);
        assert_eq!(decimals_for(600.0), 0);
    }
}
