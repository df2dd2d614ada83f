#!/usr/bin/env python3
"""ROC curve and equal error rate (EER) of binary detection scores, in numpy (float64).

Writes crates/lcnn/tests/fixtures/eer.json.

Convention: a higher score means more bona fide, the positive class (label 1); label 0 is
the negative class (spoof).

ROC: sklearn.metrics.roc_curve(y, s, drop_intermediate=False)
(sklearn 1.9 sklearn/metrics/_ranking.py, `_binary_clf_curve` and `roc_curve`):
    https://github.com/scikit-learn/scikit-learn/blob/main/sklearn/metrics/_ranking.py
    order = argsort(s, kind='mergesort')[::-1]        scores in decreasing order
    s, y  = s[order], y[order]
    idx   = indices i where s[i] != s[i+1], then n-1 (the last index of each group of
            tied scores)
    tps   = cumsum(y)[idx];  fps = 1 + idx - tps      (counts at or above each threshold)
    thresholds = s[idx]                                (the distinct scores, decreasing)
    prepend the point (0, 0) with threshold +inf      (sklearn >= 1.3; earlier versions used
                                                       max(s) + 1)
    fpr = fps / fps[-1];  tpr = tps / tps[-1]          (float64 divisions)
  A point i means "accept (predict positive) every sample with s >= thresholds[i]".  Tied
  scores form one point, so a group holding both classes gives a diagonal segment.
  In the fixture thresholds[0] (+inf) is stored as null.

EER: FNR = 1 - TPR; along the ROC points d_i = FNR_i - FPR_i starts at d_0 = 1, ends at -1 and
is strictly decreasing (every point adds at least one sample).  Let i be the first point with
d_i <= 0.
    d_i == 0:  EER = FPR_i                          (the crossing is at a vertex)
    else:      lam = d_{i-1} / (d_{i-1} - d_i)
               EER = FPR_{i-1} + lam * (FPR_i - FPR_{i-1})
i.e. the FPR where the piecewise-linear ROC curve (straight segments between the points)
crosses FNR = FPR; on that segment FNR and FPR are both linear in lam, so there FNR = FPR =
EER.  This is the common recipe
    eer = scipy.optimize.brentq(lambda x: 1. - x - interp1d(fpr, tpr)(x), 0., 1.)
(1 - x - tpr(x) is strictly decreasing in x and changes sign exactly there; on a vertical
segment, FPR constant, the root is that FPR).
eer_threshold: thresholds[j] for the ROC point j with the smallest |FNR_j - FPR_j| (np.argmin,
so on a tie the earlier point, the higher threshold); eer_index = j.  It is a score of the
data (never the +inf of point 0 in these cases).

Cases: perfectly separated (EER 0), perfectly inverted (EER 1), heavy ties (crossing inside a
diagonal segment), 200 LCG scores from two overlapping distributions (110 positives, 90
negatives: unequal counts, so the crossing can fall inside a horizontal segment, and does), a
crossing exactly at a vertex, and an unbalanced 10 positives / 90 negatives (crossing on a
vertical segment).  With distinct scores a step is vertical (a positive) or horizontal (a
negative); when every multiple of 1/n_pos is also a multiple of 1/n_neg (100/100, 10/90) the
crossing is always at the FPR of a vertex, which is why lcg_overlap uses 110/90.  LCG: s_{k+1} = (1664525 s_k +
1013904223) mod 2^32, u = s_{k+1} / 2^32; a normal-ish draw is (sum of 12 u) - 6; scores are
rounded to 6 decimals.

Self-checks: no ROC point has 0 < |FNR - FPR| <= 1e-9 (so the result does not hinge on the
order of float operations; compute d = (1 - tpr) - fpr); the ROC by an explicit threshold loop (count s >= t), the interpolated EER by a
bisection on 1 - x - tpr(x) with np.interp, FNR = FPR at the EER on the crossing segment, and
that the naive "min |FNR - FPR| vertex, no interpolation" EER (both its FPR and its
(FNR + FPR) / 2 forms) differs from the fixture on some case.
Cross-check when sklearn and scipy are importable (it never changes the fixture):
roc_curve(drop_intermediate=False) fpr/tpr/thresholds and the brentq recipe above (with
xtol=1e-15; the default xtol 2e-12 is looser than the 1e-12 comparison), all to 1e-12.
Checked with scikit-learn 1.9.1, scipy 1.17.1, numpy 2.4.6:
    python3 -m venv /tmp/skvenv && /tmp/skvenv/bin/pip install numpy scipy scikit-learn
    /tmp/skvenv/bin/python reference/eer.py
"""

