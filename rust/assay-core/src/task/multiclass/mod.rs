//! The multiclass task family: its per-slice state, the row kernel, the merge rule of its
//! blocks and its finalizers (the engine calls these through `family` and `engine`).
//!
//! A row is a label `y` in `0..K` and a probability vector `p` of length K. Its predicted
//! class is the argmax of `p` (ties to the lowest index). A slice keeps weighted sums that add
//! up: per class the true positives, the label weight and the predicted weight (every
//! confusion-based metric is a function of those three vectors: accuracy, the macro, micro and
//! weighted averages, Cohen's kappa and the multiclass MCC), the log loss and Brier sums, the
//! rows whose label is among the `k` highest probabilities, and the uniform calibration bins of
//! the top-label and classwise calibration errors. Outside the replicate slots it also keeps the
//! per-class row counts and the K x K confusion matrix (counts and weights), for
//! `Report.per_class()` and `Report.confusion()`.
//!
//! Conventions: macro averages run over the classes **present in the slice** (label weight
//! above 0), and `n_classes_present` says how many; a class never predicted has precision 0
//! inside a macro average (scikit-learn's `zero_division=0`) and a null precision in the
//! per-class table. Micro averages pool the present classes' counts (scikit-learn with
//! `labels=` the present classes). Log loss clips probabilities to `[eps, 1 - eps]`
//! (`eps = 2^-52`); the Brier score sums the squared errors over the classes and halves them
//! when K = 2, as scikit-learn's `brier_score_loss`, so that K = 2 equals the binary score.

pub mod family;

pub use family::MulticlassSpec;

use std::collections::HashMap;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Float64Type};
use arrow_array::{Array, ArrayRef};
use arrow_buffer::NullBuffer;
use arrow_schema::DataType;

use crate::metrics::{in_range, Metric, Value};
use crate::sorted::Unweighted;
use crate::state::{SliceStates, StateShape};

/// The most classes a job may have.
pub const MAX_CLASSES: usize = 1 << 16;

pub const NO_WEIGHT: &str = "undefined: the slice has no rows of positive weight";
pub const ONE_PRESENT: &str = "undefined: the slice has rows of one class only";
pub const KAPPA_UNDEFINED: &str =
    "undefined: the chance agreement is 1 (labels and predictions are one and the same class)";
pub const MCC_UNDEFINED: &str =
    "undefined: the labels or the predictions are all one class (a zero variance)";
pub const NO_COUNT_INTERVAL: &str = "no interval: n_classes_present is a count of the slice";
pub const NO_ANALYTIC_MULTICLASS: &str =
    "no analytic interval for multiclass metrics: use bootstrap=B";

/// Where each field of a slice's block lies (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Layout {
    pub k: usize,
    pub tops: usize,
    pub bins: usize,
    pub classwise: bool,
    /// `auc="binned"`: the histogram bins (0: none), whether each class's histograms split
    /// the rows by label (for the one-vs-one pairs; else the rest and the class), and so the
    /// labels per class (K or 2).
    pub auc_bins: usize,
    pub auc_pairs: bool,
    pub auc_labels: usize,
}

const W: usize = 0;
const LL: usize = 1;
const BR: usize = 2;
const TOP: usize = 3;

impl Layout {
    pub fn of(shape: &StateShape) -> Layout {
        Layout {
            k: shape.classes,
            tops: shape.top_k,
            bins: shape.ece_bins,
            classwise: shape.classwise,
            auc_bins: shape.auc_bins,
            auc_pairs: shape.auc_pairs,
            auc_labels: if shape.auc_pairs { shape.classes } else { 2 },
        }
    }

    fn tp(&self) -> usize {
        TOP + self.tops
    }
    fn label_w(&self) -> usize {
        self.tp() + self.k
    }
    fn pred_w(&self) -> usize {
        self.label_w() + self.k
    }
    fn ece(&self) -> usize {
        self.pred_w() + self.k
    }
    fn classwise_at(&self) -> usize {
        self.ece() + 3 * self.bins
    }

    /// Fields of one replicate slot (and the first fields of the block).
    pub fn fields(&self) -> usize {
        self.classwise_at()
            + if self.classwise {
                3 * self.k * self.bins
            } else {
                0
            }
    }

    fn support(&self) -> usize {
        self.fields()
    }
    fn confusion_w(&self) -> usize {
        self.support() + self.k
    }
    fn confusion_n(&self) -> usize {
        self.confusion_w() + self.k * self.k
    }

    fn auc_hist(&self) -> usize {
        self.confusion_n() + self.k * self.k
    }

    /// The histogram cell of class `c`'s probability bin `bin` among the rows of label `y`.
    #[inline]
    fn auc_cell(&self, c: usize, y: usize, bin: usize) -> usize {
        let lab = if self.auc_pairs { y } else { (c == y) as usize };
        self.auc_hist() + (c * self.auc_labels + lab) * self.auc_bins + bin
    }

    /// Fields of a slice's block: the slot fields, the per-class row counts, the confusion
    /// matrix (weights, then counts; `[actual * K + predicted]`) and, with `auc="binned"`,
    /// the ROC-AUC histograms (weights; `[(class * labels + label) * bins + bin]`, `label`
    /// 1 for the class and 0 for the rest without `auc_pairs`).
    pub fn block_len(&self) -> usize {
        self.auc_hist() + self.k * self.auc_labels * self.auc_bins
    }
}

/// Merges block `b` into `a`: every field is a sum.
pub fn merge_block(a: &mut [f64], b: &[f64]) {
    for (x, y) in a.iter_mut().zip(b) {
        *x += y;
    }
}

/// The terms of one row, computed once for every slice spec.
#[derive(Clone, Copy, Debug)]
pub struct RowTerms {
    pub y: usize,
    pub pred: usize,
    /// -log(clip(p_y)).
    pub ll: f64,
    /// Sum over the classes of (p_k - [y = k])^2 (halved when K = 2).
    pub brier: f64,
    /// Classes ranked above the label (higher probability, or equal and a lower index).
    pub ahead: usize,
    /// The top probability and its calibration bin.
    pub conf: f64,
    pub bin: usize,
}

/// The terms of a row with label `y` and probabilities `p` (validated: finite, in [0, 1]).
pub fn row_terms(p: &[f64], y: usize, edges: &[f64]) -> RowTerms {
    let k = p.len();
    let mut pred = 0;
    let mut best = p[0];
    let mut brier = 0.0;
    let py = p[y];
    let mut ahead = 0;
    for (c, &v) in p.iter().enumerate() {
        if v > best {
            best = v;
            pred = c;
        }
        let d = v - (c == y) as u8 as f64;
        brier += d * d;
        ahead += (v > py || (v == py && c < y)) as usize;
    }
    if k == 2 {
        brier *= 0.5;
    }
    let eps = f64::EPSILON;
    RowTerms {
        y,
        pred,
        ll: -py.clamp(eps, 1.0 - eps).ln(),
        brier,
        ahead,
        conf: best,
        bin: if edges.len() > 1 {
            crate::reliability::uniform_bin(edges, best)
        } else {
            0
        },
    }
}

/// What one row adds: its terms, probabilities and weight (the uniform edges of the
/// calibration bins, the top-k values).
pub struct RowInput<'a> {
    pub t: RowTerms,
    pub p: &'a [f64],
    pub w: f64,
    /// The row's replicate weights (its weight times each slot's Poisson draw).
    pub kw: &'a [f64],
}

/// The job's constants of the kernel.
pub struct Kernel<'a> {
    pub layout: Layout,
    pub ks: &'a [usize],
    pub edges: &'a [f64],
    pub slots: usize,
}

impl Kernel<'_> {
    /// Adds one row to slice `id` of `st`.
    #[inline]
    pub fn add(&self, st: &mut SliceStates, id: usize, r: &RowInput) {
        let l = &self.layout;
        let c = &mut st.counts[id];
        c.n += 1;
        c.w += r.w;
        let blen = l.block_len();
        let f = &mut st.fam[id * blen..(id + 1) * blen];
        let t = &r.t;
        let w = r.w;
        let hit = (t.pred == t.y) as u8 as f64;
        f[W] += w;
        f[LL] += w * t.ll;
        f[BR] += w * t.brier;
        for (i, kv) in self.ks.iter().enumerate() {
            if t.ahead < *kv {
                f[TOP + i] += w;
            }
        }
        f[l.tp() + t.y] += w * hit;
        f[l.label_w() + t.y] += w;
        f[l.pred_w() + t.pred] += w;
        if l.bins > 0 {
            let b = l.ece() + 3 * t.bin;
            f[b] += w;
            f[b + 1] += w * t.conf;
            f[b + 2] += w * hit;
            if l.classwise {
                let at = l.classwise_at();
                for (cl, &v) in r.p.iter().enumerate() {
                    let b = at + 3 * (cl * l.bins + crate::reliability::uniform_bin(self.edges, v));
                    f[b] += w;
                    f[b + 1] += w * v;
                    f[b + 2] += w * (cl == t.y) as u8 as f64;
                }
            }
        }
        f[l.support() + t.y] += 1.0;
        f[l.confusion_w() + t.y * l.k + t.pred] += w;
        f[l.confusion_n() + t.y * l.k + t.pred] += 1.0;
        if l.auc_bins > 0 {
            // (The binary binned rule: equal-width bins over [0, 1], the top one closed.)
            let b = l.auc_bins;
            for (c, &v) in r.p.iter().enumerate() {
                f[l.auc_cell(c, t.y, ((v * b as f64) as usize).min(b - 1))] += w;
            }
        }
        let slots = self.slots;
        if slots == 0 {
            return;
        }
        let n = l.fields();
        let reps = &mut st.fam_reps[id * n * slots..(id + 1) * n * slots];
        let mut add = |field: usize, x: f64| {
            let dst = &mut reps[field * slots..(field + 1) * slots];
            for (d, kw) in dst.iter_mut().zip(r.kw) {
                *d += kw * x;
            }
        };
        add(W, 1.0);
        add(LL, t.ll);
        add(BR, t.brier);
        for (i, kv) in self.ks.iter().enumerate() {
            if t.ahead < *kv {
                add(TOP + i, 1.0);
            }
        }
        if hit > 0.0 {
            add(l.tp() + t.y, 1.0);
        }
        add(l.label_w() + t.y, 1.0);
        add(l.pred_w() + t.pred, 1.0);
        if l.bins > 0 {
            let b = l.ece() + 3 * t.bin;
            add(b, 1.0);
            add(b + 1, t.conf);
            add(b + 2, hit);
            if l.classwise {
                let at = l.classwise_at();
                for (cl, &v) in r.p.iter().enumerate() {
                    let b = at + 3 * (cl * l.bins + crate::reliability::uniform_bin(self.edges, v));
                    add(b, 1.0);
                    add(b + 1, v);
                    if cl == t.y {
                        add(b + 2, 1.0);
                    }
                }
            }
        }
    }
}

