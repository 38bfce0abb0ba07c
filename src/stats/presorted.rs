//! The bootstrap's fast path: every binary column a ranking metric uses is sorted once, and a
//! resample is evaluated from its row counts (how many times it draws each original row)
//! walked along that order. The values are bitwise those of the definition,
//! `data.select(rows).resample_metrics(..)` (and [`Data::resample_values`] with the operating
//! points), which sorts every column again in every resample.
//!
//! Why bitwise: sklearn's `_binary_clf_curve` (`crate::metrics`'s `binary_clf_curve`) sorts the
//! scores from the highest down, accumulates each row's weight in its class's running sum and
//! closes a point at the last row of every run of equal scores. The resample's sorted column is
//! the presorted one with each row repeated as often as it is drawn, and its runs of equal
//! scores are the presorted column's runs that hold a drawn row. Within a class every weight is
//! the same (unweighted 1.0; the multi-label ROC-AUC's `1 + 1e-6` for a positive and `1e-6` for
//! a negative), so a running sum after m rows of a class is the same m-fold addition whatever
//! the order of the rows: it is looked up in a table of the repeated additions (never
//! `m * w`, which rounds differently). Unweighted, the false positives are `(rank + 1) - tps`
//! as there. The points then take the definition's arithmetic in its order: the operating
//! points through the same functions (`roc_of_curve`, `operating::points_of`); the ROC-AUC and
//! the AP through `roc_curve`'s keep rule (`keeps_point`), `trapezoid_area` and
//! `average_precision`'s sum (`average_precision_of`) over the walked runs, so that no curve
//! is built.
//! The other metrics come from the same integer counts (confusion matrix, per-label counts)
//! through the same functions. The tests compare every value bit for bit with the definition's.

use super::operating::{self, AtThreshold};
use super::{Data, Truth};
use crate::metrics::{
    argmax_rows, average_precision_of, keeps_point, ovo_mean, roc_of_curve, subset_right,
    sums_to_one, trapezoid_area, ClfCurve, LabelCounts, Metrics, MulticlassMetrics,
    MultilabelMetrics, AUC_WEIGHT_NEGATIVE, AUC_WEIGHT_POSITIVE, THRESHOLD,
};
use anyhow::Result;

/// An entry of a [`Column`]: its row and flags.
#[derive(Debug, Clone, Copy)]
struct Entry {
    row: u32,
    flags: u8,
}

/// The row is a positive of the column.
const POSITIVE: u8 = 1;
/// The row's score is a positive prediction (multi-label: above [`THRESHOLD`]).
const PREDICTED: u8 = 2;
/// The last entry of a run of equal scores (the next entry's score differs, or none follows).
const GROUP_END: u8 = 4;

/// One binary column (its rows, which of them are positives, their scores), sorted once.
#[derive(Debug, Clone)]
struct Column {
    /// From the highest score down.
    entries: Vec<Entry>,
    /// The entries' scores.
    scores: Vec<f64>,
}

impl Column {
    /// `rows`: (row, positive, predicted positive, score).
    fn new(rows: impl Iterator<Item = (u32, bool, bool, f64)>) -> Column {
        let rows: Vec<(u32, bool, bool, f64)> = rows.collect();
        // `binary_clf_curve`'s order: ascending by the total order, reversed. The order within
        // a run of equal scores does not matter here (module docs).
        let mut order: Vec<usize> = (0..rows.len()).collect();
        order.sort_by(|&a, &b| rows[a].3.total_cmp(&rows[b].3));
        order.reverse();
        let scores: Vec<f64> = order.iter().map(|&i| rows[i].3).collect();
        let entries = order
            .iter()
            .enumerate()
            .map(|(j, &i)| {
                let (row, positive, predicted, _) = rows[i];
                // A run closes where the next score differs, with `binary_clf_curve`'s `!=`.
                let end = scores.get(j + 1).is_none_or(|&next| next != scores[j]);
                let flag = |set: bool, f: u8| if set { f } else { 0 };
                let flags =
                    flag(positive, POSITIVE) | flag(predicted, PREDICTED) | flag(end, GROUP_END);
                Entry { row, flags }
            })
            .collect();
        Column { entries, scores }
    }