import sys

import numpy as np

from _common import write_fixture

# ---------------------------------------------------------------------------------------------
# ROC and EER
# ---------------------------------------------------------------------------------------------


def roc(scores, labels):
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    order = np.argsort(s, kind="mergesort")[::-1]
    s, y = s[order], y[order]
    idx = np.r_[np.where(np.diff(s))[0], s.size - 1]
    tps = np.cumsum(y)[idx]
    fps = 1 + idx - tps
    tps, fps = np.r_[0.0, tps], np.r_[0.0, fps]
    thresholds = np.r_[np.inf, s[idx]]
    return fps / fps[-1], tps / tps[-1], thresholds


def eer(fpr, tpr):
    """-> (eer, i): i is the first ROC point with FNR - FPR <= 0 (the segment is i-1 .. i)."""
    d = (1.0 - tpr) - fpr
    i = int(np.argmax(d <= 0))
    assert d[i] <= 0 and i > 0 and (d[:i] > 0).all()
    if d[i] == 0:
        return float(fpr[i]), i
    lam = d[i - 1] / (d[i - 1] - d[i])
    return float(fpr[i - 1] + lam * (fpr[i] - fpr[i - 1])), i


def eer_threshold(fpr, tpr, thresholds):
    j = int(np.argmin(np.abs((1.0 - tpr) - fpr)))
    return float(thresholds[j]), j


# ---------------------------------------------------------------------------------------------
# Cases
# ---------------------------------------------------------------------------------------------


class Lcg:
    def __init__(self, seed):
        self.s = seed

    def uniform(self):
        self.s = (1664525 * self.s + 1013904223) % (1 << 32)
        return self.s / 4294967296.0

    def normalish(self):
        return sum(self.uniform() for _ in range(12)) - 6.0


def interleave(pos, neg):
    """Scores and labels with positives and negatives alternating (order matters only for ties)."""
    scores, labels = [], []
    for k in range(max(len(pos), len(neg))):
        if k < len(pos):
            scores.append(pos[k]); labels.append(1)
        if k < len(neg):
            scores.append(neg[k]); labels.append(0)
    return scores, labels