/// The quantile-binned calibration errors of every slice of every spec (`[spec][id]`: the
/// top-label and the classwise one, None where not asked or the slice is empty), from the kept
/// rows of a job (the two routes of [`aucs`]). They are the binary calibration module's
/// quantile bins (`docs/calibration.md`): top-label, of each row's top probability against
/// whether its argmax (ties to the lowest index) is its label; classwise, of each class's
/// probability against whether the label is that class, averaged over the K classes.
pub fn quantile_eces(
    rows: &crate::state::RankRows,
    n_ids: &[usize],
    k: usize,
    replay: Option<&ReplayProbs>,
    n_bins: usize,
    (top, classwise): (bool, bool),
) -> Vec<Vec<[Option<f64>; 2]>> {
    use crate::state::RankRows;
    let stride = if replay.is_some() { 1 } else { k.max(1) };
    let n = rows.scores.len() / stride;
    let replay_columns = replay.map_or_else(Vec::new, ReplayProbs::columns_of);
    let replayed = replay.map(|rp| Replayed::new(rp, &replay_columns, &rows.scores, k));
    let labels = kept_labels(rows, k, replayed.as_ref());
    let each = |c0: usize, c1: usize, f: &mut dyn FnMut(usize, usize, f64)| {
        each_kept(
            &rows.scores,
            k,
            replayed.as_ref(),
            c0,
            c1,
            &mut |r, o, x| f(r, o, x),
        )
    };
    // The rows' weights and slice ids, shared by every binary view of them.
    let mut view = RankRows {
        weights: if rows.weights.is_empty() {
            crate::state::Col::from(Vec::new())
        } else {
            (0..n).map(|r| rows.weights[r * stride]).collect()
        },
        ids: rows
            .ids
            .iter()
            .map(|ids| (0..n).map(|r| ids[r * stride]).collect())
            .collect(),
        ..RankRows::default()
    };
    // The calibration error of every slice of the binary rows (scores, labels).
    let mut ece_of = |scores: Vec<f64>, labels: Vec<u8>| -> Vec<Vec<Option<f64>>> {
        (view.scores, view.labels) = (scores.into(), labels.into());
        crate::reliability::quantile_bin_states(&view, n_ids, n_bins, None)
            .iter()
            .map(|spec| {
                spec.iter()
                    .map(|(_, bins)| crate::reliability::bin_metric(Metric::Ece, bins).ok())
                    .collect()
            })
            .collect()
    };
    let mut out: Vec<Vec<[Option<f64>; 2]>> =
        n_ids.iter().map(|ids| vec![[None, None]; *ids]).collect();
    if top && !crate::runtime::interrupted() {
        let (mut conf, mut pred) = (vec![f64::NEG_INFINITY; n], vec![0u32; n]);
        each(0, k, &mut |r, c, x| {
            if x > conf[r] {
                (conf[r], pred[r]) = (x, c as u32);
            }
        });
        let hit = pred
            .iter()
            .zip(&labels)
            .map(|(p, y)| (p == y) as u8)
            .collect();
        for (o, e) in out.iter_mut().zip(ece_of(conf, hit)) {
            for (o, e) in o.iter_mut().zip(e) {
                o[0] = e;
            }
        }
    }
    if classwise {
        let mut sums: Vec<Vec<Option<f64>>> =
            n_ids.iter().map(|ids| vec![Some(0.0); *ids]).collect();
        for c in 0..k {
            if crate::runtime::interrupted() {
                break;
            }
            let mut p = vec![0.0; n];
            each(c, c + 1, &mut |r, _, x| p[r] = x);
            let y = labels.iter().map(|y| (*y as usize == c) as u8).collect();
            for (s, e) in sums.iter_mut().zip(ece_of(p, y)) {
                for (s, e) in s.iter_mut().zip(e) {
                    *s = s.zip(e).map(|(a, b)| a + b);
                }
            }
        }
        for (o, s) in out.iter_mut().zip(sums) {
            for (o, s) in o.iter_mut().zip(s) {
                o[1] = s.map(|x| x / k as f64);
            }
        }
    }
    out
}

/// A slice's fields (its block, or one replicate slot's gathered fields), read as metrics.
pub struct Block<'a> {
    pub f: &'a [f64],
    pub layout: Layout,
    pub ks: &'a [usize],
}

impl Block<'_> {
    fn w(&self) -> f64 {
        self.f[W]
    }

    fn tp(&self, c: usize) -> f64 {
        self.f[self.layout.tp() + c]
    }

    fn label_w(&self, c: usize) -> f64 {
        self.f[self.layout.label_w() + c]
    }

    fn pred_w(&self, c: usize) -> f64 {
        self.f[self.layout.pred_w() + c]
    }

    /// The classes with label weight above 0.
    pub fn present(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.layout.k).filter(|c| self.label_w(*c) > 0.0)
    }

    fn f1(&self, c: usize) -> f64 {
        2.0 * self.tp(c) / (self.label_w(c) + self.pred_w(c))
    }

    /// Mean of `g` over the present classes.
    fn macro_of(&self, g: impl Fn(usize) -> f64) -> Value {
        let (mut s, mut n) = (0.0, 0usize);
        for c in self.present() {
            s += g(c);
            n += 1;
        }
        in_range(s / n as f64, 0.0, 1.0)
    }

    /// An ECE: sum over bins of |sum label - sum probability| over the slice's weight.
    fn ece_sum(&self, at: usize, bins: usize) -> f64 {
        (0..bins)
            .map(|b| (self.f[at + 3 * b + 2] - self.f[at + 3 * b + 1]).abs())
            .sum()
    }

    pub fn value(&self, m: Metric) -> Value {
        use Metric::*;
        let w = self.w();
        if w.is_nan() || w <= 0.0 {
            return Err(NO_WEIGHT);
        }
        if !w.is_finite() {
            return Err(crate::metrics::NOT_REPRESENTABLE);
        }
        let l = &self.layout;
        let k = l.k;
        let tp_sum: f64 = (0..k).map(|c| self.tp(c)).sum();
        match m {
            McAccuracy => in_range(tp_sum / w, 0.0, 1.0),
            NClassesPresent => Ok(self.present().count() as f64),
            McBalancedAccuracy | MacroRecall => self.macro_of(|c| self.tp(c) / self.label_w(c)),
            MacroPrecision => self.macro_of(|c| {
                let p = self.pred_w(c);
                if p > 0.0 {
                    self.tp(c) / p
                } else {
                    0.0
                }
            }),
            MacroF1 => self.macro_of(|c| self.f1(c)),
            WeightedF1 => {
                let s: f64 = self.present().map(|c| self.label_w(c) * self.f1(c)).sum();
                in_range(s / w, 0.0, 1.0)
            }
            MicroF1 => {
                let pred: f64 = self.present().map(|c| self.pred_w(c)).sum();
                in_range(2.0 * tp_sum / (pred + w), 0.0, 1.0)
            }
            CohenKappa => {
                let pe: f64 = (0..k)
                    .map(|c| (self.label_w(c) / w) * (self.pred_w(c) / w))
                    .sum();
                let po = tp_sum / w;
                if 1.0 - pe <= 1e-15 || pe.is_nan() {
                    return Err(KAPPA_UNDEFINED);
                }
                in_range((po - pe) / (1.0 - pe), -1.0, 1.0)
            }
            McMcc => {
                // Gorodkin's R_K from the marginals, scaled by w^2 to stay in range.
                let (mut tt, mut pp, mut tpr) = (0.0, 0.0, 0.0);
                for c in 0..k {
                    let (t, p) = (self.label_w(c) / w, self.pred_w(c) / w);
                    tt += t * t;
                    pp += p * p;
                    tpr += t * p;
                }
                let cov = tp_sum / w - tpr;
                let (vt, vp) = (1.0 - tt, 1.0 - pp);
                if vt <= 1e-15 || vp <= 1e-15 || vt.is_nan() || vp.is_nan() {
                    return Err(MCC_UNDEFINED);
                }
                in_range(cov / (vt.sqrt() * vp.sqrt()), -1.0, 1.0)
            }
            McLogLoss => crate::metrics::finite(self.f[LL] / w),
            McBrier => loose(self.f[BR] / w, 2.0, 3.0 * SUM_TOLERANCE),
            TopK(kv) => match self.ks.iter().position(|x| *x == kv) {
                Some(i) => in_range(self.f[TOP + i] / w, 0.0, 1.0),
                None => unreachable!("top-k accuracy at a k the job did not keep"),
            },
            // (Quantile bins are built at finalization: `quantile_eces`.)
            EceTopLabel | EceClasswise if l.bins == 0 => {
                unreachable!("{} without the pass's uniform bins", m.name())
            }
            EceTopLabel => loose(self.ece_sum(l.ece(), l.bins) / w, 1.0, SUM_TOLERANCE),
            EceClasswise => {
                let at = l.classwise_at();
                let s: f64 = (0..k)
                    .map(|c| self.ece_sum(at + 3 * c * l.bins, l.bins))
                    .sum();
                loose(s / (w * k as f64), 1.0, SUM_TOLERANCE)
            }
            other => unreachable!("{} is not a multiclass metric", other.name()),
        }
    }
}

/// `x` in `[0, hi]`, where probabilities that sum to 1 only within [`SUM_TOLERANCE`] (used as
/// given) may carry it past `hi` by up to `slack`: such an excess becomes `hi`.
fn loose(x: f64, hi: f64, slack: f64) -> Value {
    if x > hi && x <= hi + slack {
        Ok(hi)
    } else {
        in_range(x, 0.0, hi)
    }
}

/// The values of `metrics` for one slice's block, and (with `iv`) their intervals; `keep`
/// receives each metric's replicate values (a comparison's paired differences read them).
/// `small`: the slice is below `min_slice_size`.
#[allow(clippy::too_many_arguments)]
pub fn slice_results(
    block: &[f64],
    reps: &[f64],
    layout: &Layout,
    ks: &[usize],
    auc: Option<&SliceAuc>,
    qece: Option<[Option<f64>; 2]>,
    metrics: &[Metric],
    iv: Option<&crate::bootstrap::IntervalSpec>,
    small: bool,
    mut keep: Option<&mut Vec<Vec<f64>>>,
) -> (Vec<Value>, Option<Vec<crate::bootstrap::Interval>>) {
    use crate::bootstrap::CiMethod;
    // The calibration errors of quantile bins (built at finalization; see `quantile_eces`).
    let quantile = |m: Metric| -> Option<Value> {
        let q = qece?;
        let v = match m {
            Metric::EceTopLabel => q[0],
            Metric::EceClasswise => q[1],
            _ => return None,
        };
        Some(v.map_or(Err(NO_WEIGHT), |x| loose(x, 1.0, SUM_TOLERANCE)))
    };
    let main = Block {
        f: block,
        layout: *layout,
        ks,
    };
    let values: Vec<Value> = metrics
        .iter()
        .map(|m| {
            if small {
                Err(crate::metrics::TOO_SMALL)
            } else if m.is_rank() {
                match auc {
                    Some(a) if block[W] > 0.0 => a.value(*m),
                    _ => Err(NO_WEIGHT),
                }
            } else if let Some(v) = quantile(*m) {
                v
            } else {
                main.value(*m)
            }
        })
        .collect();
    let Some(iv) = iv else {
        return (values, None);
    };
    let slots = iv.slots();
    let n = layout.fields();
    let slot_fields: Vec<Vec<f64>> = if iv.method == CiMethod::Analytic {
        Vec::new()
    } else {
        crate::task::slot_fields(reps, n, slots)
    };
    // Each slot's value of metric `m` (NaN where undefined).
    let replicates = |m: Metric| -> Vec<f64> {
        slot_fields
            .iter()
            .map(|f| {
                let b = Block {
                    f,
                    layout: *layout,
                    ks,
                };
                b.value(m).unwrap_or(f64::NAN)
            })
            .collect()
    };
    let mut intervals = Vec::with_capacity(metrics.len());
    for (m, v) in metrics.iter().zip(&values) {
        let mut kept = Vec::new();
        intervals.push(match *v {
            Err(why) => Err(why),
            Ok(_) if iv.method == CiMethod::Analytic => Err(NO_ANALYTIC_MULTICLASS),
            Ok(_) if quantile(*m).is_some() => {
                kept = vec![f64::NAN; slots];
                Err(crate::reliability::NO_REPLICATED_EDGES)
            }
            Ok(_) if *m == Metric::NClassesPresent => {
                // (Its replicate values serve a comparison's paired differences.)
                kept = replicates(*m);
                Err(NO_COUNT_INTERVAL)
            }
            Ok(estimate) if m.is_rank() => match auc {
                Some(a) if a.reps.len() == slots => {
                    kept = a.replicates(*m);
                    crate::intervals::from_replicates(iv, estimate, &kept, None)
                }
                _ => {
                    kept = vec![f64::NAN; slots];
                    Err(NO_AUC_INTERVAL)
                }
            },
            Ok(estimate) => {
                kept = replicates(*m);
                crate::intervals::from_replicates(iv, estimate, &kept, None)
            }
        });
        if let Some(k) = keep.as_deref_mut() {
            k.push(kept);
        }
    }
    (values, Some(intervals))
}