    /// Walk the column with a resample's row counts `counts` into `w`; with a threshold,
    /// also count the images at it (operating points).
    fn walk(&self, counts: &[u32], threshold: Option<f64>, w: &mut Walk) {
        if w.groups.len() < self.entries.len() {
            w.groups.resize(self.entries.len(), Group::default());
        }
        let groups = &mut w.groups[..];
        let (mut positives, mut total, mut predicted, mut predicted_positives) = (0, 0, 0, 0);
        let (mut len, mut closed, mut last) = (0usize, 0usize, 0usize);
        // Branch-free: whether a row is drawn is as good as random.
        for (j, e) in self.entries.iter().enumerate() {
            let c = counts[e.row as usize] as usize;
            let positive = usize::from(e.flags & POSITIVE != 0);
            let pred = usize::from(e.flags & PREDICTED != 0);
            total += c;
            positives += c * positive;
            predicted += c * pred;
            predicted_positives += c * positive * pred;
            last = if c > 0 { j } else { last };
            // Written at every entry; kept (len moves on) at the end of a run of equal scores
            // that holds a drawn row. len <= j here, so the slot exists.
            groups[len] = Group {
                positives,
                total,
                last,
            };
            let end = e.flags & GROUP_END != 0;
            len += usize::from(end & (total > closed));
            closed = if end { total } else { closed };
        }
        w.len = len;
        w.positives = positives;
        w.total = total;
        w.predicted = predicted;
        w.predicted_positives = predicted_positives;
        (w.tp_at, w.tn_at) = (0, 0);
        if let Some(t) = threshold {
            for (e, &s) in self.entries.iter().zip(&self.scores) {
                let c = counts[e.row as usize] as usize;
                let positive = e.flags & POSITIVE != 0;
                if positive && s >= t {
                    w.tp_at += c;
                } else if !positive && s < t {
                    w.tn_at += c;
                }
            }
        }
    }

    /// `binary_clf_curve` (unweighted) of the walked resample, thresholds included: the
    /// operating points' curve.
    fn curve(&self, w: &Walk) -> ClfCurve {
        let groups = w.groups();
        let mut c = ClfCurve {
            fps: Vec::with_capacity(groups.len()),
            tps: Vec::with_capacity(groups.len()),
            thresholds: Vec::with_capacity(groups.len()),
        };
        for g in groups {
            let (fp, tp) = point(g, None);
            c.fps.push(fp);
            c.tps.push(tp);
            // The run's last row in the resample's order (equal scores; -0.0 and 0.0 alike
            // sort as there).
            c.thresholds.push(self.scores[g.last]);
        }
        c
    }
}

/// A run of equal scores that holds a drawn row: positives and rows drawn from the highest
/// score down to it, and its last drawn entry.
#[derive(Debug, Clone, Copy, Default)]
struct Group {
    positives: usize,
    total: usize,
    last: usize,
}

/// `binary_clf_curve`'s (fps, tps) at a group: unweighted (tps += 1.0 per positive is the
/// integer itself, fps = (rank + 1) - tps), or the running sums of the multi-label ROC-AUC's
/// weights (`sums`).
#[inline]
fn point(g: &Group, sums: Option<&WeightSums>) -> (f64, f64) {
    match sums {
        None => {
            let tp = g.positives as f64;
            (g.total as f64 - tp, tp)
        }
        Some(s) => (
            s.negative.sum(g.total - g.positives),
            s.positive.sum(g.positives),
        ),
    }
}

/// A column walked with a resample's counts (reused from column to column).
#[derive(Debug, Default)]
struct Walk {
    /// The groups are `groups[..len]`; the rest is scratch.
    groups: Vec<Group>,
    len: usize,
    positives: usize,
    total: usize,
    predicted: usize,
    predicted_positives: usize,
    /// With a threshold: positives at or above it, negatives below.
    tp_at: usize,
    tn_at: usize,
}

impl Walk {
    fn groups(&self) -> &[Group] {
        &self.groups[..self.len]
    }

    fn negatives(&self) -> usize {
        self.total - self.positives
    }

    fn two_sided(&self) -> bool {
        self.positives > 0 && self.negatives() > 0
    }

    fn at(&self, threshold: Option<f64>) -> Option<AtThreshold> {
        threshold.map(|_| AtThreshold {
            tp: self.tp_at,
            tn: self.tn_at,
            positives: self.positives,
            total: self.total,
        })
    }
}

/// Buffers of the ROC-AUC (reused): the curve's points and the ROC points kept.
#[derive(Debug, Default)]
struct Scratch {
    points: Vec<(f64, f64)>,
    fpr: Vec<f64>,
    tpr: Vec<f64>,
}

