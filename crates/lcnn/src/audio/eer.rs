//! The equal error rate (EER), ASVspoof's metric: the rate at which the false acceptance of
//! spoofs equals the false rejection of bona fide speech. From the ROC curve as scikit-learn's
//! `roc_curve` builds it (one point per distinct score, ties grouped), the EER is where the
//! piecewise-linear curve crosses `1 - TPR = FPR`, interpolated on that segment (the common
//! `brentq(lambda x: 1 - x - interp1d(fpr, tpr)(x), 0, 1)`); `reference/eer.py` checks this
//! against scikit-learn and scipy.

/// A ROC curve: `thresholds[0]` is +inf (nothing accepted), then each distinct score,
/// decreasing; a sample is accepted as positive when its score is `>=` the threshold.
#[derive(Debug, Clone, PartialEq)]
pub struct Roc {
    /// False positive rate at each threshold.
    pub fpr: Vec<f64>,
    /// True positive rate at each threshold.
    pub tpr: Vec<f64>,
    /// The thresholds.
    pub thresholds: Vec<f64>,
}

/// The ROC curve of `scores` (higher: more likely positive) for `positive[i]`; `None` when
/// either class is absent or a score is NaN.
pub fn roc(scores: &[f64], positive: &[bool]) -> Option<Roc> {
    let p = positive.iter().filter(|x| **x).count();
    let n = positive.len() - p;
    if p == 0 || n == 0 || scores.len() != positive.len() || scores.iter().any(|s| s.is_nan()) {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|a, b| scores[*b].total_cmp(&scores[*a]));
    let mut roc = Roc {
        fpr: vec![0.0],
        tpr: vec![0.0],
        thresholds: vec![f64::INFINITY],
    };
    let (mut tp, mut fp) = (0usize, 0usize);
    let mut i = 0;
    while i < order.len() {
        let s = scores[order[i]];
        while i < order.len() && scores[order[i]] == s {
            if positive[order[i]] {
                tp += 1;
            } else {
                fp += 1;
            }
            i += 1;
        }
        roc.fpr.push(fp as f64 / n as f64);
        roc.tpr.push(tp as f64 / p as f64);
        roc.thresholds.push(s);
    }
    Some(roc)
}

/// The equal error rate and the threshold of the ROC point nearest to it (the smallest
/// `|FNR - FPR|`, the first on a tie); `None` as for [`roc`].
pub fn eer(scores: &[f64], positive: &[bool]) -> Option<(f64, f64)> {
    let r = roc(scores, positive)?;
    let d = |i: usize| (1.0 - r.tpr[i]) - r.fpr[i];
    // FNR - FPR falls from 1 (at +inf) to -1 (all accepted): the first point at or below 0.
    let end = (0..r.fpr.len()).find(|i| d(*i) <= 0.0)?;
    let rate = if d(end) == 0.0 || end == 0 {
        r.fpr[end]
    } else {
        let (d0, d1) = (d(end - 1), d(end));
        let t = d0 / (d0 - d1);
        r.fpr[end - 1] + t * (r.fpr[end] - r.fpr[end - 1])
    };
    let nearest = (0..r.fpr.len())
        .min_by(|a, b| d(*a).abs().total_cmp(&d(*b).abs()))
        .unwrap_or(0);
    Some((rate, r.thresholds[nearest]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separated_and_inverted_scores() {
        let pos = [true, true, false, false];
        assert_eq!(eer(&[0.9, 0.8, 0.2, 0.1], &pos).unwrap().0, 0.0);
        assert_eq!(eer(&[0.1, 0.2, 0.8, 0.9], &pos).unwrap().0, 1.0);
        assert!(eer(&[0.1, 0.2], &[true, true]).is_none());
    }
}