/// One class of one slice in `Report.per_class()`.
#[derive(Clone, Debug, PartialEq)]
pub struct ClassRow {
    pub class: usize,
    /// Rows whose label is the class, and their weight.
    pub support: f64,
    pub weight: f64,
    /// Weight of the rows predicted as the class.
    pub predicted: f64,
    pub precision: Option<f64>,
    pub recall: Option<f64>,
    pub f1: Option<f64>,
    /// The class's one-vs-rest ROC-AUC (jobs that compute the multiclass ROC-AUCs), and the
    /// bound on its error (`auc="sketch"`).
    pub roc_auc: Option<f64>,
    pub roc_auc_bound: Option<f64>,
    /// Why a value of the row is null (None: every value is defined).
    pub note: Option<&'static str>,
}

pub const CLASS_ABSENT: &str =
    "the class is absent from the slice: recall and f1 are 0/0 (the macro averages leave it out)";
pub const CLASS_NOT_PREDICTED: &str =
    "the class is never predicted in the slice: precision is 0/0 (0 in the macro averages)";
pub const CLASS_ALONE: &str =
    "the slice has rows of this class only: its one-vs-rest roc_auc is undefined";

/// The per-class rows of a slice's block (every class, present or not).
pub fn class_rows(block: &[f64], layout: &Layout) -> Vec<ClassRow> {
    let b = Block {
        f: block,
        layout: *layout,
        ks: &[],
    };
    let ratio = |num: f64, den: f64| (den > 0.0).then(|| num / den);
    (0..layout.k)
        .map(|c| {
            let (tp, t, p) = (b.tp(c), b.label_w(c), b.pred_w(c));
            ClassRow {
                class: c,
                support: block[layout.support() + c],
                weight: t,
                predicted: p,
                precision: ratio(tp, p),
                recall: ratio(tp, t),
                f1: ratio(2.0 * tp, t + p),
                roc_auc: None,
                roc_auc_bound: None,
                note: if t <= 0.0 {
                    Some(CLASS_ABSENT)
                } else if p <= 0.0 {
                    Some(CLASS_NOT_PREDICTED)
                } else {
                    None
                },
            }
        })
        .collect()
}

/// The non-empty cells `(actual, predicted, rows, weight)` of a slice's confusion matrix, in
/// row-major order.
pub fn confusion_cells(block: &[f64], layout: &Layout) -> Vec<(usize, usize, f64, f64)> {
    let k = layout.k;
    let (cw, cn) = (layout.confusion_w(), layout.confusion_n());
    (0..k * k)
        .filter(|i| block[cn + i] > 0.0)
        .map(|i| (i / k, i % k, block[cn + i], block[cw + i]))
        .collect()
}

pub const NO_AUC_INTERVAL: &str =
    "no interval: the replicate ROC-AUCs of this slice were not computed";
pub const AUC_ONE_CLASS: &str = "undefined: the slice has rows of one class only";

/// The exact ROC-AUCs of one slice.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SliceAuc {
    /// Each class's one-vs-rest ROC-AUC (None where the class is absent or alone).
    pub ovr: Vec<Option<f64>>,
    pub ovr_macro: Option<f64>,
    pub ovr_weighted: Option<f64>,
    pub ovo_macro: Option<f64>,
    pub ovo_weighted: Option<f64>,
    /// Per replicate slot: the four averages (ovr, ovr weighted, ovo, ovo weighted), NaN
    /// where undefined; empty without resampling.
    pub reps: Vec<[f64; 4]>,
    /// `auc="sketch"`: guaranteed bounds on the error of the four averages and of each
    /// class's one-vs-rest value (None where the value is undefined); empty otherwise.
    pub avg_bounds: Vec<Option<f64>>,
    pub ovr_bounds: Vec<Option<f64>>,
}

/// The position of a multiclass ROC-AUC in [`SliceAuc::reps`].
fn auc_index(m: Metric) -> usize {
    match m {
        Metric::RocAucOvr => 0,
        Metric::RocAucOvrWeighted => 1,
        Metric::RocAucOvo => 2,
        Metric::RocAucOvoWeighted => 3,
        other => unreachable!("{} is not a multiclass ROC-AUC", other.name()),
    }
}

impl SliceAuc {
    /// The values of [`averages`] (and the replicates').
    fn new(avg: [Option<f64>; 4], ovr: Vec<Option<f64>>, reps: Vec<[f64; 4]>) -> SliceAuc {
        SliceAuc {
            ovr,
            ovr_macro: avg[0],
            ovr_weighted: avg[1],
            ovo_macro: avg[2],
            ovo_weighted: avg[3],
            reps,
            avg_bounds: Vec::new(),
            ovr_bounds: Vec::new(),
        }
    }

    /// The bound on the error of `m` (a multiclass ROC-AUC of a sketch job; None otherwise).
    pub fn bound(&self, m: Metric) -> Option<f64> {
        if !m.is_rank() {
            return None;
        }
        self.avg_bounds.get(auc_index(m)).copied().flatten()
    }

    pub fn value(&self, m: Metric) -> Value {
        let v = [
            self.ovr_macro,
            self.ovr_weighted,
            self.ovo_macro,
            self.ovo_weighted,
        ][auc_index(m)];
        match v {
            Some(x) => in_range(x, 0.0, 1.0),
            None => Err(AUC_ONE_CLASS),
        }
    }

    /// The replicate values of `m` (one per slot).
    pub fn replicates(&self, m: Metric) -> Vec<f64> {
        let i = auc_index(m);
        self.reps.iter().map(|r| r[i]).collect()
    }
}

/// The four averages of one slice from its label weights `lw` (K), each class's one-vs-rest
/// numerator `ovr_num` (K) and the pair sums `u`, `v` (see [`aucs`]): (ovr, ovr weighted,
/// ovo, ovo weighted), None where fewer than two classes are present.
fn averages(lw: &[f64], ovr_num: &[f64], u: f64, v: f64) -> ([Option<f64>; 4], Vec<Option<f64>>) {
    let total: f64 = lw.iter().sum();
    let ovr: Vec<Option<f64>> = lw
        .iter()
        .zip(ovr_num)
        .map(|(p, num)| {
            let q = total - p;
            (*p > 0.0 && q > 0.0).then(|| num / p / q)
        })
        .collect();
    let present = lw.iter().filter(|w| **w > 0.0).count();
    if present < 2 {
        return ([None; 4], ovr);
    }
    let p = present as f64;
    let (mut sum, mut wsum) = (0.0, 0.0);
    for (c, a) in ovr.iter().enumerate() {
        if let Some(a) = a {
            sum += a;
            wsum += a * lw[c];
        }
    }
    (
        [
            Some(sum / p),
            Some(wsum / total),
            Some(u / 2.0 / (p * (p - 1.0) / 2.0)),
            Some(v / 2.0 / ((p - 1.0) * total)),
        ],
        ovr,
    )
}

/// The `auc="binned"` ROC-AUCs of a slice from its histograms (see [`Layout::block_len`]):
/// the exact values of the probabilities replaced by their bins (rows in one bin are tied
/// and count one half), as the binary `auc="binned"`; no replicates.
pub fn binned_aucs(block: &[f64], l: &Layout) -> SliceAuc {
    let (k, bins) = (l.k, l.auc_bins);
    let hist = |c: usize, lab: usize| -> &[f64] {
        let at = l.auc_hist() + (c * l.auc_labels + lab) * bins;
        &block[at..at + bins]
    };
    // The Mann-Whitney numerator of `pos` over `neg`: each negative's weight times the
    // positive weight above its bin, plus half the positive weight in it.
    let num = |pos: &[f64], neg: &[f64]| -> f64 {
        let (mut above, mut x) = (0.0, 0.0);
        for (p, q) in pos.iter().zip(neg).rev() {
            x += q * (above + 0.5 * p);
            above += p;
        }
        x
    };
    let pairs = l.auc_pairs;
    let lw: Vec<f64> = (0..k)
        .map(|c| hist(c, if pairs { c } else { 1 }).iter().sum())
        .collect();
    let (mut ovr_num, mut u, mut v) = (vec![0.0; k], 0.0, 0.0);
    for c in 0..k {
        if !pairs {
            ovr_num[c] = num(hist(c, 1), hist(c, 0));
            continue;
        }
        for j in (0..k).filter(|j| *j != c) {
            let x = num(hist(c, c), hist(c, j));
            if x == 0.0 {
                continue;
            }
            let (wc, wj) = (lw[c], lw[j]);
            ovr_num[c] += x;
            u += x / (wc * wj);
            v += x * (wc + wj) / (wc * wj);
        }
    }
    let (avg, ovr) = averages(&lw, &ovr_num, u, v);
    SliceAuc::new(avg, ovr, Vec::new())
}

/// The `auc="sketch"` ROC-AUCs of a slice from its run sketches (see
/// `StateShape::sketches_per_slice`), with guaranteed bounds on their errors.
///
/// One-vs-rest (`pairs` false): sketch `c` holds class `c`'s probability of every row, the
/// rows of class `c` positive; each is evaluated as the binary sketch is (runs as tie groups).
/// With the one-vs-one pairs, sketch `c * K + j` holds class `c`'s probability of the rows of
/// class `j` (all positive): the pair (c over j) is the merge of sketch `c * K + c` with
/// sketch `c * K + j` taken as negatives, and class `c`'s one-vs-rest numerator is the sum of
/// its pairs' (the negatives of one-vs-rest are the rows of the other classes), as in
/// [`binned_aucs`]. Every numerator is off by at most half its runs' uncertain pair weight;
/// the averages are weighted means of the numerators over positive weights, so the same
/// means of those errors bound theirs.
pub fn sketch_aucs(sk: &[crate::sketch::RunSketch], k: usize, pairs: bool) -> SliceAuc {
    let (mut lw, mut num, mut err) = (vec![0.0; k], vec![0.0; k], vec![0.0; k]);
    let (mut u, mut v, mut eu, mut ev) = (0.0, 0.0, 0.0, 0.0);
    if pairs {
        for c in 0..k {
            lw[c] = sk[c * k + c].totals().1;
        }
        for c in (0..k).filter(|c| lw[*c] > 0.0) {
            let pos = &sk[c * k + c];
            for j in (0..k).filter(|j| *j != c && lw[*j] > 0.0) {
                let (x, e) = pos.merge(&sk[c * k + j].as_negatives()).mann_whitney();
                let (wc, wj) = (lw[c], lw[j]);
                num[c] += x;
                err[c] += e;
                u += x / (wc * wj);
                eu += e / (wc * wj);
                v += x * (wc + wj) / (wc * wj);
                ev += e * (wc + wj) / (wc * wj);
            }
        }
    } else {
        for c in 0..k {
            lw[c] = sk[c].totals().1;
            (num[c], err[c]) = sk[c].mann_whitney();
        }
    }
    let (avg, ovr) = averages(&lw, &num, u, v);
    let (avg_err, ovr_err) = averages(&lw, &err, eu, ev);
    let mut out = SliceAuc::new(avg, ovr, Vec::new());
    out.avg_bounds = avg_err.to_vec();
    out.ovr_bounds = ovr_err;
    out
}

