//! The in-memory representation every dataset is loaded into and the training loop batches
//! from: u8 images in Keras' HWC layout, one after another, with class-index labels.

use std::fmt;
use std::ops::Range;

use super::error::DataError;

/// Images (u8, HWC, one after another) with their class labels.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Dataset {
    /// `len() * height * width * channels` bytes, image after image, each HWC.
    pub images: Vec<u8>,
    /// One class index per image, each `< classes.len()`.
    pub labels: Vec<u32>,
    pub height: usize,
    pub width: usize,
    pub channels: usize,
    /// Class names; label `i` is `classes[i]`.
    pub classes: Vec<String>,
}

impl Dataset {
    /// Builds a dataset and checks that sizes and labels agree.
    pub fn new(
        images: Vec<u8>,
        labels: Vec<u32>,
        (height, width, channels): (usize, usize, usize),
        classes: Vec<String>,
    ) -> Result<Dataset, DataError> {
        let d = Dataset {
            images,
            labels,
            height,
            width,
            channels,
            classes,
        };
        d.validate()?;
        Ok(d)
    }

    /// Checks the invariants: non-zero shape, `images.len() == len() * image_size()`, labels in range.
    pub fn validate(&self) -> Result<(), DataError> {
        let size = self.image_size();
        if size == 0 {
            return Err(DataError::invalid(
                "image shape",
                self.shape_string(),
                "non-zero height, width and channels",
            ));
        }
        if Some(self.images.len()) != self.labels.len().checked_mul(size) {
            return Err(DataError::invalid(
                "dataset",
                format!(
                    "{} image bytes for {} labels",
                    self.images.len(),
                    self.labels.len()
                ),
                format!("{} bytes per image ({})", size, self.shape_string()),
            ));
        }
        if let Some((i, &l)) = self
            .labels
            .iter()
            .enumerate()
            .find(|(_, &l)| l as usize >= self.classes.len())
        {
            return Err(DataError::invalid(
                "label",
                format!("{l} (sample {i})"),
                format!("a class index below {}", self.classes.len()),
            ));
        }
        Ok(())
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Bytes per image: `height * width * channels`.
    pub fn image_size(&self) -> usize {
        self.height * self.width * self.channels
    }

    /// `(height, width, channels)`.
    pub fn shape(&self) -> (usize, usize, usize) {
        (self.height, self.width, self.channels)
    }

    /// `"HxWxC"`, e.g. `28x28x1`.
    pub fn shape_string(&self) -> String {
        crate::models::Shape::Image {
            h: self.height,
            w: self.width,
            c: self.channels,
        }
        .to_string()
    }

    pub fn num_classes(&self) -> usize {
        self.classes.len()
    }

    /// Image `i` (HWC bytes). Panics when `i >= len()`, like slice indexing.
    pub fn image(&self, i: usize) -> &[u8] {
        let s = self.image_size();
        &self.images[i * s..(i + 1) * s]
    }

    /// Number of images of each class.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.classes.len()];
        for &l in &self.labels {
            if let Some(c) = counts.get_mut(l as usize) {
                *c += 1;
            }
        }
        counts
    }

    /// A copy of the images in `range` (clamped to the dataset).
    pub fn subset(&self, range: Range<usize>) -> Dataset {
        let end = range.end.min(self.len());
        let start = range.start.min(end);
        let s = self.image_size();
        Dataset {
            images: self.images[start * s..end * s].to_vec(),
            labels: self.labels[start..end].to_vec(),
            height: self.height,
            width: self.width,
            channels: self.channels,
            classes: self.classes.clone(),
        }
    }