/// The multi-label ROC-AUC's running sums of a positive's and a negative's weight.
#[derive(Debug, Clone)]
struct WeightSums {
    positive: RepeatedSums,
    negative: RepeatedSums,
}

/// `w + w + ... + w` (m times) added from 0.0 one at a time, as `binary_clf_curve` accumulates
/// the rows of a class, tabulated for m up to the number of images (a resample's size).
#[derive(Debug, Clone)]
struct RepeatedSums {
    w: f64,
    table: Vec<f64>,
}

impl RepeatedSums {
    fn new(w: f64, n: usize) -> RepeatedSums {
        let mut table = Vec::with_capacity(n + 1);
        let mut s = 0.0f64;
        table.push(s);
        for _ in 0..n {
            s += w;
            table.push(s);
        }
        RepeatedSums { w, table }
    }

    #[inline]
    fn sum(&self, m: usize) -> f64 {
        match self.table.get(m) {
            Some(&s) => s,
            None => self.beyond(m),
        }
    }

    /// More rows than the table holds (a longer resample): go on adding.
    #[cold]
    fn beyond(&self, m: usize) -> f64 {
        let last = self.table.len() - 1;
        (last..m).fold(self.table[last], |s, _| s + self.w)
    }
}

/// The binary ROC-AUC of a walked column (`binary_roc_auc`, unweighted or weighted); None
/// without a positive or a negative. The same points, in the same order, go through
/// `roc_of_curve`'s keep rule and divisions and `trapezoid_area`.
fn roc_auc(w: &Walk, sums: Option<&WeightSums>, s: &mut Scratch) -> Option<f64> {
    if !w.two_sided() {
        return None;
    }
    let groups = w.groups();
    let n = groups.len();
    s.points.clear();
    s.points.extend(groups.iter().map(|g| point(g, sums)));
    let pts = &s.points;
    let (fp_total, tp_total) = pts[n - 1];
    s.fpr.clear();
    s.tpr.clear();
    s.fpr.push(0.0);
    s.tpr.push(0.0);
    for i in 0..n {
        if keeps_point(|j| pts[j].0, |j| pts[j].1, n, i) {
            s.fpr.push(pts[i].0 / fp_total);
            s.tpr.push(pts[i].1 / tp_total);
        }
    }
    Some(trapezoid_area(&s.fpr, &s.tpr))
}

/// `average_precision` of a walked column: the same terms in the same order.
fn average_precision(w: &Walk) -> f64 {
    let groups = w.groups();
    let Some(last) = groups.last() else {
        return 0.0;
    };
    average_precision_of(groups.iter().map(|g| point(g, None)), last.positives as f64)
}

/// The operating points of a walked column (`operating::test_points`).
fn operating_points(col: &Column, w: &Walk, threshold: Option<f64>) -> [f64; 6] {
    if !w.two_sided() {
        return [f64::NAN; 6];
    }
    let roc = roc_of_curve(&col.curve(w), false);
    operating::points_of(&roc, w.at(threshold))
}

#[derive(Debug, Clone)]
enum Kind {
    Multiclass {
        truth: Vec<usize>,
        preds: Vec<usize>,
        /// Rows whose probabilities do not sum to 1: sklearn refuses a ROC-AUC with one.
        not_probabilities: Vec<u32>,
        /// Two classes: class 1's probability, class 1 positive (the ROC-AUC's and the
        /// operating points' column).
        binary: Option<Column>,
        /// More classes: per pair (a, b), a < b in sklearn's order, the columns of a's and of
        /// b's probability over the rows of either class, a (b) positive.
        pairs: Vec<(Column, Column)>,
    },
    Multilabel {
        /// Each label over its known rows.
        labels: Vec<Column>,
        /// Per row: None without a known label (not judged by subset accuracy), else whether
        /// every known label is predicted right.
        exact: Vec<Option<bool>>,
        sums: WeightSums,
    },
}

/// Test predictions prepared for bootstrap resamples (see the module docs).
#[derive(Debug, Clone)]
pub struct Presorted {
    k: usize,
    n: usize,
    kind: Kind,
}