/// Classes whose probabilities one sweep over the kept rows gathers (see [`aucs`]).
const CLASS_BLOCK: usize = 8;

/// A u64 whose ascending order is the ascending order of the finite `x` (-0 and 0 alike).
fn ascending_key(x: f64) -> u64 {
    let b = (x + 0.0).to_bits();
    if b >> 63 == 1 {
        !b
    } else {
        b | 1 << 63
    }
}

/// A u32 whose ascending order is the ascending order of the finite `x` (-0 and 0 alike).
fn ascending_key32(x: f32) -> u32 {
    let b = (x + 0.0).to_bits();
    if b >> 31 == 1 {
        !b
    } else {
        b | 1 << 31
    }
}

/// A class pass's record in one u64: a float32 probability's key (see [`ascending_key32`])
/// above the row and its label (see [`aucs`]); records sort as integers.
#[derive(Clone, Copy, Debug, Default)]
#[repr(transparent)]
struct Packed(u64);

impl crate::sorted::Rec for Packed {
    const WEIGHTED: bool = false;
    #[inline]
    fn new(key: u64, _: u64, _: f64) -> Self {
        Packed(key)
    }
    #[inline]
    fn key(&self) -> u64 {
        self.0
    }
    #[inline]
    fn tag(&self) -> u64 {
        0
    }
    #[inline]
    fn w(&self) -> f64 {
        1.0
    }
}

/// Each row's slice id of one spec (see [`aucs`]).
enum SliceIds {
    U8(Vec<u8>),
    U16(Vec<u16>),
    U32(Vec<u32>),
}

impl SliceIds {
    fn new(ids: impl Iterator<Item = u32>, n_ids: usize) -> SliceIds {
        if n_ids <= 1 << 8 {
            SliceIds::U8(ids.map(|x| x as u8).collect())
        } else if n_ids <= 1 << 16 {
            SliceIds::U16(ids.map(|x| x as u16).collect())
        } else {
            SliceIds::U32(ids.collect())
        }
    }

    #[inline(always)]
    fn get(&self, r: usize) -> usize {
        match self {
            SliceIds::U8(v) => v[r] as usize,
            SliceIds::U16(v) => v[r] as usize,
            SliceIds::U32(v) => v[r] as usize,
        }
    }
}

/// The sorted records of a class pass.
#[derive(Clone, Copy)]
enum Keys<'a> {
    /// (probability key, row << 16 | label).
    Wide(&'a [Unweighted]),
    /// Packed records, the label in the low `bits`.
    Packed(&'a [Packed], u32),
}

impl Keys<'_> {
    fn len(&self) -> usize {
        match self {
            Keys::Wide(v) => v.len(),
            Keys::Packed(v, _) => v.len(),
        }
    }

    /// The probability key of record `g` (equal keys: equal probabilities).
    #[inline(always)]
    fn key(&self, g: usize) -> u64 {
        match self {
            Keys::Wide(v) => v[g].0,
            Keys::Packed(v, _) => v[g].0 >> 32,
        }
    }

    /// The row and label of record `g`.
    #[inline(always)]
    fn row(&self, g: usize) -> (usize, usize) {
        match self {
            Keys::Wide(v) => ((v[g].1 >> 16) as usize, (v[g].1 & 0xffff) as usize),
            Keys::Packed(v, bits) => {
                let t = v[g].0 & 0xffff_ffff;
                ((t >> bits) as usize, (t & ((1 << bits) - 1)) as usize)
            }
        }
    }
}

/// Each kept row's label: read again from the batches (`replayed`), or the class whose entry
/// is the label (K entries a row).
fn kept_labels(rows: &crate::state::RankRows, k: usize, replayed: Option<&Replayed>) -> Vec<u32> {
    match replayed {
        Some(rp) => rp.labels.clone(),
        None => (0..rows.scores.len() / k.max(1))
            .map(|r| (0..k).find(|c| rows.labels[r * k + c] == 1).unwrap_or(0) as u32)
            .collect(),
    }
}

/// Calls `f(r, c - c0, p)` for every kept row `r` (in order) and class `c` in `c0..c1`, `p`
/// the row's probability of `c`: read again from the batches (`replayed`, where `scores` are
/// the rows' positions), or the row's entries in `scores` (K a row).
fn each_kept(
    scores: &[f64],
    k: usize,
    replayed: Option<&Replayed>,
    c0: usize,
    c1: usize,
    f: &mut impl FnMut(usize, usize, f64),
) {
    match replayed {
        Some(rp) => rp.each_value(scores, c0, c1, f),
        None => {
            for r in 0..scores.len() / k.max(1) {
                for (o, x) in scores[r * k + c0..r * k + c1].iter().enumerate() {
                    f(r, o, *x);
                }
            }
        }
    }
}

/// The in-memory batches of a job finalized in the call, read again for its exact ROC-AUCs
/// (see [`aucs`]): the pass kept one entry a row, its position in `batches` as its score.
pub struct ReplayProbs<'a> {
    pub batches: &'a [arrow_array::RecordBatch],
    pub label: usize,
    /// The model's probabilities: one list column, or K columns.
    pub columns: &'a [usize],
    pub classes: &'a Classes,
    pub normalize: Normalize,
}

impl ReplayProbs<'_> {
    /// Each batch's probability columns.
    fn columns_of(&self) -> Vec<Vec<ArrayRef>> {
        self.batches
            .iter()
            .map(|b| self.columns.iter().map(|i| b.column(*i).clone()).collect())
            .collect()
    }
}

/// The exact ROC-AUCs of every slice of every spec (`[spec][id]`, spec 0 the overall slice)
/// from the kept entries of a multiclass job, never reordered (multiclass kept rows are never
/// compacted, and merge by appending): K entries per accepted row, in class order (its
/// probability of class `c`, whether `c` is its label, its weight, slice ids and resampling
/// key), or with `replay` one entry per row (its position in the batches, weight, slice ids
/// and key) whose label and probabilities are read again from the batches in place, as the
/// pass read and normalized them. With `resampler` (and `slots`), each slot's values too, from
/// the rows' replicate weights.
///
/// Per class `c`, the rows are sorted once by their probability of `c` (ties grouped), and
/// one walk per slice spec adds, for every row of label `j != c`, its weight times the
/// weight of the slice's rows of label `c` ranked above it (ties count one half): `num(c, j)`,
/// the Mann-Whitney numerator of `A(c|j)` (the probability that a row of class `c` gets a
/// higher `p_c` than a row of class `j`). The one-vs-rest AUC of `c` is
/// `sum_j num(c, j) / (W_c (W - W_c))`. Hand & Till's pair value
/// `(A(c|j) + A(j|c)) / 2 = (num(c, j) + num(j, c)) / (2 W_c W_j)` is additive over the class
/// passes: `u = sum num(c, j) / (W_c W_j)` gives the mean over the present pairs, and
/// `v = sum num(c, j) (W_c + W_j) / (W_c W_j)` the mean weighted by each pair's share of the
/// weight (scikit-learn's `average="weighted"`).
pub fn aucs(
    rows: &crate::state::RankRows,
    n_ids: &[usize],
    k: usize,
    resampler: Option<(&crate::bootstrap::Resampler, usize)>,
    replay: Option<&ReplayProbs>,
) -> Vec<Vec<SliceAuc>> {
    aucs_within(rows, n_ids, k, resampler, replay, SORT_BUDGET)
}

/// Bytes of sort records the class passes of one job hold at once, at most (a class needs
/// 16 or 8 bytes a row, and as much scratch, whatever the budget).
const SORT_BUDGET: usize = 4 << 30;