def cases():
    out = []

    def add(name, note, scores, labels):
        out.append({"name": name, "note": note, "scores": [float(v) for v in scores],
                    "labels": [int(v) for v in labels]})

    s, l = interleave([0.9, 0.8, 0.75, 0.7, 0.6], [0.1, 0.2, 0.3, 0.4, 0.5])
    add("separated", "every positive above every negative: EER 0", s, l)
    s, l = interleave([0.1, 0.2, 0.3, 0.4], [0.9, 0.8, 0.7, 0.6, 0.5, 0.45])
    add("inverted", "every positive below every negative: EER 1", s, l)
    pos = [1.0, 1.0, 0.75, 0.75, 0.75, 0.5, 0.5, 0.5, 0.5, 0.25, 0.25, 0.0]
    neg = [0.75, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.25, 0.0, 0.0, 0.0, 0.0, 0.5, 0.25]
    s, l = interleave(pos, neg)
    add("heavy_ties", "5 distinct scores for 26 samples; the crossing is inside a diagonal "
        "(mixed-class tie) segment", s, l)
    g = Lcg(7)
    pos = [round(1.2 + g.normalish(), 6) for _ in range(110)]
    neg = [round(g.normalish(), 6) for _ in range(90)]
    s, l = interleave(pos, neg)
    add("lcg_overlap", "110 positives ~ 1.2 + N(0,1)-ish, 90 negatives ~ N(0,1)-ish (LCG seed "
        "7, positives drawn first); the crossing is inside a horizontal segment", s, l)
    # Decreasing order P P P N P N N N: after the first N, TPR 3/4, FPR 1/4, so FNR = FPR.
    s = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2]
    l = [1, 1, 1, 0, 1, 0, 0, 0]
    add("vertex", "FNR = FPR = 0.25 exactly at the ROC point of threshold 0.6", s, l)
    g = Lcg(3)
    pos = [round(1.0 + g.normalish(), 6) for _ in range(10)]
    neg = [round(g.normalish(), 6) for _ in range(90)]
    add("unbalanced", "10 positives ~ 1 + N(0,1)-ish then 90 negatives ~ N(0,1)-ish (LCG seed 3); "
        "the crossing is on a vertical segment", pos + neg, [1] * 10 + [0] * 90)
    return out


def evaluate(c):
    fpr, tpr, thr = roc(c["scores"], c["labels"])
    e, seg = eer(fpr, tpr)
    t, j = eer_threshold(fpr, tpr, thr)
    c.update({"fpr": fpr, "tpr": tpr, "thresholds": [None] + [float(v) for v in thr[1:]],
              "eer": e, "eer_segment_end": seg, "eer_threshold": t, "eer_index": j})
    return fpr, tpr, thr


# ---------------------------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------------------------


def naive_vertex_eer(fpr, tpr):
    j = int(np.argmin(np.abs((1.0 - tpr) - fpr)))
    return float(fpr[j]), float(((1.0 - tpr[j]) + fpr[j]) / 2)


def self_check(all_cases):
    caught = []
    for c in all_cases:
        s, y = np.array(c["scores"]), np.array(c["labels"])
        fpr, tpr, thr = roc(s, y)
        # Explicit threshold loop.
        for k, t in enumerate(thr):
            acc = s >= t
            assert fpr[k] == (acc & (y == 0)).sum() / (y == 0).sum()
            assert tpr[k] == (acc & (y == 1)).sum() / (y == 1).sum()
        assert list(thr[1:]) == sorted(set(s.tolist()), reverse=True)
        # Bisection on 1 - x - tpr(x).  np.interp with the repeated fpr of vertical segments:
        # between two distinct fpr values it interpolates between the last point of the left
        # run and the first of the right run, which is the ROC segment there.
        g = lambda x: 1.0 - x - np.interp(x, fpr, tpr)
        lo, hi = 0.0, 1.0
        if g(lo) <= 0:
            hi = 0.0
        for _ in range(200):
            mid = (lo + hi) / 2
            if g(mid) > 0:
                lo = mid
            else:
                hi = mid
        assert abs(hi - c["eer"]) < 1e-12, (c["name"], hi, c["eer"])
        # FNR = FPR = EER at the crossing point of the segment.
        i = c["eer_segment_end"]
        if fpr[i] != fpr[i - 1]:
            lam = (c["eer"] - fpr[i - 1]) / (fpr[i] - fpr[i - 1])
            fnr = 1.0 - (tpr[i - 1] + lam * (tpr[i] - tpr[i - 1]))
            assert abs(fnr - c["eer"]) < 1e-12, c["name"]
        else:
            assert 1 - tpr[i - 1] >= c["eer"] >= 1 - tpr[i] and fpr[i] == c["eer"]
        for label, v in zip(("vertex FPR", "vertex (FNR+FPR)/2"), naive_vertex_eer(fpr, tpr)):
            if abs(v - c["eer"]) > 1e-6:
                caught.append(f"{c['name']}: naive {label} {v!r} vs {c['eer']!r}")
        # No point is within rounding of FNR = FPR without being exactly on it, so the
        # segment and the argmin do not depend on the order of the float operations.
        d = (1.0 - tpr) - fpr
        assert ((d == 0) | (np.abs(d) > 1e-9)).all(), c["name"]
    by_name = {c["name"]: c for c in all_cases}
    assert by_name["separated"]["eer"] == 0.0 and by_name["inverted"]["eer"] == 1.0
    assert by_name["vertex"]["eer"] == 0.25
    lo = by_name["lcg_overlap"]
    i = lo["eer_segment_end"]
    assert lo["tpr"][i] == lo["tpr"][i - 1] and lo["fpr"][i] != lo["fpr"][i - 1]   # horizontal
    ub = by_name["unbalanced"]
    i = ub["eer_segment_end"]
    assert ub["fpr"][i] == ub["fpr"][i - 1]                                          # vertical
    ht = by_name["heavy_ties"]
    i = ht["eer_segment_end"]
    assert ht["fpr"][i] != ht["fpr"][i - 1] and ht["tpr"][i] != ht["tpr"][i - 1]   # diagonal
    for c in all_cases:
        print(f"  {c['name']}: EER {c['eer']!r}, threshold {c['eer_threshold']!r}", file=sys.stderr)
    assert caught, "the naive vertex EER should differ on some case"
    for line in caught:
        print(f"  self-check (caught) {line}", file=sys.stderr)