impl Presorted {
    /// Prepare `data`; an error where its metrics cannot be computed at all.
    pub fn new(data: &Data) -> Result<Presorted> {
        // The definition's input checks (probabilities finite, labels in range...): a resample
        // of valid data is valid.
        data.metrics()?;
        let (k, n) = (data.k, data.n());
        let p = |i: usize, c: usize| data.probs[i * k + c];
        let kind = match &data.truth {
            Truth::Multiclass(y) => {
                let column = |rows: &[usize], c: usize| {
                    Column::new(rows.iter().map(|&i| (i as u32, y[i] == c, false, p(i, c))))
                };
                let all: Vec<usize> = (0..n).collect();
                let mut pairs = vec![];
                if k > 2 {
                    for a in 0..k {
                        for b in (a + 1)..k {
                            let rows: Vec<usize> = all
                                .iter()
                                .copied()
                                .filter(|&i| y[i] == a || y[i] == b)
                                .collect();
                            pairs.push((column(&rows, a), column(&rows, b)));
                        }
                    }
                }
                Kind::Multiclass {
                    truth: y.clone(),
                    preds: argmax_rows(&data.probs, k),
                    not_probabilities: data
                        .probs
                        .chunks(k)
                        .enumerate()
                        .filter(|(_, row)| !sums_to_one(row))
                        .map(|(i, _)| i as u32)
                        .collect(),
                    binary: (k == 2).then(|| column(&all, 1)),
                    pairs,
                }
            }
            Truth::Multilabel(t) => {
                let labels = (0..k)
                    .map(|l| {
                        Column::new((0..n).filter(|&i| !t[i * k + l].is_nan()).map(|i| {
                            let s = p(i, l);
                            (i as u32, t[i * k + l] == 1.0, s > THRESHOLD, s)
                        }))
                    })
                    .collect();
                let exact = subset_right(t, &data.probs, k);
                Kind::Multilabel {
                    labels,
                    exact,
                    sums: WeightSums {
                        positive: RepeatedSums::new(AUC_WEIGHT_POSITIVE, n),
                        negative: RepeatedSums::new(AUC_WEIGHT_NEGATIVE, n),
                    },
                }
            }
        };
        Ok(Presorted { k, n, kind })
    }

    /// How many times resample `rows` draws each row.
    pub fn counts(&self, rows: &[u32]) -> Vec<u32> {
        let mut counts = vec![0u32; self.n];
        rows.iter().for_each(|&r| counts[r as usize] += 1);
        counts
    }

    /// `data.select(rows).resample_metrics(two_sided)` of the resample with row counts
    /// `counts` ([`Presorted::counts`]).
    pub fn resample_metrics(&self, counts: &[u32], two_sided: &[bool]) -> Vec<f64> {
        self.evaluate(counts, two_sided, None)
    }

    /// `data.select(rows).resample_values(two_sided, thresholds)`: the metrics, then each
    /// binary problem's operating points.
    pub fn resample_values(
        &self,
        counts: &[u32],
        two_sided: &[bool],
        thresholds: &[Option<f64>],
    ) -> Vec<f64> {
        self.evaluate(counts, two_sided, Some(thresholds))
    }