/// [`aucs`] with the sort records of the class passes in flight within `sort_budget` bytes.
fn aucs_within(
    rows: &crate::state::RankRows,
    n_ids: &[usize],
    k: usize,
    resampler: Option<(&crate::bootstrap::Resampler, usize)>,
    replay: Option<&ReplayProbs>,
    sort_budget: usize,
) -> Vec<Vec<SliceAuc>> {
    use rayon::prelude::*;
    // Kept entries a row.
    let stride = if replay.is_some() { 1 } else { k.max(1) };
    let n = rows.scores.len() / stride;
    let slots = resampler.map_or(0, |r| r.1);
    // Each row's weight, label and slice ids, gathered once into arrays of one entry a row
    // (the walks read them in the order of the scores).
    let weights: Vec<f64> = if rows.weights.is_empty() {
        Vec::new()
    } else {
        (0..n).map(|r| rows.weights[r * stride]).collect()
    };
    let w_of = |r: usize| if weights.is_empty() { 1.0 } else { weights[r] };
    // The replicate weights of row `r` into `out` (its weight times each slot's draw).
    let fill = |r: usize, out: &mut [f64]| {
        if let Some((rs, _)) = resampler {
            rs.fill(rows.row_keys[r * stride], w_of(r), 0, out);
        }
    };
    let replay_columns = replay.map_or_else(Vec::new, ReplayProbs::columns_of);
    let replayed = replay.map(|rp| Replayed::new(rp, &replay_columns, &rows.scores, k));
    let labels = kept_labels(rows, k, replayed.as_ref());
    // (In the narrowest type that holds them: the walks read them in the order of the
    // scores, so the fewer bytes, the more of them stay in cache.)
    let row_ids: Vec<SliceIds> = rows
        .ids
        .iter()
        .zip(&n_ids[1..])
        .map(|(ids, n_ids)| SliceIds::new((0..n).map(|r| ids[r * stride]), *n_ids))
        .collect();
    let slice_of = |spec: usize, r: usize| -> usize {
        if spec == 0 {
            0
        } else {
            row_ids[spec - 1].get(r)
        }
    };
    let specs = n_ids.len();
    // Per spec, slice and label: the weight, and (slot-major per label) the replicate weights.
    let mut label_w: Vec<Vec<f64>> = n_ids.iter().map(|n| vec![0.0; n * k]).collect();
    let mut label_wb: Vec<Vec<f64>> = n_ids.iter().map(|n| vec![0.0; n * k * slots]).collect();
    let mut wb = vec![0.0; slots];
    for (r, y) in labels.iter().enumerate() {
        fill(r, &mut wb);
        for spec in 0..specs {
            let at = slice_of(spec, r) * k + *y as usize;
            label_w[spec][at] += w_of(r);
            for (d, x) in label_wb[spec][at * slots..(at + 1) * slots]
                .iter_mut()
                .zip(&wb)
            {
                *d += x;
            }
        }
    }
    /// One class pass's sums of one spec: per slice, the one-vs-rest numerator and the pair
    /// sums u, v; per slice and slot, the same of the replicates.
    #[derive(Default)]
    struct Pass {
        ovr: Vec<f64>,
        u: Vec<f64>,
        v: Vec<f64>,
        ovr_b: Vec<f64>,
        u_b: Vec<f64>,
        v_b: Vec<f64>,
    }
    // The class passes sort records of (probability key, row, label). Where every probability
    // is a float32 read as given, and the rows and labels fit in 32 bits, a record is one
    // u64 (the float32 key above the row and label): half the bytes to sort. Both orders are
    // (probability, row): the same walks, the same bits.
    let label_bits = usize::BITS - (k.max(2) - 1).leading_zeros();
    let packed = replayed.as_ref().is_some_and(Replayed::f32_values)
        && (n as u64) << label_bits <= 1u64 << 32;
    // Classes are taken a block at a time: one sweep over the rows gathers the block's
    // probabilities (neighbours in each row's entries, so a row's cache line serves them
    // all). Few classes go one at a time, so that the threads share them evenly. A task holds
    // its block's records and a scratch buffer: within `sort_budget` bytes for all the tasks
    // in flight, blocks shrink, then fewer tasks run at once. (Neither changes a class's sums:
    // the result depends on neither.)
    let threads = rayon::current_num_threads().max(1);
    let per_class = n.max(1).saturating_mul(if packed { 8 } else { 16 });
    let concurrent = (sort_budget / per_class.saturating_mul(2)).clamp(1, threads);
    let fits = (sort_budget / concurrent.saturating_mul(per_class)).saturating_sub(1);
    let block = (k / (4 * threads)).clamp(1, CLASS_BLOCK).min(fits.max(1));
    let blocks: Vec<usize> = (0..k).step_by(block).collect();
    let tag = |r: usize| (r as u64) << 16 | labels[r] as u64;
    let ptag = |r: usize| (r as u64) << label_bits | labels[r] as u64;
    // Gathers the records of classes `c0..c1` (a block) into `out` (one vector a class).
    fn gather_into<T: Copy + Default>(
        out: &mut Vec<Vec<T>>,
        (c0, c1, k, n): (usize, usize, usize, usize),
        replayed: Option<&Replayed>,
        scores: &[f64],
        make: impl Fn(usize, f64) -> T,
    ) {
        out.resize_with(c1 - c0, Vec::new);
        for v in out.iter_mut() {
            if v.len() != n {
                v.clear();
                v.resize(n, T::default());
            }
        }
        // (Every kept row writes one record of each class.)
        each_kept(scores, k, replayed, c0, c1, &mut |r, o, x| {
            out[o][r] = make(r, x)
        });
    }
    // One spec's running sums of a class pass (see `walk`).
    struct Walk {
        /// num[s * k + j]: the Mann-Whitney numerator of A(c|j) in slice s.
        num: Vec<f64>,
        /// Per slice: the weight of its rows of label `c` ranked below, and in the tie group.
        cum: Vec<f64>,
        tied: Vec<f64>,
        cum_b: Vec<f64>,
        tied_b: Vec<f64>,
        touched: Vec<usize>,
        /// The replicate sums of the pass.
        ovr_b: Vec<f64>,
        u_b: Vec<f64>,
        v_b: Vec<f64>,
    }
    // The class pass of `c` over `sorted` (ascending probability of `c`): one walk adds, for
    // every row of label `j != c` and every spec, its weight times the weight of its slice's
    // rows of label `c` ranked above it (ties count one half).
    let walk = |c: usize, sorted: Keys| -> Vec<Pass> {
        let n = sorted.len();
        let mut walks: Vec<Walk> = n_ids
            .iter()
            .map(|ids| Walk {
                num: vec![0.0; ids * k],
                cum: vec![0.0; *ids],
                tied: vec![0.0; *ids],
                cum_b: vec![0.0; ids * slots],
                tied_b: vec![0.0; ids * slots],
                touched: Vec::new(),
                ovr_b: vec![0.0; ids * slots],
                u_b: vec![0.0; ids * slots],
                v_b: vec![0.0; ids * slots],
            })
            .collect();
        let mut wb = vec![0.0; slots];
        // A row of label `j != c` in slice `s` of spec `spec` (weight `w`, replicate weights
        // `wb`), `tied` of its slice's class-c weight tied with it.
        let below =
            |st: &mut Walk, spec: usize, s: usize, j: usize, w: f64, wb: &[f64], half: bool| {
                let lw = &label_w[spec];
                let t = if half { 0.5 * st.tied[s] } else { 0.0 };
                st.num[s * k + j] += w * (lw[s * k + c] - st.cum[s] - t);
                if slots > 0 {
                    let lwb = &label_wb[spec];
                    let (cb, jb) = ((s * k + c) * slots, (s * k + j) * slots);
                    for b in 0..slots {
                        let at = s * slots + b;
                        let (wcb, wjb) = (lwb[cb + b], lwb[jb + b]);
                        let tb = if half { 0.5 * st.tied_b[at] } else { 0.0 };
                        let x = wb[b] * (wcb - st.cum_b[at] - tb);
                        st.ovr_b[at] += x;
                        if wcb > 0.0 && wjb > 0.0 {
                            st.u_b[at] += x / (wcb * wjb);
                            st.v_b[at] += x * (wcb + wjb) / (wcb * wjb);
                        }
                    }
                }
            };
        // (A pass with replicate slots is long: it polls the job's interrupt every so many
        // rows; a stopped pass's sums are never reported, see `aucs`' end.)
        let step = (1usize << 18) / (1 + slots * n_ids.len());
        let mut next_poll = step;
        let mut g = 0;
        while g < n {
            if g >= next_poll {
                if crate::runtime::interrupted() {
                    break;
                }
                next_poll = g + step;
            }
            let key = sorted.key(g);
            if g + 1 == n || sorted.key(g + 1) != key {
                // A row of its own probability (the common case): no tie to split.
                let (r, j) = sorted.row(g);
                let w = w_of(r);
                if slots > 0 {
                    fill(r, &mut wb);
                }
                for (spec, st) in walks.iter_mut().enumerate() {
                    let s = slice_of(spec, r);
                    if j == c {
                        st.cum[s] += w;
                        for (d, x) in st.cum_b[s * slots..(s + 1) * slots].iter_mut().zip(&wb) {
                            *d += x;
                        }
                    } else {
                        below(st, spec, s, j, w, &wb, false);
                    }
                }
                g += 1;
                continue;
            }
            let mut e = g;
            while e < n && sorted.key(e) == key {
                let (r, j) = sorted.row(e);
                if j == c {
                    let w = w_of(r);
                    if slots > 0 {
                        fill(r, &mut wb);
                    }
                    for (spec, st) in walks.iter_mut().enumerate() {
                        let s = slice_of(spec, r);
                        // (Weights are positive: an untouched slice has no tied weight.)
                        if st.tied[s] == 0.0 {
                            st.touched.push(s);
                        }
                        st.tied[s] += w;
                        for (d, x) in st.tied_b[s * slots..(s + 1) * slots].iter_mut().zip(&wb) {
                            *d += x;
                        }
                    }
                }
                e += 1;
            }
            for at in g..e {
                let (r, j) = sorted.row(at);
                if j == c {
                    continue;
                }
                let w = w_of(r);
                if slots > 0 {
                    fill(r, &mut wb);
                }
                for (spec, st) in walks.iter_mut().enumerate() {
                    let s = slice_of(spec, r);
                    below(st, spec, s, j, w, &wb, true);
                }
            }
            for st in walks.iter_mut() {
                for s in st.touched.drain(..) {
                    st.cum[s] += st.tied[s];
                    st.tied[s] = 0.0;
                    for b in s * slots..(s + 1) * slots {
                        st.cum_b[b] += st.tied_b[b];
                        st.tied_b[b] = 0.0;
                    }
                }
            }
            g = e;
        }
        // Each slice's sums of this class pass: sum_j num, and the pair sums u, v.
        walks
            .into_iter()
            .enumerate()
            .map(|(spec, st)| {
                let ids = n_ids[spec];
                let lw = &label_w[spec];
                let mut p = Pass {
                    ovr: vec![0.0; ids],
                    u: vec![0.0; ids],
                    v: vec![0.0; ids],
                    ovr_b: st.ovr_b,
                    u_b: st.u_b,
                    v_b: st.v_b,
                };
                for sl in 0..ids {
                    let wc = lw[sl * k + c];
                    for j in 0..k {
                        let x = st.num[sl * k + j];
                        if x == 0.0 {
                            continue;
                        }
                        let wj = lw[sl * k + j];
                        p.ovr[sl] += x;
                        p.u[sl] += x / (wc * wj);
                        p.v[sl] += x * (wc + wj) / (wc * wj);
                    }
                }
                p
            })
            .collect()
    };
    // Sorts each class's records of a block (classes `c0..`) and walks them, in class order.
    fn sort_walk<R: crate::sorted::Rec>(
        recs: &mut [Vec<R>],
        scratch: &mut Vec<R>,
        c0: usize,
        walk: impl Fn(usize, &[R]) -> Vec<Pass>,
    ) -> Vec<Vec<Pass>> {
        let n = recs.first().map_or(0, Vec::len);
        scratch.resize(n, R::default());
        (c0..)
            .zip(recs.iter_mut())
            .map(|(c, sorted)| {
                if crate::runtime::interrupted() {
                    return Vec::new();
                }
                crate::sorted::msd_sort(sorted, scratch, true);
                walk(c, sorted)
            })
            .collect()
    }
    // Per block task: its classes' passes, in class order (the buffers are reused); within
    // the budget's tasks in flight (a smaller pool of the job's threads).
    type Buffers = (
        Vec<Vec<Unweighted>>,
        Vec<Unweighted>,
        Vec<Vec<Packed>>,
        Vec<Packed>,
    );
    let run = || -> Vec<Vec<Vec<Pass>>> {
        blocks
            .into_par_iter()
            .map_init(
                || -> Buffers { Default::default() },
                |(wide, wide_tmp, pk, pk_tmp): &mut Buffers, c0| {
                    if crate::runtime::interrupted() {
                        return Vec::new();
                    }
                    let c1 = (c0 + block).min(k);
                    let (at, rp) = ((c0, c1, k, n), replayed.as_ref());
                    // The rows by ascending probability of each class, sorted as integers (equal
                    // keys are equal probabilities; -0 is 0).
                    if packed {
                        gather_into(pk, at, rp, &rows.scores, |r, x| {
                            Packed((ascending_key32(x as f32) as u64) << 32 | ptag(r))
                        });
                        sort_walk(pk, pk_tmp, c0, |c, s| walk(c, Keys::Packed(s, label_bits)))
                    } else {
                        gather_into(wide, at, rp, &rows.scores, |r, x| {
                            Unweighted(ascending_key(x), tag(r))
                        });
                        sort_walk(wide, wide_tmp, c0, |c, s| walk(c, Keys::Wide(s)))
                    }
                },
            )
            .collect()
    };
    let per_block = match concurrent < threads {
        true => match crate::runtime::job_pool(Some(concurrent)) {
            Ok(pool) => pool.install(run),
            Err(_) => run(),
        },
        false => run(),
    };
    let passes: Vec<Vec<Pass>> = per_block.into_iter().flatten().collect();
    if crate::runtime::interrupted() {
        return Vec::new();
    }
    (0..specs)
        .map(|spec| {
            (0..n_ids[spec])
                .map(|id| {
                    let lw = &label_w[spec][id * k..(id + 1) * k];
                    let col = |f: &dyn Fn(&Pass) -> f64| -> Vec<f64> {
                        passes.iter().map(|pc| f(&pc[spec])).collect()
                    };
                    let ovr_num = col(&|p| p.ovr[id]);
                    let u: f64 = col(&|p| p.u[id]).iter().sum();
                    let v: f64 = col(&|p| p.v[id]).iter().sum();
                    let (avg, ovr) = averages(lw, &ovr_num, u, v);
                    let reps = (0..slots)
                        .map(|b| {
                            let at = id * slots + b;
                            let lwb: Vec<f64> = (0..k)
                                .map(|c| label_wb[spec][(id * k + c) * slots + b])
                                .collect();
                            let ovr_b = col(&|p| p.ovr_b[at]);
                            let u: f64 = col(&|p| p.u_b[at]).iter().sum();
                            let v: f64 = col(&|p| p.v_b[at]).iter().sum();
                            averages(&lwb, &ovr_b, u, v)
                                .0
                                .map(|x| x.unwrap_or(f64::NAN))
                        })
                        .collect();
                    SliceAuc::new(avg, ovr, reps)
                })
                .collect()
        })
        .collect()
}