def sklearn_check(all_cases):
    try:
        import scipy
        import sklearn
        from scipy.interpolate import interp1d
        from scipy.optimize import brentq
        from sklearn.metrics import roc_curve
    except ImportError:
        return None
    for c in all_cases:
        fpr, tpr, thr = roc_curve(c["labels"], c["scores"], drop_intermediate=False)
        if not (np.abs(fpr - c["fpr"]).max() <= 1e-12 and np.abs(tpr - c["tpr"]).max() <= 1e-12):
            raise SystemExit(f"{c['name']}: sklearn roc_curve differs")
        if not (np.isinf(thr[0]) and np.array_equal(thr[1:], c["thresholds"][1:])):
            raise SystemExit(f"{c['name']}: sklearn thresholds differ: {thr}")
        f = interp1d(fpr, tpr)
        e = brentq(lambda x: 1.0 - x - f(x), 0.0, 1.0, xtol=1e-15)
        if abs(e - c["eer"]) > 1e-12:
            raise SystemExit(f"{c['name']}: brentq EER {e!r}, the fixture {c['eer']!r}")
        e_default = brentq(lambda x: 1.0 - x - f(x), 0.0, 1.0)
        naive = naive_vertex_eer(fpr, tpr)
        print(f"  sklearn {c['name']}: brentq {e!r} (default xtol: {e_default!r}), "
              f"naive vertex {naive[0]!r}", file=sys.stderr)
    return f"scikit-learn {sklearn.__version__}, scipy {scipy.__version__}"


def main():
    all_cases = cases()
    for c in all_cases:
        evaluate(c)
    self_check(all_cases)
    r = sklearn_check(all_cases)
    print("sklearn/scipy cross-check: " + (f"passed against {r}" if r else
                                           "skipped (not importable)"), file=sys.stderr)
    payload = {
        "description": "ROC (sklearn.metrics.roc_curve, drop_intermediate=False) and EER of "
                       "binary scores, float64. Higher score = positive (label 1, bona fide). "
                       "thresholds[0] is +inf, stored as null. eer = FPR where the "
                       "piecewise-linear ROC crosses FNR = FPR (= brentq(1 - x - "
                       "interp1d(fpr, tpr)(x))); eer_threshold = thresholds[eer_index], the "
                       "ROC point with the smallest |FNR - FPR| (first on a tie); "
                       "eer_segment_end = first point with FNR - FPR <= 0. "
                       "See reference/eer.py",
        "cases": all_cases,
    }
    write_fixture("eer.json", payload)


if __name__ == "__main__":
    main()