    fn evaluate(
        &self,
        counts: &[u32],
        two_sided: &[bool],
        thresholds: Option<&[Option<f64>]>,
    ) -> Vec<f64> {
        let k = self.k;
        // The binary problems with operating points take their thresholds in order.
        let threshold = |b: usize| thresholds.and_then(|t| t.get(b).copied().flatten());
        let wants_points = |b: usize| thresholds.is_some_and(|t| b < t.len());
        let mut w = Walk::default();
        let mut scratch = Scratch::default();
        match &self.kind {
            Kind::Multiclass {
                truth,
                preds,
                not_probabilities,
                binary,
                pairs,
            } => {
                let mut cm = vec![vec![0u64; k]; k];
                for (r, &c) in counts.iter().enumerate() {
                    if c > 0 {
                        cm[truth[r]][preds[r]] += u64::from(c);
                    }
                }
                let mut points = vec![];
                let auc = match binary {
                    Some(col) => {
                        col.walk(counts, threshold(0), &mut w);
                        if wants_points(0) {
                            points.extend(operating_points(col, &w, threshold(0)));
                        }
                        roc_auc(&w, None, &mut scratch)
                    }
                    None => {
                        // `ovo_roc_auc`: every class present, every row a probability.
                        let present = cm.iter().all(|row| row.iter().any(|&c| c > 0));
                        let probabilities =
                            not_probabilities.iter().all(|&r| counts[r as usize] == 0);
                        let mut side = |col: &Column| {
                            col.walk(counts, None, &mut w);
                            roc_auc(&w, None, &mut scratch)
                        };
                        if present && probabilities {
                            pairs
                                .iter()
                                .map(|(a, b)| Some((side(a)?, side(b)?)))
                                .collect::<Option<Vec<(f64, f64)>>>()
                                .map(|p| ovo_mean(&p))
                        } else {
                            None
                        }
                    }
                };
                let m = Metrics::Multiclass(MulticlassMetrics::from_confusion(&cm, auc));
                let mut values = super::resample_entries(&m, false);
                values.extend(points);
                values
            }
            Kind::Multilabel {
                labels,
                exact,
                sums,
            } => {
                let mut ap = Vec::with_capacity(k);
                let mut auc = Vec::with_capacity(k);
                let mut label_counts = Vec::with_capacity(k);
                let mut lost = false;
                let mut points = vec![];
                for (l, col) in labels.iter().enumerate() {
                    let t = threshold(l);
                    col.walk(counts, t, &mut w);
                    ap.push(average_precision(&w));
                    // `label_roc_auc`: 0.5 without a positive or without a negative.
                    auc.push(roc_auc(&w, Some(sums), &mut scratch).unwrap_or(0.5));
                    label_counts.push(LabelCounts {
                        tp: w.predicted_positives,
                        true_sum: w.positives,
                        pred_sum: w.predicted,
                    });
                    lost |= two_sided.get(l).copied().unwrap_or(false) && !w.two_sided();
                    if wants_points(l) {
                        points.extend(operating_points(col, &w, t));
                    }
                }
                let (mut judged, mut right) = (0usize, 0usize);
                for (&c, e) in counts.iter().zip(exact) {
                    if let Some(ok) = e {
                        judged += c as usize;
                        if *ok {
                            right += c as usize;
                        }
                    }
                }
                let m = Metrics::Multilabel(MultilabelMetrics::from_parts(
                    &ap,
                    &auc,
                    &label_counts,
                    right,
                    judged,
                ));
                let mut values = super::resample_entries(&m, lost);
                values.extend(points);
                values
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::bootstrap::{Resampler, SplitMix64};
    use super::*;

    fn uniform(rng: &mut SplitMix64) -> f64 {
        (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Probabilities in whole percent (many ties), rows summing to 1 as softmax rows do,
    /// leaning to the true class; `rare` rows of the last class only, and none of it when
    /// `absent`.
    fn multiclass(rng: &mut SplitMix64, n: usize, k: usize, rare: usize, absent: bool) -> Data {
        let mut y = vec![];
        let mut probs = vec![];
        for i in 0..n {
            let c = if i < rare {
                k - 1
            } else {
                rng.below(k as u64 - 1) as usize
            };
            let c = if absent { c.min(k - 2) } else { c };
            let w: Vec<f64> = (0..k)
                .map(|j| uniform(rng) + if j == c { 0.8 } else { 0.0 })
                .collect();
            let total: f64 = w.iter().sum();
            let mut pct: Vec<u32> = w.iter().map(|v| (100.0 * v / total) as u32).collect();
            let short = 100 - pct.iter().sum::<u32>();
            pct[c] += short;
            probs.extend(pct.iter().map(|&p| f64::from(p) / 100.0));
            y.push(c);
        }
        Data::new(k, Truth::Multiclass(y), probs).unwrap()
    }

    /// Scores rounded to 2 decimals; label 1 rare (3 positives), label 2 without positives,
    /// label 3 without negatives, label 4 often unknown, label 5 never known, two rows with no
    /// known label.
    fn multilabel(rng: &mut SplitMix64, n: usize) -> Data {
        let l = 6;
        let mut t = vec![];
        let mut probs = vec![];
        for i in 0..n {
            for j in 0..l {
                let pos = match j {
                    1 => i % (n / 3) == 7,
                    2 => false,
                    3 => true,
                    _ => uniform(rng) < 0.3,
                };
                let unknown = match j {
                    4 => uniform(rng) < 0.3,
                    5 => true,
                    _ => uniform(rng) < 0.05 || i < 2,
                };
                let s = (0.6 * uniform(rng) + if pos { 0.3 } else { 0.0 }).min(1.0);
                probs.push((s * 100.0).round() / 100.0);
                t.push(if unknown {
                    f64::NAN
                } else {
                    f64::from(u8::from(pos))
                });
            }
        }
        Data::new(l, Truth::Multilabel(t), probs).unwrap()
    }

    fn bits(v: &[f64]) -> Vec<u64> {
        v.iter().map(|x| x.to_bits()).collect()
    }

    /// Every resample's values (the whole data set first), fast and by the definition,
    /// bitwise equal; returns them.
    fn check(data: &Data, resampler: &Resampler, thresholds: &[Option<f64>]) -> Vec<Vec<f64>> {
        let fast = Presorted::new(data).unwrap();
        let two_sided = data.two_sided_labels();
        let n = data.n() as u32;
        let mut all = vec![];
        // The whole data set (every row once), then the resamples.
        let identity: Vec<u32> = (0..n).collect();
        for r in 0..=resampler.resamples {
            let rows = if r == 0 {
                identity.clone()
            } else {
                resampler.indices(r - 1)
            };
            let counts = fast.counts(&rows);
            let selected = data.select(&rows);
            let want = selected.resample_metrics(&two_sided).unwrap();
            let got = fast.resample_metrics(&counts, &two_sided);
            assert_eq!(bits(&got), bits(&want), "resample {r}: {got:?} vs {want:?}");
            let want = selected.resample_values(&two_sided, thresholds).unwrap();
            let got = fast.resample_values(&counts, &two_sided, thresholds);
            assert_eq!(bits(&got), bits(&want), "resample {r}: {got:?} vs {want:?}");
            all.push(got);
        }
        all
    }

    fn ties(data: &Data) -> usize {
        let mut s: Vec<u64> = data.probs.iter().map(|p| p.to_bits()).collect();
        s.sort_unstable();
        s.dedup();
        data.probs.len() - s.len()
    }

    /// Multiclass with 2, 3 and 5 classes, resampled within each class (as `statistics.json`)
    /// and of whole rows (so that a rare class is absent from some resamples), with a class
    /// absent from the test set and with a row that is not a probability.
    #[test]
    fn multiclass_resamples_equal_the_definition_bitwise() {
        let mut rng = SplitMix64::new(3);
        let roc_auc = 6;
        for (k, rare, absent) in [(2, 3, false), (3, 2, false), (5, 3, false), (5, 0, true)] {
            let data = multiclass(&mut rng, 240, k, rare, absent);
            assert!(ties(&data) > data.probs.len() / 2);
            // Two classes: operating points at a threshold that is a score itself.
            let thresholds: &[Option<f64>] = if k == 2 { &[Some(0.5)] } else { &[] };
            check(&data, &data.resampler(150, 7), thresholds);
            check(&data, &Resampler::rows(data.n(), 150, 9), thresholds);
            if k == 2 {
                check(&data, &data.resampler(50, 1), &[None]);
            }
        }
        // A class lost by a whole-row resample: its ROC-AUC the stand-in 0.5.
        let data = multiclass(&mut rng, 240, 3, 2, false);
        let v = check(&data, &Resampler::rows(data.n(), 300, 2), &[]);
        let stand_in = v.iter().filter(|v| v[roc_auc] == 0.5).count();
        assert!(stand_in > 5 && stand_in < 250, "{stand_in}");
        // A row that does not sum to 1: no ROC-AUC while it is drawn.
        let mut data = multiclass(&mut rng, 240, 3, 20, false);
        data.probs[30] += 0.01;
        let v = check(&data, &Resampler::rows(data.n(), 300, 4), &[]);
        let stand_in = v.iter().filter(|v| v[roc_auc] == 0.5).count();
        assert!(stand_in > 5 && stand_in < 295, "{stand_in}");
    }

    /// Multi-label with unknown targets, a rare label (lost by some resamples: the averages
    /// undefined), labels without positives, without negatives or never known, and operating
    /// points at thresholds that are scores themselves.
    #[test]
    fn multilabel_resamples_equal_the_definition_bitwise() {
        let mut rng = SplitMix64::new(5);
        let data = multilabel(&mut rng, 300);
        assert!(ties(&data) > data.probs.len() / 2);
        assert_eq!(
            data.two_sided_labels(),
            [true, true, false, false, true, false]
        );
        let thresholds = [
            Some(0.5),
            Some(0.31),
            None,
            Some(0.5),
            Some(0.62),
            Some(0.5),
        ];
        let v = check(&data, &data.resampler(300, 11), &thresholds);
        let lost = v.iter().filter(|v| v[1].is_nan()).count();
        assert!(lost > 5 && lost < 250, "{lost}");
        // The comparison's resamples (metrics only) of the same data with fewer thresholds.
        check(&data, &data.resampler(100, 12), &thresholds[..2]);
    }
}
