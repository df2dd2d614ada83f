//! `roc.png`: the ROC curve and the DET curve (miss rate against false alarm rate on normal
//! deviate scales, as ASVspoof and NIST plot them) of a two-class run's scores, with the equal
//! error rate marked, drawn as [`super::plot`] draws `history.png`.

use std::path::Path;

use plotters::prelude::*;

use super::error::CallbackError;
use super::plot::{encode_png, register_embedded_font, FONT_FAMILY};
use crate::audio::{eer, roc};

/// The file name the training loop uses in its run folder.
pub const ROC_PNG: &str = "roc.png";

const CURVE: RGBColor = RGBColor(31, 119, 180);
const MARK: RGBColor = RGBColor(214, 39, 40);

/// The standard normal quantile (Acklam's rational approximation, relative error < 1.2e-9),
/// the DET curve's axis transform; `p` is clamped to `[1e-6, 1 - 1e-6]`.
pub fn probit(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969683028665376e+01,
        2.209460984245205e+02,
        -2.759285104469687e+02,
        1.38357751867269e+02,
        -3.066479806614716e+01,
        2.506628277459239e+00,
    ];
    const B: [f64; 5] = [
        -5.447609879822406e+01,
        1.615858368580409e+02,
        -1.556989798598866e+02,
        6.680131188771972e+01,
        -1.328068155288572e+01,
    ];
    const C: [f64; 6] = [
        -7.784894002430293e-03,
        -3.223964580411365e-01,
        -2.400758277161838e+00,
        -2.549732539343734e+00,
        4.374664141464968e+00,
        2.938163982698783e+00,
    ];
    const D: [f64; 4] = [
        7.784695709041462e-03,
        3.224671290700398e-01,
        2.445134137142996e+00,
        3.754408661907416e+00,
    ];
    let p = p.clamp(1e-6, 1.0 - 1e-6);
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < 0.02425 {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - 0.02425 {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

/// Draws the ROC and DET curves of `scores` (score, is positive) into the PNG file `path`,
/// replacing it atomically; `title` heads the image (e.g. the split).
pub fn plot_roc(scores: &[(f64, bool)], title: &str, path: &Path) -> Result<(), CallbackError> {
    let fail = |reason: String| CallbackError::Plot {
        path: path.to_path_buf(),
        reason,
    };
    let (s, pos): (Vec<f64>, Vec<bool>) = scores.iter().copied().unzip();
    let curve = roc(&s, &pos).ok_or_else(|| fail("both classes are needed for a ROC".into()))?;
    let (rate, _) = eer(&s, &pos).ok_or_else(|| fail("no EER".into()))?;
    let png = render(&curve, rate, title).map_err(fail)?;
    crate::util::write_atomic(path, &png).map_err(|source| CallbackError::Write {
        path: path.to_path_buf(),
        source,
    })
}

fn render(curve: &crate::audio::Roc, rate: f64, title: &str) -> Result<Vec<u8>, String> {
    register_embedded_font()?;
    let (w, h) = (1100u32, 520u32);
    let mut rgb = vec![0u8; w as usize * h as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (w, h)).into_drawing_area();
        let e = |e: DrawingAreaErrorKind<_>| e.to_string();
        root.fill(&WHITE).map_err(e)?;
        let root = root
            .titled(
                &format!("{title}: EER {:.2}%", 100.0 * rate),
                (FONT_FAMILY, 22),
            )
            .map_err(e)?;
        let (left, right) = root.split_horizontally(w / 2);
        let style = (FONT_FAMILY, 14);

        let mut c = ChartBuilder::on(&left)
            .caption("ROC", (FONT_FAMILY, 18))
            .margin(16)
            .x_label_area_size(44)
            .y_label_area_size(56)
            .build_cartesian_2d(0.0..1.0, 0.0..1.0)
            .map_err(e)?;
        c.configure_mesh()
            .x_desc("false positive rate")
            .y_desc("true positive rate")
            .label_style(style)
            .axis_desc_style(style)
            .bold_line_style(BLACK.mix(0.12))
            .light_line_style(BLACK.mix(0.04))
            .draw()
            .map_err(e)?;
        c.draw_series(LineSeries::new(
            [(0.0, 0.0), (1.0, 1.0)],
            BLACK.mix(0.3).stroke_width(1),
        ))
        .map_err(e)?;
        let points: Vec<(f64, f64)> = curve.fpr.iter().copied().zip(curve.tpr.clone()).collect();
        c.draw_series(LineSeries::new(points, CURVE.stroke_width(2)))
            .map_err(e)?;
        c.draw_series([Circle::new((rate, 1.0 - rate), 5, MARK.filled())])
            .map_err(e)?;

        // DET: miss (1 - TPR) against false alarm, both on normal deviate scales.
        let ticks = [0.001, 0.01, 0.05, 0.2, 0.5, 0.8, 0.95];
        let (lo, hi) = (probit(0.0005), probit(0.99));
        let mut d = ChartBuilder::on(&right)
            .caption("DET", (FONT_FAMILY, 18))
            .margin(16)
            .x_label_area_size(44)
            .y_label_area_size(56)
            .build_cartesian_2d(lo..hi, lo..hi)
            .map_err(e)?;
        let label = |v: &f64| {
            ticks
                .iter()
                .find(|t| (probit(**t) - v).abs() < 1e-9)
                .map(|t| format!("{}%", 100.0 * t))
                .unwrap_or_default()
        };
        let tick_values: Vec<f64> = ticks.iter().map(|t| probit(*t)).collect();
        d.configure_mesh()
            .x_labels(0)
            .y_labels(0)
            .x_desc("false alarm rate")
            .y_desc("miss rate")
            .label_style(style)
            .axis_desc_style(style)
            .draw()
            .map_err(e)?;
        for t in &tick_values {
            d.draw_series(LineSeries::new([(*t, lo), (*t, hi)], BLACK.mix(0.1)))
                .map_err(e)?;
            d.draw_series(LineSeries::new([(lo, *t), (hi, *t)], BLACK.mix(0.1)))
                .map_err(e)?;
            let text = label(t);
            d.draw_series([Text::new(text.clone(), (*t, lo), (FONT_FAMILY, 12))])
                .map_err(e)?;
            d.draw_series([Text::new(text, (lo, *t), (FONT_FAMILY, 12))])
                .map_err(e)?;
        }
        let det: Vec<(f64, f64)> = curve
            .fpr
            .iter()
            .zip(&curve.tpr)
            .map(|(f, t)| (probit(*f), probit(1.0 - t)))
            .collect();
        d.draw_series(LineSeries::new(det, CURVE.stroke_width(2)))
            .map_err(e)?;
        d.draw_series([Circle::new((probit(rate), probit(rate)), 5, MARK.filled())])
            .map_err(e)?;
        root.present().map_err(e)?;
    }
    encode_png(&rgb, w, h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probit_inverts_the_normal_cdf() {
        assert!(probit(0.5).abs() < 1e-12);
        assert!((probit(0.975) - 1.959963984540054).abs() < 1e-8);
        assert!((probit(0.001) + 3.090232306167813).abs() < 1e-7);
    }

    #[test]
    fn the_plot_is_a_png_and_one_class_is_an_error() {
        let dir = std::env::temp_dir().join(format!("lcnn-roc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(ROC_PNG);
        let scores: Vec<(f64, bool)> = (0..40).map(|i| (i as f64 % 7.0, i % 3 == 0)).collect();
        plot_roc(&scores, "test", &path).unwrap();
        assert!(std::fs::read(&path).unwrap().starts_with(b"\x89PNG"));
        let e = plot_roc(&[(1.0, true)], "test", &path).unwrap_err();
        assert!(e.to_string().contains("both classes"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