    /// Keras `validation_split`: the LAST `fraction` of the samples, taken before any shuffling,
    /// becomes the validation set. As Keras, the training part is
    /// `floor(len * (1 - fraction))` samples. Fails when `fraction` is not in (0, 1) or when
    /// either part would be empty.
    pub fn split_validation(mut self, fraction: f64) -> Result<(Dataset, Dataset), DataError> {
        if !(fraction > 0.0 && fraction < 1.0) {
            return Err(DataError::invalid(
                "validation split",
                fraction,
                "a fraction strictly between 0 and 1",
            ));
        }
        let n = self.len();
        let split_at = (n as f64 * (1.0 - fraction)).floor() as usize;
        if split_at == 0 || split_at >= n {
            return Err(DataError::invalid(
                "validation split",
                fraction,
                format!("a fraction that leaves samples on both sides of {n} samples"),
            ));
        }
        let s = self.image_size();
        let val = Dataset {
            images: self.images.split_off(split_at * s),
            labels: self.labels.split_off(split_at),
            height: self.height,
            width: self.width,
            channels: self.channels,
            classes: self.classes.clone(),
        };
        self.images.shrink_to_fit();
        self.labels.shrink_to_fit();
        Ok((self, val))
    }

    /// Keras' `flow_from_directory(subset=...)` with `validation_split`: within each class, in
    /// the order loaded, the FIRST `int(n_class * fraction)` images are validation and the rest
    /// training, so both parts hold every class. Fails like [`Dataset::split_validation`].
    pub fn split_validation_per_class(
        self,
        fraction: f64,
    ) -> Result<(Dataset, Dataset), DataError> {
        if !(fraction > 0.0 && fraction < 1.0) {
            return Err(DataError::invalid(
                "validation split",
                fraction,
                "a fraction strictly between 0 and 1",
            ));
        }
        let mut seen = vec![0usize; self.classes.len()];
        let counts = self.class_counts();
        let (mut train_idx, mut val_idx) = (Vec::new(), Vec::new());
        for (i, &l) in self.labels.iter().enumerate() {
            let c = l as usize;
            // Keras: int(split * num_files), per class folder.
            if seen[c] < (counts[c] as f64 * fraction) as usize {
                val_idx.push(i);
            } else {
                train_idx.push(i);
            }
            seen[c] += 1;
        }
        if train_idx.is_empty() || val_idx.is_empty() {
            return Err(DataError::invalid(
                "validation split",
                fraction,
                format!(
                    "a fraction that leaves images of some class on both sides of {} images",
                    self.len()
                ),
            ));
        }
        Ok((self.select(&train_idx), self.select(&val_idx)))
    }

    /// A copy of the images at `indices`, in that order.
    pub fn select(&self, indices: &[usize]) -> Dataset {
        let s = self.image_size();
        let mut images = Vec::with_capacity(indices.len() * s);
        for &i in indices {
            images.extend_from_slice(self.image(i));
        }
        Dataset {
            images,
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            height: self.height,
            width: self.width,
            channels: self.channels,
            classes: self.classes.clone(),
        }
    }

    /// Splits off the validation set by `rule` (see [`ValidationRule`]).
    pub fn split_by(
        self,
        rule: ValidationRule,
        fraction: f64,
    ) -> Result<(Dataset, Dataset), DataError> {
        match rule {
            ValidationRule::Last => self.split_validation(fraction),
            ValidationRule::FirstOfEachClass => self.split_validation_per_class(fraction),
        }
    }
}

/// How `validation_split` carves the validation set out of a training split, as Keras does for
/// the kind of source: arrays passed to `fit` (MNIST, CIFAR-10) lose their LAST fraction;
/// `flow_from_directory` takes the FIRST fraction of each class folder (image folders, whose
/// files are sorted by class, so that the tail would hold only the last classes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ValidationRule {
    #[default]
    Last,
    FirstOfEachClass,
}

/// A loaded dataset: its training split and, when the dataset has one, its test split.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Splits {
    /// `mnist`, `cifar10` or `images:<dir>`.
    pub name: String,
    pub train: Dataset,
    pub test: Option<Dataset>,
    /// How `validation_split` applies to `train`.
    pub validation_rule: ValidationRule,
    /// A validation split of its own (Keras' `validation_data`; ASVspoof's development
    /// protocol), used instead of `validation_split`.
    pub val: Option<Dataset>,
}

impl Splits {
    /// Class names (the training split's).
    pub fn classes(&self) -> &[String] {
        &self.train.classes
    }
}