/// A replayed job's batches, ready for the class passes of [`aucs`].
struct Replayed<'a> {
    sources: Vec<ProbSource<'a>>,
    /// Per batch: its kept rows `r0..r1` (positions ascend) and the position of its first row.
    spans: Vec<(usize, usize, usize)>,
    /// Each kept row's [`row_scale`] (empty with `normalize="raise"`: rows are used as given).
    scale: Vec<(f64, f64)>,
    normalize: Normalize,
    labels: Vec<u32>,
}

impl<'a> Replayed<'a> {
    /// `columns`: each batch's probability columns (see [`ReplayProbs::columns_of`]).
    fn new(
        rp: &ReplayProbs,
        columns: &'a [Vec<ArrayRef>],
        positions: &[f64],
        k: usize,
    ) -> Replayed<'a> {
        use rayon::prelude::*;
        let sources: Vec<ProbSource<'a>> = columns.iter().map(|c| ProbSource::new(c, k)).collect();
        let mut spans = Vec::with_capacity(rp.batches.len());
        let (mut start, mut r0) = (0usize, 0usize);
        for b in rp.batches {
            let end = start + b.num_rows();
            let r1 = r0 + positions[r0..].partition_point(|p| (*p as usize) < end);
            spans.push((r0, r1, start));
            (start, r0) = (end, r1);
        }
        let map = ClassMap::new(rp.classes);
        let mut labels = Vec::with_capacity(positions.len());
        let mut codes = Vec::new();
        for (b, &(r0, r1, start)) in rp.batches.iter().zip(&spans) {
            label_codes(b.column(rp.label), 0, b.num_rows(), &map, &mut codes);
            labels.extend(positions[r0..r1].iter().map(|p| codes[*p as usize - start]));
        }
        let mut scale = Vec::new();
        if rp.normalize != Normalize::Raise {
            for (src, &(r0, r1, start)) in sources.iter().zip(&spans) {
                scale.par_extend((r0..r1).into_par_iter().map_init(
                    || vec![0.0; k],
                    |buf, r| {
                        // (An accepted row reads whole.)
                        let _ = src.read(positions[r] as usize - start, buf);
                        row_scale(buf, rp.normalize)
                    },
                ));
            }
        }
        Replayed {
            sources,
            spans,
            scale,
            normalize: rp.normalize,
            labels,
        }
    }

    /// Calls `put(r, c - c0, p)` for every kept row `r` (in order) and class `c` in `c0..c1`,
    /// `p` the row's probability of `c` as the pass normalized it.
    fn each_value(
        &self,
        positions: &[f64],
        c0: usize,
        c1: usize,
        put: &mut impl FnMut(usize, usize, f64),
    ) {
        for (src, &(r0, r1, start)) in self.sources.iter().zip(&self.spans) {
            let rows = (r0..r1).map(|r| (r, positions[r] as usize - start));
            if self.normalize == Normalize::Raise {
                src.each_value(rows, c0, c1, &mut *put);
            } else {
                let (how, scale) = (self.normalize, &self.scale);
                src.each_value(rows, c0, c1, &mut |r, o, x| {
                    put(r, o, scaled(x, scale[r], how))
                });
            }
        }
    }

    /// Whether every probability the pass used is a float32 (read as given from float32
    /// columns), so that 32-bit keys order them.
    fn f32_values(&self) -> bool {
        self.normalize == Normalize::Raise && self.sources.iter().all(ProbSource::is_f32)
    }
}

/// The per-class and confusion rows of the reported slices, gathered while finalizing (the
/// reference model's), and turned into `Report.per_class()` and `Report.confusion()`.
#[derive(Default)]
pub struct TableRows {
    /// Whether the per-class table has a `roc_auc` column, and a `roc_auc_bound` one.
    aucs: bool,
    bounds: bool,
    per_class: Vec<(String, ClassRow)>,
    confusion: Vec<(String, usize, usize, f64, f64)>,
}

impl TableRows {
    /// Adds the rows of slice `label`, whose block is `block` (and ROC-AUCs `auc`); a slice
    /// below `min_slice_size` (`small`) gets its counts and null ratios, as its metrics.
    pub fn add(
        &mut self,
        label: &str,
        block: &[f64],
        layout: &Layout,
        auc: Option<&SliceAuc>,
        small: bool,
    ) {
        self.aucs |= auc.is_some();
        self.bounds |= auc.is_some_and(|a| !a.ovr_bounds.is_empty());
        for mut r in class_rows(block, layout) {
            r.roc_auc = auc.and_then(|a| a.ovr[r.class]);
            r.roc_auc_bound = auc.and_then(|a| a.ovr_bounds.get(r.class).copied().flatten());
            if auc.is_some() && r.roc_auc.is_none() && r.note.is_none() {
                r.note = Some(CLASS_ALONE);
            }
            if small {
                (r.precision, r.recall, r.f1, r.roc_auc) = (None, None, None, None);
                r.roc_auc_bound = None;
                r.note = Some(crate::metrics::TOO_SMALL);
            }
            self.per_class.push((label.to_string(), r));
        }
        for (a, p, n, w) in confusion_cells(block, layout) {
            self.confusion.push((label.to_string(), a, p, n, w));
        }
    }

    /// The two tables, named; weights scaled back to the user's units by `unscale`.
    pub fn finish(
        self,
        classes: &[String],
        unscale: impl Fn(f64) -> f64,
    ) -> crate::error::Result<Vec<(&'static str, arrow_array::RecordBatch)>> {
        use arrow_array::{Float64Array, StringArray, UInt64Array};
        use arrow_schema::{Field, Schema};
        use std::sync::Arc;
        let pc = &self.per_class;
        let f64s = |v: Vec<Option<f64>>| Arc::new(Float64Array::from(v)) as ArrayRef;
        let mut fields = vec![
            Field::new("slice", DataType::Utf8, false),
            Field::new("class", DataType::Utf8, false),
            Field::new("support", DataType::UInt64, false),
            Field::new("weight_sum", DataType::Float64, false),
            Field::new("predicted_weight", DataType::Float64, false),
            Field::new("precision", DataType::Float64, true),
            Field::new("recall", DataType::Float64, true),
            Field::new("f1", DataType::Float64, true),
        ];
        if self.aucs {
            fields.push(Field::new("roc_auc", DataType::Float64, true));
        }
        if self.bounds {
            fields.push(Field::new("roc_auc_bound", DataType::Float64, true));
        }
        fields.push(Field::new("note", DataType::Utf8, true));
        let per_class = arrow_array::RecordBatch::try_new(
            Arc::new(Schema::new(fields)),
            vec![
                Arc::new(StringArray::from_iter_values(
                    pc.iter().map(|r| r.0.as_str()),
                )) as ArrayRef,
                Arc::new(StringArray::from_iter_values(
                    pc.iter().map(|r| classes[r.1.class].as_str()),
                )),
                Arc::new(UInt64Array::from_iter_values(
                    pc.iter().map(|r| r.1.support as u64),
                )),
                f64s(pc.iter().map(|r| Some(unscale(r.1.weight))).collect()),
                f64s(pc.iter().map(|r| Some(unscale(r.1.predicted))).collect()),
                f64s(pc.iter().map(|r| r.1.precision).collect()),
                f64s(pc.iter().map(|r| r.1.recall).collect()),
                f64s(pc.iter().map(|r| r.1.f1).collect()),
            ]
            .into_iter()
            .chain(
                self.aucs
                    .then(|| f64s(pc.iter().map(|r| r.1.roc_auc).collect())),
            )
            .chain(
                self.bounds
                    .then(|| f64s(pc.iter().map(|r| r.1.roc_auc_bound).collect())),
            )
            .chain(std::iter::once(Arc::new(StringArray::from(
                pc.iter().map(|r| r.1.note).collect::<Vec<_>>(),
            )) as ArrayRef))
            .collect(),
        )?;
        let cf = &self.confusion;
        let confusion = arrow_array::RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("slice", DataType::Utf8, false),
                Field::new("actual", DataType::Utf8, false),
                Field::new("predicted", DataType::Utf8, false),
                Field::new("count", DataType::UInt64, false),
                Field::new("weight_sum", DataType::Float64, false),
            ])),
            vec![
                Arc::new(StringArray::from_iter_values(
                    cf.iter().map(|r| r.0.as_str()),
                )),
                Arc::new(StringArray::from_iter_values(
                    cf.iter().map(|r| classes[r.1].as_str()),
                )),
                Arc::new(StringArray::from_iter_values(
                    cf.iter().map(|r| classes[r.2].as_str()),
                )),
                Arc::new(UInt64Array::from_iter_values(cf.iter().map(|r| r.3 as u64))),
                f64s(cf.iter().map(|r| Some(unscale(r.4))).collect()),
            ],
        )?;
        Ok(vec![("per_class", per_class), ("confusion", confusion)])
    }
}

/// How the probabilities of a row are made: `Raise` checks that they sum to 1 (within
/// [`SUM_TOLERANCE`]), `Divide` divides them by their sum, `Softmax` takes them as logits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Normalize {
    Raise,
    Divide,
    Softmax,
}

impl Normalize {
    pub fn parse(s: &str) -> crate::error::Result<Normalize> {
        match s {
            "raise" => Ok(Normalize::Raise),
            "divide" => Ok(Normalize::Divide),
            "softmax" => Ok(Normalize::Softmax),
            other => Err(crate::error::AssayError::InvalidArgument(format!(
                "normalize must be \"raise\", \"divide\" or \"softmax\", got {other:?}"
            ))),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Normalize::Raise => "raise",
            Normalize::Divide => "divide",
            Normalize::Softmax => "softmax",
        }
    }
}

/// How far from 1 a row's probabilities may sum with `normalize="raise"` (float32 softmax
/// outputs of thousands of classes pass).
pub const SUM_TOLERANCE: f64 = 1e-4;

/// What is wrong with a row's probabilities (the caller names the column and the row).
#[derive(Clone, Debug, PartialEq)]
pub enum RowProblem {
    /// The list (or one of the K columns) is null.
    Null,
    /// A list of another length.
    Length(usize),
    /// A value that is null, NaN or infinite (class, value).
    NotFinite(usize, String),
    /// A negative value, or one above 1 (class, value).
    OutOfRange(usize, f64),
    /// The values sum to this, not 1.
    Sum(f64),
    /// The values sum to this, which cannot be divided by (`normalize="divide"`).
    NoSum(f64),
}

impl RowProblem {
    /// The class whose value is at fault, where one is.
    pub fn class(&self) -> Option<usize> {
        match self {
            RowProblem::NotFinite(c, _) | RowProblem::OutOfRange(c, _) => Some(*c),
            _ => None,
        }
    }

    /// Whether `nan_policy="drop"` drops the row (missing or non-finite values).
    pub fn droppable(&self) -> bool {
        matches!(self, RowProblem::Null | RowProblem::NotFinite(..))
    }

