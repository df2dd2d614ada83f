//! Keras' `model.summary()` table: layer name and type, output shape, parameter count, and the
//! totals split into trainable and non-trainable parameters (BatchNorm's moving mean and
//! variance, and every parameter of a frozen layer, are non-trainable, as in Keras).

use std::fmt::Write;

use super::spec::{ModelSpec, ParamCount};
use super::ModelError;

/// Renders the summary. `frozen[i]` marks layer `i` frozen (its parameters count as
/// non-trainable); an empty slice means nothing is frozen.
pub fn summary(spec: &ModelSpec, frozen: &[bool]) -> Result<String, ModelError> {
    let layers = spec.resolve()?;
    let mut rows: Vec<[String; 3]> = vec![[
        "input (InputLayer)".to_string(),
        format!("[{}]", spec.input.keras()),
        "0".to_string(),
    ]];
    let mut totals = ParamCount::default();
    for (i, l) in layers.iter().enumerate() {
        let mut p = l.params;
        if frozen.get(i).copied().unwrap_or(false) {
            p = ParamCount {
                trainable: 0,
                non_trainable: p.total(),
            };
        }
        totals.trainable += p.trainable;
        totals.non_trainable += p.non_trainable;
        rows.push([
            format!("{} ({})", l.spec.name, l.spec.kind.keras_type()),
            l.output.keras(),
            p.total().to_string(),
        ]);
    }
    // Keras 2.x positions for sequential-like models: [.45, .85, 1.] of 65 columns, widened
    // when a cell would not fit.
    let mut widths = [29usize, 26, 10];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len() + 2);
        }
    }
    let line: usize = widths.iter().sum();
    let mut out = String::new();
    let cell_row = |out: &mut String, cells: [&str; 3]| {
        let mut s = String::from(" ");
        for (cell, w) in cells.iter().zip(widths) {
            let _ = write!(s, "{cell:<w$}");
        }
        let _ = writeln!(out, "{}", s.trim_end());
    };
    let _ = writeln!(out, "Model: \"{}\"", spec.name);
    let _ = writeln!(out, "{}", "_".repeat(line));
    cell_row(&mut out, ["Layer (type)", "Output Shape", "Param #"]);
    let _ = writeln!(out, "{}", "=".repeat(line));
    for (i, row) in rows.iter().enumerate() {
        cell_row(&mut out, [&row[0], &row[1], &row[2]]);
        if i + 1 < rows.len() {
            out.push('\n');
        }
    }
    let _ = writeln!(out, "{}", "=".repeat(line));
    let _ = writeln!(out, "Total params: {}", thousands(totals.total()));
    let _ = writeln!(out, "Trainable params: {}", thousands(totals.trainable));
    let _ = writeln!(
        out,
        "Non-trainable params: {}",
        thousands(totals.non_trainable)
    );
    let _ = writeln!(out, "{}", "_".repeat(line));
    Ok(out)
}

/// `1234567` -> `1,234,567`.
pub fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::{parse_input_shape, ModelConfig, ModelName};

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(164_938), "164,938");
        assert_eq!(thousands(138_357_544), "138,357,544");
    }

    #[test]
    fn lcnn_summary_has_keras_rows_and_totals() {
        let spec = ModelConfig::new(ModelName::Lcnn, parse_input_shape("28x28x1").unwrap(), 10)
            .spec()
            .unwrap();
        let s = summary(&spec, &[]).unwrap();
        assert!(s.contains(" conv1 (Conv2D)"), "{s}");
        assert!(s.contains("(None, 28, 28, 64)"), "{s}");
        assert!(s.contains("mfm1 (MaxFeatureMap)"), "{s}");
        assert!(s.contains("(None, 14, 14, 32)"), "{s}");
        assert!(s.contains("Total params: 164,938\n"), "{s}");
        assert!(s.contains("Trainable params: 164,266\n"), "{s}");
        assert!(s.contains("Non-trainable params: 672\n"), "{s}");
    }

    #[test]
    fn frozen_layers_count_as_non_trainable() {
        let spec = ModelConfig {
            include_top: false,
            ..ModelConfig::new(ModelName::Vgg16, parse_input_shape("150x150x3").unwrap(), 1)
        }
        .spec()
        .unwrap();
        let frozen: Vec<bool> = (0..spec.layers.len())
            .map(|i| i < spec.index_of("block5_conv1").unwrap())
            .collect();
        let s = summary(&spec, &frozen).unwrap();
        // block5: three 3x3 512->512 convs.
        let block5 = 3 * (512 * 512 * 9 + 512);
        assert!(
            s.contains(&format!("Trainable params: {}\n", thousands(block5))),
            "{s}"
        );
        assert!(
            s.contains(&format!(
                "Non-trainable params: {}\n",
                thousands(14_714_688 - block5)
            )),
            "{s}"
        );
    }
}