/// `mnist: train 60000, test 10000, classes 10, shape 28x28x1`
impl fmt::Display for Splits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: train {}", self.name, self.train.len())?;
        if let Some(val) = &self.val {
            write!(f, ", validation {}", val.len())?;
        }
        if let Some(test) = &self.test {
            write!(f, ", test {}", test.len())?;
        }
        write!(
            f,
            ", classes {}, shape {}",
            self.train.num_classes(),
            self.train.shape_string()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toy(n: usize) -> Dataset {
        Dataset::new(
            (0..n * 2).map(|i| i as u8).collect(),
            (0..n).map(|i| (i % 2) as u32).collect(),
            (1, 2, 1),
            vec!["a".into(), "b".into()],
        )
        .unwrap()
    }

    #[test]
    fn split_takes_the_last_fraction_like_keras() {
        // Keras: split_at = int(10 * (1 - 0.25)) = 7
        let (train, val) = toy(10).split_validation(0.25).unwrap();
        assert_eq!(train.len(), 7);
        assert_eq!(val.len(), 3);
        assert_eq!(val.image(0), &[14, 15]);
        assert_eq!(val.labels, vec![1, 0, 1]);
        // 60000 * 0.8 = 48000 exactly, as in Python
        let (train, val) = toy(60000).split_validation(0.2).unwrap();
        assert_eq!((train.len(), val.len()), (48000, 12000));
    }

    #[test]
    fn per_class_split_takes_the_first_fraction_of_each_class_like_flow_from_directory() {
        // Sorted by class as a folder loads: 5 of class a, then 4 of class b.
        let d = Dataset::new(
            (0..9).collect(),
            vec![0, 0, 0, 0, 0, 1, 1, 1, 1],
            (1, 1, 1),
            vec!["a".into(), "b".into()],
        )
        .unwrap();
        // Keras: int(5 * 0.5) = 2 and int(4 * 0.5) = 2 validation files.
        let (train, val) = d.split_by(ValidationRule::FirstOfEachClass, 0.5).unwrap();
        assert_eq!(val.images, vec![0, 1, 5, 6]);
        assert_eq!(val.labels, vec![0, 0, 1, 1]);
        assert_eq!(train.images, vec![2, 3, 4, 7, 8]);
        assert_eq!(train.labels, vec![0, 0, 0, 1, 1]);
        assert!(toy(2)
            .split_by(ValidationRule::FirstOfEachClass, 0.4)
            .is_err());
    }

    #[test]
    fn split_rejects_bad_fractions_and_empty_parts() {
        assert!(toy(10).split_validation(0.0).is_err());
        assert!(toy(10).split_validation(1.0).is_err());
        assert!(toy(10).split_validation(f64::NAN).is_err());
        assert!(toy(1).split_validation(0.5).is_err());
        assert!(toy(10).split_validation(1e-17).is_err());
    }

    #[test]
    fn new_rejects_inconsistent_data() {
        assert!(Dataset::new(
            vec![0; 3],
            vec![0, 1],
            (1, 2, 1),
            vec!["a".into(), "b".into()]
        )
        .is_err());
        assert!(Dataset::new(
            vec![0; 4],
            vec![0, 2],
            (1, 2, 1),
            vec!["a".into(), "b".into()]
        )
        .is_err());
        assert!(Dataset::new(vec![], vec![], (0, 2, 1), vec![]).is_err());
    }

    #[test]
    fn subset_counts_and_display() {
        let d = toy(5);
        let s = d.subset(1..3);
        assert_eq!(s.len(), 2);
        assert_eq!(s.image(0), d.image(1));
        assert_eq!(d.subset(4..9).len(), 1);
        assert_eq!(d.class_counts(), vec![3, 2]);
        let splits = Splits {
            name: "toy".into(),
            train: d.clone(),
            test: Some(s),
            validation_rule: ValidationRule::Last,
            val: None,
        };
        assert_eq!(
            splits.to_string(),
            "toy: train 5, test 2, classes 2, shape 1x2x1"
        );
    }
}