    /// The message of the problem at global row `row`.
    pub fn message(&self, row: u64, k: usize) -> String {
        match self {
            RowProblem::Null => format!(
                "the scores of row {row} are null; pass nan_policy=\"drop\" to drop such rows"
            ),
            RowProblem::Length(n) => {
                format!("row {row} has {n} scores, expected {k} (one per class, as classes= says)")
            }
            RowProblem::NotFinite(c, v) => format!(
                "the score of class {c} is {v} at row {row}; pass nan_policy=\"drop\" to drop \
                 such rows"
            ),
            RowProblem::OutOfRange(c, v) => format!(
                "probabilities must lie in [0, 1]; the score of class {c} is {v:?} at row {row} \
                 (pass normalize=\"softmax\" if the scores are logits)"
            ),
            RowProblem::NoSum(s) => format!(
                "the scores of row {row} sum to {s:?}: normalize=\"divide\" needs a positive \
                 sum (pass normalize=\"softmax\" if the scores are logits)"
            ),
            RowProblem::Sum(s) => format!(
                "the probabilities of row {row} sum to {s:?}, not 1 (within {SUM_TOLERANCE}); \
                 pass normalize=\"divide\" to divide them by their sum, or \
                 normalize=\"softmax\" if they are logits"
            ),
        }
    }
}

/// A flat run of values of one type, read without a copy.
enum Flat<'a> {
    F64(&'a [f64]),
    F32(&'a [f32]),
    Owned(Vec<f64>),
}

impl Flat<'_> {
    #[inline(always)]
    fn get(&self, i: usize) -> f64 {
        match self {
            Flat::F64(v) => v[i],
            Flat::F32(v) => v[i] as f64,
            Flat::Owned(v) => v[i],
        }
    }
}

fn flat(a: &ArrayRef) -> Flat<'_> {
    match a.data_type() {
        DataType::Float64 => Flat::F64(a.as_primitive::<Float64Type>().values()),
        DataType::Float32 => Flat::F32(a.as_primitive::<Float32Type>().values()),
        _ => {
            let mut buf = Vec::new();
            crate::input::f64_view(a, 0, a.len(), &mut buf);
            Flat::Owned(buf)
        }
    }
}

enum Rows<'a> {
    Fixed,
    I32(&'a [i32]),
    I64(&'a [i64]),
}

/// The probabilities of one model in one batch: a list column (fixed-size or not, its values
/// read in place) or K numeric columns.
pub struct ProbSource<'a> {
    k: usize,
    lists: Option<(Flat<'a>, Rows<'a>, Option<NullBuffer>, Option<NullBuffer>)>,
    cols: Vec<(Flat<'a>, Option<NullBuffer>)>,
}

/// Whether `dt` can hold a model's probabilities: a (fixed-size) list of floats, or with
/// `columns` (K separate columns) a number; `Err` says why not.
pub fn check_score_type(dt: &DataType, k: usize, columns: bool) -> std::result::Result<(), String> {
    let float = |f: &DataType| matches!(f, DataType::Float32 | DataType::Float64);
    if columns {
        return match dt {
            DataType::Float32 | DataType::Float64 | DataType::Null => Ok(()),
            d if d.is_integer() => Ok(()),
            d => Err(format!("each score column must be numeric, got type {d}")),
        };
    }
    match dt {
        DataType::FixedSizeList(f, n) if float(f.data_type()) => {
            if *n as usize == k {
                Ok(())
            } else {
                Err(format!(
                    "the scores are lists of {n} values, but there are {k} classes (classes= \
                     and the list size must agree)"
                ))
            }
        }
        DataType::List(f) | DataType::LargeList(f) if float(f.data_type()) => Ok(()),
        d => Err(format!(
            "multiclass scores must be a list column of float32 or float64 (a polars Array, \
             an Arrow FixedSizeList or List) or a list of K column names, got type {d}"
        )),
    }
}

impl<'a> ProbSource<'a> {
    /// The source over `arrays` (one list array, or K columns), types checked by
    /// [`check_score_type`].
    pub fn new(arrays: &'a [ArrayRef], k: usize) -> ProbSource<'a> {
        if arrays.len() == 1 && k > 1 {
            let a = &arrays[0];
            let outer = crate::input::validity(a);
            let (values, rows) = match a.data_type() {
                DataType::FixedSizeList(..) => (a.as_fixed_size_list().values(), Rows::Fixed),
                DataType::List(_) => {
                    let l = a.as_list::<i32>();
                    (l.values(), Rows::I32(l.value_offsets()))
                }
                DataType::LargeList(_) => {
                    let l = a.as_list::<i64>();
                    (l.values(), Rows::I64(l.value_offsets()))
                }
                other => unreachable!("type {other} was rejected when the job was planned"),
            };
            let inner = crate::input::validity(values);
            return ProbSource {
                k,
                lists: Some((flat(values), rows, outer, inner)),
                cols: Vec::new(),
            };
        }
        ProbSource {
            k,
            lists: None,
            cols: arrays
                .iter()
                .map(|a| (flat(a), crate::input::validity(a)))
                .collect(),
        }
    }

    /// Whether the values are float32.
    fn is_f32(&self) -> bool {
        match &self.lists {
            Some((vals, ..)) => matches!(vals, Flat::F32(_)),
            None => self.cols.iter().all(|(v, _)| matches!(v, Flat::F32(_))),
        }
    }

    /// Calls `f(r, c - c0, x)` for each `(r, i)` of `rows` and class `c` in `c0..c1`, `x` the
    /// value of class `c` of batch row `i` as given (unchecked: rows the pass accepted).
    #[inline]
    pub fn each_value(
        &self,
        rows: impl Iterator<Item = (usize, usize)>,
        c0: usize,
        c1: usize,
        f: &mut impl FnMut(usize, usize, f64),
    ) {
        let (k, width) = (self.k, c1 - c0);
        macro_rules! fixed {
            ($v:expr, $conv:expr) => {{
                for (r, i) in rows {
                    let at = i * k + c0;
                    for (o, x) in $v[at..at + width].iter().enumerate() {
                        f(r, o, $conv(*x));
                    }
                }
            }};
        }
        match &self.lists {
            // (The common layout, a fixed-size list: a contiguous run of each row.)
            Some((Flat::F32(v), Rows::Fixed, ..)) => fixed!(v, |x: f32| x as f64),
            Some((Flat::F64(v), Rows::Fixed, ..)) => fixed!(v, |x: f64| x),
            _ => {
                let mut buf = vec![0.0; width];
                for (r, i) in rows {
                    self.read_classes(i, c0, &mut buf);
                    for (o, x) in buf.iter().enumerate() {
                        f(r, o, *x);
                    }
                }
            }
        }
    }

    /// The values of classes `c0..c0 + out.len()` of batch row `i` into `out`, as given and
    /// unchecked (a row the pass accepted: [`ProbSource::read`] found it whole).
    #[inline]
    pub fn read_classes(&self, i: usize, c0: usize, out: &mut [f64]) {
        if let Some((vals, rows, _, _)) = &self.lists {
            let start = match rows {
                Rows::Fixed => i * self.k,
                Rows::I32(o) => o[i] as usize,
                Rows::I64(o) => o[i] as usize,
            } + c0;
            let end = start + out.len();
            match vals {
                // (The common layouts read a contiguous run.)
                Flat::F32(v) => {
                    for (o, x) in out.iter_mut().zip(&v[start..end]) {
                        *o = *x as f64;
                    }
                }
                Flat::F64(v) => out.copy_from_slice(&v[start..end]),
                Flat::Owned(v) => out.copy_from_slice(&v[start..end]),
            }
            return;
        }
        for (o, (vals, _)) in out.iter_mut().zip(&self.cols[c0..]) {
            *o = vals.get(i);
        }
    }

    /// Reads batch row `i` into `out` (K values) as given.
    #[inline]
    pub fn read(&self, i: usize, out: &mut [f64]) -> std::result::Result<(), RowProblem> {
        let k = self.k;
        if let Some((vals, rows, outer, inner)) = &self.lists {
            if outer.as_ref().is_some_and(|n| n.is_null(i)) {
                return Err(RowProblem::Null);
            }
            let (start, len) = match rows {
                Rows::Fixed => (i * k, k),
                Rows::I32(o) => (o[i] as usize, (o[i + 1] - o[i]) as usize),
                Rows::I64(o) => (o[i] as usize, (o[i + 1] - o[i]) as usize),
            };
            if len != k {
                return Err(RowProblem::Length(len));
            }
            for (c, o) in out.iter_mut().enumerate() {
                if inner.as_ref().is_some_and(|n| n.is_null(start + c)) {
                    return Err(RowProblem::NotFinite(c, "null".into()));
                }
                *o = vals.get(start + c);
            }
            return Ok(());
        }
        for (c, ((vals, nulls), o)) in self.cols.iter().zip(out.iter_mut()).enumerate() {
            if nulls.as_ref().is_some_and(|n| n.is_null(i)) {
                return Err(RowProblem::NotFinite(c, "null".into()));
            }
            *o = vals.get(i);
        }
        Ok(())
    }
}

/// What [`normalize_row`] makes of the values `p` of a row it accepted, one class at a time:
/// `(m, s)` such that a value `x` becomes `x` (`Raise`), `x / s` (`Divide`) or
/// `exp(x - m) / s` (`Softmax`), the same bits as `normalize_row`.
pub fn row_scale(p: &[f64], how: Normalize) -> (f64, f64) {
    // (The sums run in class order from 0, as in `normalize_row`.)
    let mut s = 0.0;
    match how {
        Normalize::Raise => (0.0, 1.0),
        Normalize::Divide => {
            for v in p {
                s += *v;
            }
            (0.0, s)
        }
        Normalize::Softmax => {
            let m = p.iter().fold(f64::NEG_INFINITY, |a, b| a.max(*b));
            for v in p {
                s += (*v - m).exp();
            }
            (m, s)
        }
    }
}

/// [`row_scale`] applied to one value `x`.
#[inline(always)]
fn scaled(x: f64, (m, s): (f64, f64), how: Normalize) -> f64 {
    match how {
        Normalize::Raise => x,
        Normalize::Divide => x / s,
        Normalize::Softmax => (x - m).exp() / s,
    }
}

/// Checks (and with `Divide` or `Softmax`, makes) the probabilities of a row in place.
#[inline]
pub fn normalize_row(p: &mut [f64], how: Normalize) -> std::result::Result<(), RowProblem> {
    for (c, v) in p.iter().enumerate() {
        if !v.is_finite() {
            return Err(RowProblem::NotFinite(c, format!("{v:?}")));
        }
    }
    match how {
        Normalize::Softmax => {
            let m = p.iter().fold(f64::NEG_INFINITY, |a, b| a.max(*b));
            let mut s = 0.0;
            for v in p.iter_mut() {
                *v = (*v - m).exp();
                s += *v;
            }
            for v in p.iter_mut() {
                *v /= s;
            }
        }
        Normalize::Divide | Normalize::Raise => {
            let mut s = 0.0;
            for (c, v) in p.iter().enumerate() {
                if *v < 0.0 || (how == Normalize::Raise && *v > 1.0) {
                    return Err(RowProblem::OutOfRange(c, *v));
                }
                s += *v;
            }
            if how == Normalize::Raise && (s - 1.0).abs() > SUM_TOLERANCE {
                return Err(RowProblem::Sum(s));
            }
            if !(s > 0.0 && s.is_finite()) {
                return Err(RowProblem::NoSum(s));
            }
            // (Within the tolerance, a row is used as given, as scikit-learn does: dividing
            // by a sum 1 +- 1e-16 would break the ties between rows' probabilities that the
            // exact ROC-AUCs count. Only the Brier score and the calibration errors can then
            // pass their range by as much as the tolerance: see `loose`.)
            if how == Normalize::Divide {
                for v in p.iter_mut() {
                    *v /= s;
                }
            }
        }
    }
    Ok(())
}

/// The classes of a job: their names (report labels) and, for integer labels, their values.
#[derive(Clone, Debug, PartialEq)]
pub struct Classes {
    pub names: Vec<String>,
    /// The integer value of each class (integer and boolean labels).
    pub ints: Option<Vec<i64>>,
}

/// Label value -> class index lookups of one job.
pub struct ClassMap {
    by_int: Option<HashMap<i64, u32>>,
    by_str: HashMap<String, u32>,
}

/// Codes of [`label_codes`] that are not classes.
pub const NULL_LABEL: u32 = u32::MAX;
pub const UNKNOWN_LABEL: u32 = u32::MAX - 1;

impl ClassMap {
    pub fn new(c: &Classes) -> ClassMap {
        ClassMap {
            by_int: c
                .ints
                .as_ref()
                .map(|v| v.iter().enumerate().map(|(i, x)| (*x, i as u32)).collect()),
            by_str: c
                .names
                .iter()
                .enumerate()
                .map(|(i, x)| (x.clone(), i as u32))
                .collect(),
        }
    }

    fn int(&self, v: i64) -> u32 {
        self.by_int
            .as_ref()
            .and_then(|m| m.get(&v).copied())
            .unwrap_or(UNKNOWN_LABEL)
    }

    fn str(&self, v: &str) -> u32 {
        self.by_str.get(v).copied().unwrap_or(UNKNOWN_LABEL)
    }
}

/// Whether a label column of type `dt` can be mapped to classes (integer classes need
/// integer or boolean labels, named classes string labels).
pub fn check_label_type(dt: &DataType, classes: &Classes) -> std::result::Result<(), String> {
    let strings =
        |d: &DataType| matches!(d, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View);
    let ok = match dt {
        DataType::Null => true,
        d if d.is_integer() || *d == DataType::Boolean => classes.ints.is_some(),
        d if strings(d) => classes.ints.is_none(),
        DataType::Dictionary(_, v) if strings(v) => classes.ints.is_none(),
        DataType::Dictionary(_, v) if v.is_integer() => classes.ints.is_some(),
        _ => {
            return Err(format!(
                "multiclass labels must be class indices (integers), or values (strings, \
                 dictionary) named in classes=; got type {dt}"
            ))
        }
    };
    match (ok, &classes.ints) {
        (true, _) => Ok(()),
        (false, Some(_)) => Err(format!(
            "the labels are {dt} (class names), and the classes are integers: pass classes= \
             with the K label values in score order (without classes=, labels must be the \
             class indices 0..K-1)"
        )),
        (false, None) => Err(format!(
            "the labels are {dt} but classes= names strings: pass the classes as the label \
             values (integers)"
        )),
    }
}

/// The class of each of rows `lo..hi` of `labels` into `out`, in one pass: a class index, or
/// [`NULL_LABEL`] (a null), or [`UNKNOWN_LABEL`] (a value that is not a class; see
/// [`label_text`] for a message). A dictionary's values are mapped once.
pub fn label_codes(labels: &ArrayRef, lo: usize, hi: usize, map: &ClassMap, out: &mut Vec<u32>) {
    use arrow_array::types::*;
    out.clear();
    let nulls = crate::input::validity(labels);
    let null = |i: usize| nulls.as_ref().is_some_and(|n| n.is_null(i));
    macro_rules! ints {
        ($t:ty) => {{
            let v = labels.as_primitive::<$t>().values();
            out.extend((lo..hi).map(|i| {
                if null(i) {
                    NULL_LABEL
                } else {
                    i64::try_from(v[i]).map_or(UNKNOWN_LABEL, |x| map.int(x))
                }
            }));
        }};
    }
    macro_rules! strs {
        ($a:expr) => {{
            let a = $a;
            out.extend((lo..hi).map(|i| {
                if null(i) {
                    NULL_LABEL
                } else {
                    map.str(a.value(i))
                }
            }));
        }};
    }
    match labels.data_type() {
        DataType::Null => out.extend(std::iter::repeat_n(NULL_LABEL, hi - lo)),
        DataType::Int8 => ints!(Int8Type),
        DataType::Int16 => ints!(Int16Type),
        DataType::Int32 => ints!(Int32Type),
        DataType::Int64 => ints!(Int64Type),
        DataType::UInt8 => ints!(UInt8Type),
        DataType::UInt16 => ints!(UInt16Type),
        DataType::UInt32 => ints!(UInt32Type),
        DataType::UInt64 => ints!(UInt64Type),
        DataType::Boolean => {
            let b = labels.as_boolean();
            out.extend((lo..hi).map(|i| {
                if null(i) {
                    NULL_LABEL
                } else {
                    map.int(b.value(i) as i64)
                }
            }));
        }
        DataType::Utf8 => strs!(labels.as_string::<i32>()),
        DataType::LargeUtf8 => strs!(labels.as_string::<i64>()),
        DataType::Utf8View => strs!(labels.as_string_view()),
        DataType::Dictionary(..) => {
            let d = labels.as_any_dictionary();
            let values = d.values();
            if values.is_empty() {
                // (Every row is null: a dictionary without values has no key to read.)
                out.extend(std::iter::repeat_n(NULL_LABEL, hi - lo));
                return;
            }
            let mut codes = Vec::new();
            label_codes(values, 0, values.len(), map, &mut codes);
            let keys = d.normalized_keys();
            out.extend((lo..hi).map(|i| if null(i) { NULL_LABEL } else { codes[keys[i]] }));
        }
        other => unreachable!("label type {other} was rejected when the job was planned"),
    }
}

/// The message of a label that is not a class (`text`, from [`label_text`]) at global row
/// `row`.
pub fn unknown_label_message(text: &str, row: u64, classes: &Classes) -> String {
    let k = classes.names.len();
    let indices = classes
        .ints
        .as_ref()
        .is_some_and(|v| v.iter().enumerate().all(|(i, x)| *x == i as i64));
    let head: Vec<String> = classes
        .names
        .iter()
        .take(8)
        .map(|c| format!("{c:?}"))
        .collect();
    let shown = if k > 8 {
        format!("{}, ...", head.join(", "))
    } else {
        head.join(", ")
    };
    let hint = if indices {
        "labels must be the class indices 0..K-1, or pass classes= naming the label values \
         in score order"
    } else {
        "add it to classes= (in score order) or drop the row"
    };
    format!("label {text} at row {row} is not one of the {k} classes ({shown}); {hint}")
}

/// The message of a null label at global row `row`.
pub fn null_label_message(row: u64) -> String {
    format!("label is null at row {row}; pass nan_policy=\"drop\" to drop such rows")
}

/// Row `i` of `labels` as a message shows it (a string quoted).
pub fn label_text(labels: &ArrayRef, i: usize) -> String {
    use arrow_array::types::*;
    macro_rules! int {
        ($t:ty) => {
            labels.as_primitive::<$t>().value(i).to_string()
        };
    }
    match labels.data_type() {
        DataType::Int8 => int!(Int8Type),
        DataType::Int16 => int!(Int16Type),
        DataType::Int32 => int!(Int32Type),
        DataType::Int64 => int!(Int64Type),
        DataType::UInt8 => int!(UInt8Type),
        DataType::UInt16 => int!(UInt16Type),
        DataType::UInt32 => int!(UInt32Type),
        DataType::UInt64 => int!(UInt64Type),
        DataType::Boolean => labels.as_boolean().value(i).to_string(),
        DataType::Utf8 => format!("{:?}", labels.as_string::<i32>().value(i)),
        DataType::LargeUtf8 => format!("{:?}", labels.as_string::<i64>().value(i)),
        DataType::Utf8View => format!("{:?}", labels.as_string_view().value(i)),
        DataType::Dictionary(..) => {
            let d = labels.as_any_dictionary();
            label_text(d.values(), d.normalized_keys()[i])
        }
        _ => "null".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(k: usize, bins: usize) -> Layout {
        Layout {
            k,
            tops: 1,
            bins,
            classwise: bins > 0,
            auc_bins: 0,
            auc_pairs: false,
            auc_labels: 2,
        }
    }

    #[test]
    fn argmax_ties_go_to_the_lowest_index() {
        let t = row_terms(&[0.4, 0.4, 0.2], 1, &[]);
        assert_eq!(t.pred, 0);
        assert_eq!(t.ahead, 1);
        let t = row_terms(&[0.4, 0.4, 0.2], 0, &[]);
        assert_eq!(t.ahead, 0);
    }

    #[test]
    fn binary_brier_is_halved() {
        let t = row_terms(&[0.3, 0.7], 1, &[]);
        assert!((t.brier - 0.09).abs() < 1e-15);
    }

    #[test]
    fn the_sort_budget_changes_no_bit_of_the_aucs() {
        // Kept entries of 300 rows of 6 classes (K a row), weighted, in 3 slices, with ties.
        let (n, k) = (300usize, 6usize);
        let mut x = 11u64;
        let mut next = || {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 11) as f64 / (1u64 << 53) as f64
        };
        let mut rows = crate::state::RankRows::with_specs(1);
        for _ in 0..n {
            let y = (next() * k as f64) as usize;
            let (w, slice) = (0.5 + next(), (next() * 3.0) as u32);
            for c in 0..k {
                rows.scores.push((next() * 8.0).floor() / 8.0);
                rows.labels.push((c == y) as u8);
                rows.weights.push(w);
                rows.ids[0].push(slice);
            }
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(4)
            .build()
            .unwrap();
        let all = pool.install(|| aucs_within(&rows, &[1, 3], k, None, None, usize::MAX));
        // One class at a time, on one thread; and blocks of two classes on two threads.
        for budget in [1, 2 * 16 * n, 3 * 16 * n * 2] {
            let got = pool.install(|| aucs_within(&rows, &[1, 3], k, None, None, budget));
            assert_eq!(got, all, "budget {budget}");
        }
        assert!(all[0][0].ovr_macro.is_some_and(|a| a > 0.0 && a < 1.0));
    }

    #[test]
    fn one_slice_by_hand() {
        let l = layout(3, 2);
        let edges = crate::reliability::uniform_edges(2);
        let mut st = SliceStates::default();
        st.counts.resize(1, Default::default());
        st.fam.resize(l.block_len(), 0.0);
        let k = Kernel {
            layout: l,
            ks: &[2],
            edges: &edges,
            slots: 0,
        };
        let rows: [(&[f64], usize); 4] = [
            (&[0.7, 0.2, 0.1], 0),
            (&[0.1, 0.6, 0.3], 1),
            (&[0.2, 0.5, 0.3], 2),
            (&[0.5, 0.25, 0.25], 1),
        ];
        for (p, y) in rows {
            let r = RowInput {
                t: row_terms(p, y, &edges),
                p,
                w: 1.0,
                kw: &[],
            };
            k.add(&mut st, 0, &r);
        }
        let b = Block {
            f: &st.fam,
            layout: l,
            ks: &[2],
        };
        assert_eq!(b.value(Metric::McAccuracy), Ok(0.5));
        assert_eq!(b.value(Metric::NClassesPresent), Ok(3.0));
        // (The last row's label ties with class 2 at 0.25 and ranks ahead of it: index 1 < 2.)
        assert_eq!(b.value(Metric::TopK(2)), Ok(1.0));
        // Recall per class: 1, 1/2, 0.
        assert_eq!(b.value(Metric::MacroRecall), Ok(0.5));
        let cells = confusion_cells(&st.fam, &l);
        assert_eq!(cells.len(), 4);
        assert_eq!(cells[0], (0, 0, 1.0, 1.0));
    }
}
