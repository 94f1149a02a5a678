//! The metric registry of every task family, and the binary-classification finalizers (the
//! regression family's live in [`crate::regression`]).
//!
//! Each definition lives here once. Weighted counts follow scikit-learn's `sample_weight`.
//! A metric that is undefined for a slice is `Err(reason)`, never a made-up number.

use crate::error::{AssayError, Result};
use crate::state::BinaryCounts;

/// A metric the engine can compute.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Metric {
    BaseRate,
    PredictionRate,
    Accuracy,
    BalancedAccuracy,
    Precision,
    Recall,
    Specificity,
    Fpr,
    Fnr,
    F1,
    FBeta(f64),
    Mcc,
    RocAuc,
    AveragePrecision,
    LogLoss,
    Brier,
    // Calibration (see `reliability` and docs/calibration.md).
    Ece,
    Mce,
    Rmsce,
    Ace,
    EceDebiased,
    SmoothEce,
    CalibrationSlope,
    CalibrationIntercept,
    OeRatio,
    BrierReliability,
    BrierResolution,
    BrierUncertainty,
    // Regression (see `regression`).
    Mae,
    Mse,
    Rmse,
    R2,
    ExplainedVariance,
    MeanError,
    MaxError,
    Mape,
    Smape,
    Wmape,
    Pearson,
    Concordance,
    Msle,
    Rmsle,
    PoissonDeviance,
    GammaDeviance,
    TweedieDeviance,
    D2Tweedie,
    Coverage,
    IntervalWidth,
    MedianAbsoluteError,
    /// Mean pinball loss at quantile `q` in (0, 1) (`"pinball@<q>"`).
    Pinball(f64),
    // Multiclass (see `multiclass`).
    McAccuracy,
    McBalancedAccuracy,
    MacroF1,
    MicroF1,
    WeightedF1,
    MacroPrecision,
    MacroRecall,
    CohenKappa,
    McMcc,
    McLogLoss,
    McBrier,
    EceTopLabel,
    EceClasswise,
    NClassesPresent,
    RocAucOvr,
    RocAucOvrWeighted,
    RocAucOvo,
    RocAucOvoWeighted,
    /// Share of rows whose label is among the `k` highest scores (`"top_k_accuracy@<k>"`).
    TopK(usize),
    // Ranking (see `ranking`): per query, then averaged over the queries.
    Mrr,
    AucPerQuery,
    NItems,
    NSkipped,
    /// Normalized DCG at cutoff `k` (`"ndcg@<k>"`).
    Ndcg(usize),
    /// Average precision at cutoff `k` (`"map@<k>"`).
    MapAt(usize),
    /// Relevant items among the top `k`, over `k` (`"precision@<k>"`).
    PrecisionAt(usize),
    /// Relevant items among the top `k`, over the query's relevant items (`"recall@<k>"`).
    RecallAt(usize),
    /// Whether a relevant item is among the top `k` (`"hit_rate@<k>"`).
    HitRate(usize),
}

impl Metric {
    /// A ranking metric's cutoff `k` (None for the others).
    pub fn cutoff(&self) -> Option<usize> {
        match *self {
            Metric::Ndcg(k)
            | Metric::MapAt(k)
            | Metric::PrecisionAt(k)
            | Metric::RecallAt(k)
            | Metric::HitRate(k) => Some(k),
            _ => None,
        }
    }
}

/// The task family a metric belongs to (the `task=` of `evaluate`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Family {
    #[default]
    Binary,
    Regression,
    Multiclass,
    Ranking,
}

impl Family {
    pub fn name(&self) -> &'static str {
        match self {
            Family::Binary => "binary",
            Family::Regression => "regression",
            Family::Multiclass => "multiclass",
            Family::Ranking => "ranking",
        }
    }

    /// The family of a `task=` name.
    pub fn parse(task: &str) -> Result<Family> {
        match task {
            "binary" => Ok(Family::Binary),
            "regression" => Ok(Family::Regression),
            "multiclass" => Ok(Family::Multiclass),
            "ranking" => Ok(Family::Ranking),
            other => Err(AssayError::InvalidArgument(format!(
                "task must be \"binary\", \"regression\", \"multiclass\" or \"ranking\", got \
                 {other:?}"
            ))),
        }
    }
}

/// What a metric is computed from (and so what the pass keeps for it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The weighted confusion counts at the threshold.
    Confusion,
    /// Per-row losses of the scores as probabilities, summed.
    Loss,
    /// The order of the scores (exact, binned or sketched).
    Rank,
    /// Calibration bins, grids or fits of the scores as probabilities.
    Calibration,
    /// Weighted sums and co-moments of labels, predictions and errors (regression).
    Moments,
    /// An order statistic of each slice's rows (kept, like exact ROC-AUC's).
    Order,
}

impl Kind {
    pub fn name(&self) -> &'static str {
        match self {
            Kind::Confusion => "confusion",
            Kind::Loss => "loss",
            Kind::Rank => "rank",
            Kind::Calibration => "calibration",
            Kind::Moments => "moments",
            Kind::Order => "order",
        }
    }
}

/// One metric of the registry: the one place where a metric's name, family, kind, direction
/// and definition live (the Python layer reads them through `_native.metric_registry`).
#[derive(Clone, Copy, Debug)]
pub struct MetricInfo {
    pub metric: Metric,
    /// The canonical name (a report column); `"f<beta>"` for the F-beta pattern.
    pub name: &'static str,
    pub family: Family,
    pub kind: Kind,
    /// `Some(true)`: higher is better; `Some(false)`: lower; `None`: no direction (a rate, a
    /// ratio whose ideal is 1, a slope).
    pub higher_is_better: Option<bool>,
    /// Computed when the caller gives no metrics (`metrics=None`).
    pub default: bool,
    /// One line: what the metric is.
    pub definition: &'static str,
}

const fn info(
    metric: Metric,
    name: &'static str,
    kind: Kind,
    higher_is_better: Option<bool>,
    default: bool,
    definition: &'static str,
) -> MetricInfo {
    MetricInfo {
        metric,
        name,
        family: Family::Binary,
        kind,
        higher_is_better,
        default,
        definition,
    }
}

/// A regression metric's entry (finalized from the slice's moments unless it says otherwise).
const fn reg(
    metric: Metric,
    name: &'static str,
    higher_is_better: Option<bool>,
    default: bool,
    definition: &'static str,
) -> MetricInfo {
    MetricInfo {
        family: Family::Regression,
        ..info(
            metric,
            name,
            Kind::Moments,
            higher_is_better,
            default,
            definition,
        )
    }
}

const UP: Option<bool> = Some(true);
const DOWN: Option<bool> = Some(false);

/// Every metric, in report order: the defaults first, then the calibration metrics.
pub const REGISTRY: [MetricInfo; 70] =
    {
        use Kind::*;
        use Metric::*;
        [
        info(
            BaseRate,
            "base_rate",
            Confusion,
            None,
            true,
            "share of positive labels (weighted)",
        ),
        info(
            PredictionRate,
            "prediction_rate",
            Confusion,
            None,
            true,
            "share of rows predicted positive (score >= threshold)",
        ),
        info(Accuracy, "accuracy", Confusion, UP, true, "(tp + tn) / all"),
        info(
            BalancedAccuracy,
            "balanced_accuracy",
            Confusion,
            UP,
            true,
            "mean of recall and specificity",
        ),
        info(
            Precision,
            "precision",
            Confusion,
            UP,
            true,
            "tp / (tp + fp)",
        ),
        info(
            Recall,
            "recall",
            Confusion,
            UP,
            true,
            "tp / (tp + fn): the true positive rate",
        ),
        info(
            Specificity,
            "specificity",
            Confusion,
            UP,
            true,
            "tn / (tn + fp)",
        ),
        info(
            Fpr,
            "fpr",
            Confusion,
            DOWN,
            true,
            "fp / (fp + tn): the false positive rate",
        ),
        info(
            Fnr,
            "fnr",
            Confusion,
            DOWN,
            true,
            "fn / (fn + tp): the false negative rate",
        ),
        info(
            F1,
            "f1",
            Confusion,
            UP,
            true,
            "harmonic mean of precision and recall",
        ),
        info(
            Mcc,
            "mcc",
            Confusion,
            UP,
            true,
            "Matthews correlation of labels and predictions",
        ),
        info(
            RocAuc,
            "roc_auc",
            Rank,
            UP,
            true,
            "area under the ROC curve (ties count one half)",
        ),
        info(
            AveragePrecision,
            "average_precision",
            Rank,
            UP,
            true,
            "precision averaged over the positives' thresholds (scikit-learn's definition)",
        ),
        info(
            LogLoss,
            "log_loss",
            Loss,
            DOWN,
            true,
            "mean negative log-likelihood",
        ),
        info(
            Brier,
            "brier",
            Loss,
            DOWN,
            true,
            "mean squared error of the probabilities",
        ),
        info(
            Ece,
            "ece",
            Calibration,
            DOWN,
            false,
            "expected calibration error over the calibration bins",
        ),
        info(
            Mce,
            "mce",
            Calibration,
            DOWN,
            false,
            "largest calibration gap of a bin",
        ),
        info(
            Rmsce,
            "rmsce",
            Calibration,
            DOWN,
            false,
            "root mean squared calibration error",
        ),
        info(
            Ace,
            "ace",
            Calibration,
            DOWN,
            false,
            "adaptive calibration error (equal-mass bins)",
        ),
        info(
            EceDebiased,
            "ece_debiased",
            Calibration,
            DOWN,
            false,
            "ECE with the bias of finite bins removed",
        ),
        info(
            SmoothEce,
            "smooth_ece",
            Calibration,
            DOWN,
            false,
            "kernel-smoothed calibration error (Blasiok and Nakkiran)",
        ),
        info(
            CalibrationSlope,
            "calibration_slope",
            Calibration,
            None,
            false,
            "slope of the logistic recalibration fit (ideal 1)",
        ),
        info(
            CalibrationIntercept,
            "calibration_intercept",
            Calibration,
            None,
            false,
            "intercept of the logistic recalibration fit (ideal 0)",
        ),
        info(
            OeRatio,
            "oe_ratio",
            Calibration,
            None,
            false,
            "observed over expected positives (ideal 1)",
        ),
        info(
            BrierReliability,
            "brier_reliability",
            Calibration,
            DOWN,
            false,
            "reliability term of the Brier decomposition",
        ),
        info(
            BrierResolution,
            "brier_resolution",
            Calibration,
            UP,
            false,
            "resolution term of the Brier decomposition",
        ),
        info(
            BrierUncertainty,
            "brier_uncertainty",
            Calibration,
            None,
            false,
            "uncertainty term of the Brier decomposition (the base rate's variance)",
        ),
        // Regression: e = prediction - label, weighted means over the slice.
        reg(Mae, "mae", DOWN, true, "mean |e|"),
        reg(Mse, "mse", DOWN, true, "mean e^2"),
        reg(Rmse, "rmse", DOWN, true, "sqrt(mse)"),
        reg(R2, "r2", UP, true, "1 - sum w e^2 / sum w (y - mean y)^2"),
        reg(
            ExplainedVariance,
            "explained_variance",
            UP,
            true,
            "1 - Var(e) / Var(y)",
        ),
        reg(
            MeanError,
            "mean_error",
            None,
            true,
            "mean e: the bias (positive when the model over-predicts)",
        ),
        reg(
            MaxError,
            "max_error",
            DOWN,
            true,
            "largest |e| (rows of any positive weight)",
        ),
        reg(
            Mape,
            "mape",
            DOWN,
            true,
            "mean |e| / max(|y|, eps), a fraction (scikit-learn's eps = 2.2e-16)",
        ),
        reg(
            Smape,
            "smape",
            DOWN,
            true,
            "mean 2 |e| / (|y| + |p|), 0 where both are 0; in [0, 2]",
        ),
        reg(Wmape, "wmape", DOWN, true, "sum w |e| / sum w |y|"),
        reg(
            Pearson,
            "pearson",
            UP,
            true,
            "Pearson's correlation of label and prediction",
        ),
        reg(
            Concordance,
            "concordance",
            UP,
            true,
            "Lin's concordance correlation coefficient",
        ),
        reg(
            Msle,
            "msle",
            DOWN,
            false,
            "mean (log1p(p) - log1p(y))^2; labels and predictions must be >= 0",
        ),
        reg(Rmsle, "rmsle", DOWN, false, "sqrt(msle)"),
        reg(
            PoissonDeviance,
            "poisson_deviance",
            DOWN,
            false,
            "mean Poisson deviance 2 (y log(y / p) - y + p); labels >= 0, predictions > 0",
        ),
        reg(
            GammaDeviance,
            "gamma_deviance",
            DOWN,
            false,
            "mean Gamma deviance 2 (log(p / y) + y / p - 1); labels and predictions > 0",
        ),
        reg(
            TweedieDeviance,
            "tweedie_deviance",
            DOWN,
            false,
            "mean Tweedie deviance at the job's power= (scikit-learn's mean_tweedie_deviance)",
        ),
        reg(
            D2Tweedie,
            "d2_tweedie",
            UP,
            false,
            "1 - tweedie deviance / the deviance of the weighted mean label (power= as above)",
        ),
        reg(
            Coverage,
            "coverage",
            None,
            false,
            "share of labels inside [lower, upper] (the prediction interval's columns)",
        ),
        reg(
            IntervalWidth,
            "interval_width",
            DOWN,
            false,
            "mean upper - lower of the prediction interval",
        ),
        MetricInfo {
            kind: Kind::Order,
            ..reg(
                MedianAbsoluteError,
                "median_absolute_error",
                DOWN,
                false,
                "weighted median of |e| (scikit-learn's averaged inverted CDF); keeps each row's \
                 error, like exact ROC-AUC",
            )
        },
        mc(McAccuracy, "accuracy", Confusion, UP, true, "share of rows whose argmax is the label"),
        mc(
            McBalancedAccuracy,
            "balanced_accuracy",
            Confusion,
            UP,
            true,
            "mean recall over the classes present in the slice",
        ),
        mc(
            MacroF1,
            "macro_f1",
            Confusion,
            UP,
            true,
            "mean F1 over the classes present in the slice",
        ),
        mc(
            MicroF1,
            "micro_f1",
            Confusion,
            UP,
            true,
            "F1 of the pooled counts of the classes present in the slice",
        ),
        mc(
            WeightedF1,
            "weighted_f1",
            Confusion,
            UP,
            true,
            "F1 of the present classes averaged with their label weights",
        ),
        mc(
            MacroPrecision,
            "macro_precision",
            Confusion,
            UP,
            true,
            "mean precision over the present classes (0 for a class never predicted)",
        ),
        mc(
            MacroRecall,
            "macro_recall",
            Confusion,
            UP,
            true,
            "mean recall over the classes present in the slice",
        ),
        mc(
            CohenKappa,
            "cohen_kappa",
            Confusion,
            UP,
            true,
            "agreement of argmax and label beyond chance (Cohen)",
        ),
        mc(
            McMcc,
            "mcc",
            Confusion,
            UP,
            true,
            "multiclass Matthews correlation (Gorodkin's R_K)",
        ),
        mc(
            McLogLoss,
            "log_loss",
            Loss,
            DOWN,
            true,
            "mean -log p(label), probabilities clipped to [eps, 1 - eps]",
        ),
        mc(
            McBrier,
            "brier",
            Loss,
            DOWN,
            true,
            "mean sum over classes of (p_k - [label = k])^2, halved when K = 2 (scikit-learn)",
        ),
        mc(
            EceTopLabel,
            "ece_top_label",
            Calibration,
            DOWN,
            true,
            "ECE of the top probability against argmax = label (torchmetrics' definition)",
        ),
        mc(
            EceClasswise,
            "ece_classwise",
            Calibration,
            DOWN,
            false,
            "mean over the K classes of the ECE of p_k against label = k",
        ),
        mc(
            NClassesPresent,
            "n_classes_present",
            Confusion,
            None,
            true,
            "classes with rows of positive weight in the slice (macro averages run over them)",
        ),
        mc(
            RocAucOvr,
            "roc_auc_ovr",
            Rank,
            UP,
            false,
            "mean one-vs-rest ROC-AUC of the present classes (exact; keeps each row's K scores)",
        ),
        mc(
            RocAucOvrWeighted,
            "roc_auc_ovr_weighted",
            Rank,
            UP,
            false,
            "one-vs-rest ROC-AUC of the present classes averaged with their label weights",
        ),
        mc(
            RocAucOvo,
            "roc_auc_ovo",
            Rank,
            UP,
            false,
            "Hand & Till's mean one-vs-one ROC-AUC over pairs of present classes",
        ),
        mc(
            RocAucOvoWeighted,
            "roc_auc_ovo_weighted",
            Rank,
            UP,
            false,
            "one-vs-one ROC-AUC averaged with each pair's share of the weight",
        ),
        rk(
            Mrr,
            "mrr",
            UP,
            true,
            "mean over queries of 1 / the rank of the first relevant item (no cutoff)",
        ),
        rk(
            AucPerQuery,
            "auc_per_query",
            UP,
            false,
            "mean over queries with relevant and other items of their ROC-AUC (ties 1/2)",
        ),
        rk(
            NItems,
            "n_items",
            None,
            true,
            "items (rows) of the slice's queries, skipped queries included",
        ),
        rk(
            NSkipped,
            "n_skipped",
            None,
            true,
            "queries without a relevant item left out (empty=\"skip\")",
        ),
    ]
    };

/// A multiclass metric's entry.
const fn mc(
    metric: Metric,
    name: &'static str,
    kind: Kind,
    higher_is_better: Option<bool>,
    default: bool,
    definition: &'static str,
) -> MetricInfo {
    MetricInfo {
        family: Family::Multiclass,
        ..info(metric, name, kind, higher_is_better, default, definition)
    }
}

/// A ranking metric's entry (per query, averaged over the queries of the slice).
const fn rk(
    metric: Metric,
    name: &'static str,
    higher_is_better: Option<bool>,
    default: bool,
    definition: &'static str,
) -> MetricInfo {
    MetricInfo {
        family: Family::Ranking,
        ..info(
            metric,
            name,
            Kind::Order,
            higher_is_better,
            default,
            definition,
        )
    }
}

/// The ranking cutoff patterns (`ndcg@10`, ...): each `k` of `k=` makes one metric of each.
pub const NDCG: MetricInfo = rk(
    Metric::Ndcg(10),
    "ndcg@<k>",
    UP,
    true,
    "DCG of the top k (gain / log2(rank + 1), ranks from 1) over the query's ideal DCG at k",
);
pub const MAP_AT: MetricInfo = rk(
    Metric::MapAt(10),
    "map@<k>",
    UP,
    true,
    "mean over queries of average precision at k, over min(k, the query's relevant items)",
);
pub const PRECISION_AT: MetricInfo = rk(
    Metric::PrecisionAt(10),
    "precision@<k>",
    UP,
    true,
    "relevant items among the top k, over k",
);
pub const RECALL_AT: MetricInfo = rk(
    Metric::RecallAt(10),
    "recall@<k>",
    UP,
    true,
    "relevant items among the top k, over the query's relevant items",
);
pub const HIT_RATE: MetricInfo = rk(
    Metric::HitRate(10),
    "hit_rate@<k>",
    UP,
    true,
    "share of queries with a relevant item among the top k",
);

/// The ranking cutoff patterns, in report order.
pub const RANKING_PATTERNS: [&MetricInfo; 5] =
    [&NDCG, &MAP_AT, &PRECISION_AT, &RECALL_AT, &HIT_RATE];

/// The top-k pattern `top_k_accuracy@<k>` (`top_k_accuracy@5`).
pub const TOPK: MetricInfo = mc(
    Metric::TopK(1),
    "top_k_accuracy@<k>",
    Kind::Confusion,
    UP,
    false,
    "share of rows whose label is among the k highest probabilities (ties to the lower index)",
);

/// The pinball pattern `pinball@<q>` (`pinball@0.9`): the mean pinball loss at quantile `q`.
pub const PINBALL: MetricInfo = reg(
    Metric::Pinball(0.5),
    "pinball@<q>",
    DOWN,
    false,
    "mean of q max(y - p, 0) + (1 - q) max(p - y, 0), q in (0, 1)",
);

/// The F-beta pattern `f<beta>` (`f2`, `f0.5`): not one entry but a family of names.
pub const FBETA: MetricInfo = info(
    Metric::FBeta(1.0),
    "f<beta>",
    Kind::Confusion,
    UP,
    false,
    "(1 + b^2) tp / ((1 + b^2) tp + b^2 fn + fp)",
);

/// The largest ranking cutoff `k`.
pub const MAX_CUTOFF: usize = 1 << 20;

/// Names of the binary metrics computed when none are given, in report order.
pub fn default_metrics() -> Vec<&'static str> {
    default_metrics_of(Family::Binary)
}

/// Names of the metrics of `family` computed when none are given, in report order.
pub fn default_metrics_of(family: Family) -> Vec<&'static str> {
    REGISTRY
        .iter()
        .filter(|i| i.default && i.family == family)
        .map(|i| i.name)
        .collect()
}

/// Names of every metric of `family`, in report order.
pub fn metrics_of(family: Family) -> Vec<&'static str> {
    REGISTRY
        .iter()
        .filter(|i| i.family == family)
        .map(|i| i.name)
        .collect()
}

/// Names of the calibration metrics (computed only when asked for).
pub fn calibration_metrics() -> Vec<&'static str> {
    REGISTRY
        .iter()
        .filter(|i| i.kind == Kind::Calibration && i.family == Family::Binary)
        .map(|i| i.name)
        .collect()
}

/// A finalized value, or the reason it is undefined.
pub type Value = std::result::Result<f64, &'static str>;

pub const NO_POSITIVES: &str = "undefined: no positive labels in the slice";
pub const NO_NEGATIVES: &str = "undefined: no negative labels in the slice";
pub const ONE_CLASS: &str = "undefined: the slice has only one class";
pub const NO_PREDICTED_POSITIVES: &str = "undefined: no predicted positives (precision = 0/0)";
pub const F_UNDEFINED: &str = "undefined: no positive labels and no predicted positives";
pub const MCC_UNDEFINED: &str = "undefined: a row or column of the confusion matrix is empty";
pub const TOO_SMALL: &str = "not computed: the slice is smaller than min_slice_size";
pub const NOT_REPRESENTABLE: &str =
    "not computed: the value is not representable in float64 (the weights' sums overflow or \
     underflow)";
pub const OUT_OF_RANGE: &str =
    "not computed: internal error, please report: the value fell outside the metric's range";

/// The largest excess past a metric's range that is taken for rounding, relative to the bound
/// (at least 1): 2^-30, about 1e-9. Sums of the same weights added in different orders (a
/// cell and the total, a pair count and a product of sums) differ by more than a few ulps on
/// large inputs (hundreds of ulps at 10^6 rows of random weights), far less than this; a
/// value further out is a defect and is never clamped into range.
const ROUNDING_EXCESS: f64 = 1.0 / (1u64 << 30) as f64;

/// `v` in `[lo, hi]`: an overshoot within rounding (see [`ROUNDING_EXCESS`]) becomes the bound,
/// a larger one is an internal error (a null with a note, and a failed assertion in debug
/// builds), a non-finite value is not representable.
pub fn in_range(v: f64, lo: f64, hi: f64) -> Value {
    if !v.is_finite() {
        return Err(NOT_REPRESENTABLE);
    }
    let tolerance = |bound: f64| ROUNDING_EXCESS * bound.abs().max(1.0);
    if v < lo {
        if lo - v <= tolerance(lo) {
            return Ok(lo);
        }
    } else if v > hi {
        if v - hi <= tolerance(hi) {
            return Ok(hi);
        }
    } else {
        return Ok(v);
    }
    debug_assert!(false, "metric value {v:?} outside [{lo:?}, {hi:?}]");
    Err(OUT_OF_RANGE)
}

impl Metric {
    /// Parses a metric name: a [`REGISTRY`] name or `f<beta>` such as `f2`, `f0.5`.
    pub fn parse(name: &str) -> Result<Metric> {
        if let Some(i) = REGISTRY.iter().find(|i| i.name == name) {
            return Ok(i.metric);
        }
        if let Some(k) = name.strip_prefix("top_k_accuracy@") {
            return match k.parse::<usize>() {
                Ok(k) if k >= 1 => Ok(Metric::TopK(k)),
                _ => Err(AssayError::InvalidArgument(format!(
                    "{name:?}: top-k accuracy takes a whole number k >= 1, such as \
                     \"top_k_accuracy@5\""
                ))),
            };
        }
        for (prefix, make) in [
            ("ndcg@", Metric::Ndcg as fn(usize) -> Metric),
            ("map@", Metric::MapAt),
            ("precision@", Metric::PrecisionAt),
            ("recall@", Metric::RecallAt),
            ("hit_rate@", Metric::HitRate),
        ] {
            if let Some(k) = name.strip_prefix(prefix) {
                return match k.parse::<usize>() {
                    Ok(k) if (1..=MAX_CUTOFF).contains(&k) => Ok(make(k)),
                    _ => Err(AssayError::InvalidArgument(format!(
                        "{name:?}: a ranking cutoff is a whole number k in [1, {MAX_CUTOFF}], such \
                         as \"{prefix}10\""
                    ))),
                };
            }
        }
        if let Some(q) = name.strip_prefix("pinball@") {
            return match q.parse::<f64>() {
                Ok(q) if q > 0.0 && q < 1.0 => Ok(Metric::Pinball(q)),
                _ => Err(AssayError::InvalidArgument(format!(
                    "{name:?}: the pinball loss takes a quantile strictly between 0 and 1, such \
                     as \"pinball@0.9\""
                ))),
            };
        }
        match name.strip_prefix('f').and_then(|b| b.parse::<f64>().ok()) {
            Some(beta) if beta.is_finite() && beta > 0.0 => Ok(Metric::FBeta(beta)),
            _ => Err(AssayError::InvalidArgument(format!(
                "unknown metric {name:?}; known metrics: {}, {}, or f<beta> such as \"f2\" \
                 (binary); {}, or pinball@<q> such as \"pinball@0.9\" (regression); {}, or \
                 top_k_accuracy@<k> such as \"top_k_accuracy@5\" (multiclass); {}, \
                 ndcg@<k>, map@<k>, precision@<k>, recall@<k> or hit_rate@<k> such as \
                 \"ndcg@10\" (ranking)",
                default_metrics().join(", "),
                calibration_metrics().join(", "),
                metrics_of(Family::Regression).join(", "),
                metrics_of(Family::Multiclass).join(", "),
                metrics_of(Family::Ranking).join(", ")
            ))),
        }
    }

    /// Parses a metric name of task `family`: names that several families share
    /// (`accuracy`, `log_loss`, ...) resolve to that family's metric.
    pub fn parse_in(name: &str, family: Family) -> Result<Metric> {
        match REGISTRY
            .iter()
            .find(|i| i.name == name && i.family == family)
        {
            Some(i) => Ok(i.metric),
            None => Metric::parse(name),
        }
    }

    /// The task family the metric belongs to.
    pub fn family(&self) -> Family {
        self.info().family
    }

    /// Whether the metric ranks rows by score (needs the sorted order or the histogram).
    pub fn is_rank(&self) -> bool {
        self.info().kind == Kind::Rank
    }

    /// The metric's registry entry ([`FBETA`] for any F-beta).
    pub fn info(&self) -> &'static MetricInfo {
        use Metric::*;
        // The entry's position in REGISTRY (a test checks every one).
        let at = match self {
            FBeta(_) => return &FBETA,
            Pinball(_) => return &PINBALL,
            TopK(_) => return &TOPK,
            Ndcg(_) => return &NDCG,
            MapAt(_) => return &MAP_AT,
            PrecisionAt(_) => return &PRECISION_AT,
            RecallAt(_) => return &RECALL_AT,
            HitRate(_) => return &HIT_RATE,
            BaseRate => 0,
            PredictionRate => 1,
            Accuracy => 2,
            BalancedAccuracy => 3,
            Precision => 4,
            Recall => 5,
            Specificity => 6,
            Fpr => 7,
            Fnr => 8,
            F1 => 9,
            Mcc => 10,
            RocAuc => 11,
            AveragePrecision => 12,
            LogLoss => 13,
            Brier => 14,
            Ece => 15,
            Mce => 16,
            Rmsce => 17,
            Ace => 18,
            EceDebiased => 19,
            SmoothEce => 20,
            CalibrationSlope => 21,
            CalibrationIntercept => 22,
            OeRatio => 23,
            BrierReliability => 24,
            BrierResolution => 25,
            BrierUncertainty => 26,
            Mae => 27,
            Mse => 28,
            Rmse => 29,
            R2 => 30,
            ExplainedVariance => 31,
            MeanError => 32,
            MaxError => 33,
            Mape => 34,
            Smape => 35,
            Wmape => 36,
            Pearson => 37,
            Concordance => 38,
            Msle => 39,
            Rmsle => 40,
            PoissonDeviance => 41,
            GammaDeviance => 42,
            TweedieDeviance => 43,
            D2Tweedie => 44,
            Coverage => 45,
            IntervalWidth => 46,
            MedianAbsoluteError => 47,
            McAccuracy => 48,
            McBalancedAccuracy => 49,
            MacroF1 => 50,
            MicroF1 => 51,
            WeightedF1 => 52,
            MacroPrecision => 53,
            MacroRecall => 54,
            CohenKappa => 55,
            McMcc => 56,
            McLogLoss => 57,
            McBrier => 58,
            EceTopLabel => 59,
            EceClasswise => 60,
            NClassesPresent => 61,
            RocAucOvr => 62,
            RocAucOvrWeighted => 63,
            RocAucOvo => 64,
            RocAucOvoWeighted => 65,
            Mrr => 66,
            AucPerQuery => 67,
            NItems => 68,
            NSkipped => 69,
        };
        &REGISTRY[at]
    }

    /// Whether the metric is a function of the four confusion counts alone.
    pub fn needs_counts_only(&self) -> bool {
        self.info().kind == Kind::Confusion
    }

    /// Whether the metric reads scores as probabilities (they must lie in [0, 1]).
    pub fn needs_probability(&self) -> bool {
        matches!(self, Metric::LogLoss | Metric::Brier) || self.is_calibration()
    }

    /// Finalizes a count-based metric. Rank metrics are finalized by [`rank_value`].
    pub fn from_counts(&self, c: &BinaryCounts) -> Value {
        use Metric::*;
        let (p, n) = (c.positives(), c.negatives());
        // An infinite denominator (sums that overflow) would give 0 for any finite numerator.
        let ratio = |num: f64, den: f64, why: &'static str| {
            if den > 0.0 && den.is_finite() {
                finite(num / den)
            } else if den > 0.0 {
                Err(NOT_REPRESENTABLE)
            } else {
                Err(why)
            }
        };
        let value = match *self {
            BaseRate => ratio(p, c.w, ONE_CLASS),
            PredictionRate => ratio(c.tp + c.fp, c.w, ONE_CLASS),
            Accuracy => ratio(c.tp + c.tn, c.w, ONE_CLASS),
            BalancedAccuracy => {
                if !(p > 0.0 && n > 0.0) {
                    Err(ONE_CLASS)
                } else if p.is_finite() && n.is_finite() {
                    finite(0.5 * (c.tp / p + c.tn / n))
                } else {
                    Err(NOT_REPRESENTABLE)
                }
            }
            Precision => ratio(c.tp, c.tp + c.fp, NO_PREDICTED_POSITIVES),
            Recall => ratio(c.tp, p, NO_POSITIVES),
            Specificity => ratio(c.tn, n, NO_NEGATIVES),
            Fpr => ratio(c.fp, n, NO_NEGATIVES),
            Fnr => ratio(c.fn_, p, NO_POSITIVES),
            F1 => ratio(2.0 * c.tp, 2.0 * c.tp + c.fp + c.fn_, F_UNDEFINED),
            FBeta(beta) => fbeta(beta, c.tp, c.fp, c.fn_),
            Mcc => mcc(c.tp, c.fp, c.tn, c.fn_),
            LogLoss => ratio(c.log_loss, c.w, ONE_CLASS),
            Brier => ratio(c.brier, c.w, ONE_CLASS),
            RocAuc | AveragePrecision => unreachable!("rank metrics are finalized from rank sums"),
            _ => unreachable!("calibration metrics are finalized from their bins and grids"),
        };
        // Every one of these lies in [0, 1] (MCC in [-1, 1], the log loss in [0, inf)); sums of
        // the same weights added in different orders can overshoot by rounding (a base rate of
        // 1.0000000000000002), which would break what is computed from them (sqrt(p (1 - p))).
        let (lo, hi) = match self {
            Mcc => (-1.0, 1.0),
            LogLoss => (0.0, f64::INFINITY),
            _ => (0.0, 1.0),
        };
        value.and_then(|v| in_range(v, lo, hi))
    }

    /// Whether a larger value is better (`None`: the metric has no direction, such as the base
    /// rate or the prediction rate).
    pub fn higher_is_better(&self) -> Option<bool> {
        self.info().higher_is_better
    }

    /// The canonical name (as a report column).
    pub fn name(&self) -> String {
        match self {
            // Plain decimals (`f2`, `f0.5`) unless the beta is huge or tiny (`f1e200`): the
            // shortest text that parses back to the same beta either way.
            Metric::FBeta(b) if (1e-4..1e16).contains(b) => format!("f{b}"),
            Metric::FBeta(b) => format!("f{b:e}"),
            Metric::Pinball(q) => format!("pinball@{q}"),
            Metric::TopK(k) => format!("top_k_accuracy@{k}"),
            Metric::Ndcg(k) => format!("ndcg@{k}"),
            Metric::MapAt(k) => format!("map@{k}"),
            Metric::PrecisionAt(k) => format!("precision@{k}"),
            Metric::RecallAt(k) => format!("recall@{k}"),
            Metric::HitRate(k) => format!("hit_rate@{k}"),
            other => other.info().name.to_string(),
        }
    }
}

/// `Ok(x)` when `x` is finite, else the note that it is not representable: a metric column
/// never holds NaN or inf.
pub fn finite(x: f64) -> Value {
    if x.is_finite() {
        Ok(x)
    } else {
        Err(NOT_REPRESENTABLE)
    }
}

/// F-beta from the weighted cells: `(1 + b^2) tp / ((1 + b^2) tp + b^2 fn + fp)`, computed as
/// `tp / (tp + a fn + (1 - a) fp)` with `a = b^2 / (1 + b^2)` so that `b^2` never overflows or
/// underflows: a huge beta tends to recall, a tiny one to precision. With `tp = 0` it is 0
/// when some row is a positive or a predicted positive (as every finite beta gives), else
/// undefined.
pub fn fbeta(beta: f64, tp: f64, fp: f64, fn_: f64) -> Value {
    if tp.is_nan() || fp.is_nan() || fn_.is_nan() {
        return Err(NOT_REPRESENTABLE);
    }
    // a = b^2 / (1 + b^2) and c = 1 - a = 1 / (1 + b^2), each from a square at most 1.
    let (a, c) = if beta >= 1.0 {
        let r = (1.0 / beta) * (1.0 / beta);
        (1.0 / (1.0 + r), r / (1.0 + r))
    } else {
        let q = beta * beta;
        (q / (1.0 + q), 1.0 / (1.0 + q))
    };
    if tp > 0.0 {
        // An infinite denominator (sums that overflow) would give 0 for any finite tp.
        let den = tp + a * fn_ + c * fp;
        if den.is_finite() {
            finite(tp / den)
        } else {
            Err(NOT_REPRESENTABLE)
        }
    } else if fn_ + fp > 0.0 {
        Ok(0.0)
    } else {
        Err(F_UNDEFINED)
    }
}

/// Matthews correlation from the weighted cells. The cells are first divided by their total
/// (so the products cannot overflow whatever the weights' scale), and the denominator is a
/// product of square roots of fractions of which two are at least 1/2 (so it cannot
/// underflow either).
pub fn mcc(tp: f64, fp: f64, tn: f64, fn_: f64) -> Value {
    let (p, n, pp, pn) = (tp + fn_, tn + fp, tp + fp, tn + fn_);
    if !(p > 0.0 && n > 0.0 && pp > 0.0 && pn > 0.0) {
        return Err(MCC_UNDEFINED);
    }
    let total = p + n;
    if !total.is_finite() {
        return Err(NOT_REPRESENTABLE);
    }
    let f = |x: f64| x / total;
    let num = f(tp) * f(tn) - f(fp) * f(fn_);
    let den = (f(p).sqrt() * f(pp).sqrt()) * (f(n).sqrt() * f(pn).sqrt());
    if den > 0.0 {
        in_range(num / den, -1.0, 1.0)
    } else {
        Err(NOT_REPRESENTABLE)
    }
}

/// Sums over the score-sorted rows of one slice, from which ROC-AUC and AP follow.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RankSums {
    /// Total positive and negative weight.
    pub pos: f64,
    pub neg: f64,
    /// Weighted Mann-Whitney count: pairs ranked correctly, ties counting one half.
    pub auc_pairs: f64,
    /// Sum over distinct thresholds of (positive weight at the threshold x precision there).
    pub ap_sum: f64,
    /// Weight of positive-negative pairs that share a tie group (binned mode: an error bound).
    pub tied_pairs: f64,
    /// DeLong placement sums: over positives sum(w c^k) for k = 1, 2, 3, with c = negative
    /// weight ranked above plus half the tied; over negatives sum(w d^k) with d = positive
    /// weight ranked above plus half the tied.
    pub delong: [f64; 6],
}

impl RankSums {
    /// Central moments of the DeLong placements: (over positives: sum w (V10 - AUC)^2,
    /// sum w (V10 - AUC)^3; over negatives the same of V01), with V10 = (N - c) / N and
    /// V01 = d / P. `None` for a single-class slice.
    fn placement_moments(&self) -> Option<[f64; 4]> {
        let (p, n) = (self.pos, self.neg);
        if !(p > 0.0 && n > 0.0) {
            return None;
        }
        let a = self.auc_pairs / (p * n);
        let [c1, c2, c3, d1, d2, d3] = self.delong;
        // Positives: V10 - A = (K - c) / N with K = N (1 - A).
        let k = n * (1.0 - a);
        let pos2 = (k * k * p - 2.0 * k * c1 + c2) / (n * n);
        let pos3 = (k * k * k * p - 3.0 * k * k * c1 + 3.0 * k * c2 - c3) / (n * n * n);
        // Negatives: V01 - A = (d - L) / P with L = P A.
        let l = p * a;
        let neg2 = (d2 - 2.0 * l * d1 + l * l * n) / (p * p);
        let neg3 = (d3 - 3.0 * l * d2 + 3.0 * l * l * d1 - l * l * l * n) / (p * p * p);
        // The second moments are differences of raw sums: a value within their rounding
        // error (a few ulps of the terms) is 0 up to rounding, and is reported as 0 rather
        // than as noise whose square root would pose as a standard error.
        let noise = |terms: f64| 16.0 * f64::EPSILON * terms;
        let pos2 = if pos2 <= noise((k * k * p + 2.0 * k * c1 + c2) / (n * n)) {
            0.0
        } else {
            pos2
        };
        let neg2 = if neg2 <= noise((d2 + 2.0 * l * d1 + l * l * n) / (p * p)) {
            0.0
        } else {
            neg2
        };
        Some([pos2, pos3, neg2, neg3])
    }

    /// DeLong variances of the placements `(var V10 over positives, var V01 over negatives)`,
    /// weights read as frequencies. `None` for a single-class slice.
    pub fn delong_variances(&self) -> Option<(f64, f64)> {
        let [pos2, _, neg2, _] = self.placement_moments()?;
        Some((pos2 / self.pos, neg2 / self.neg))
    }

    /// BCa acceleration of ROC-AUC from its influence values, the DeLong placements:
    /// `U = (V10 - AUC) / P` for positives and `(V01 - AUC) / N` for negatives,
    /// `a = sum U^3 / (6 (sum U^2)^1.5)`.
    pub fn delong_acceleration(&self) -> Option<f64> {
        let [pos2, pos3, neg2, neg3] = self.placement_moments()?;
        let (p, n) = (self.pos, self.neg);
        let s2 = pos2 / (p * p) + neg2 / (n * n);
        let s3 = pos3 / (p * p * p) + neg3 / (n * n * n);
        Some(if s2 > 0.0 {
            s3 / (6.0 * s2.powf(1.5))
        } else {
            0.0
        })
    }
}

/// ROC-AUC or average precision from rank sums.
pub fn rank_value(metric: Metric, r: &RankSums) -> Value {
    match metric {
        Metric::RocAuc => {
            if r.pos > 0.0 && r.neg > 0.0 {
                // `pos * neg` can overflow: then divide by one sum at a time. Where it
                // underflows, so did the pair count (products of the same small weights, at
                // most `pos * neg`): its digits are lost, and no ratio of it is the AUC.
                let pn = r.pos * r.neg;
                let auc = if pn.is_normal() {
                    r.auc_pairs / pn
                } else if pn.is_infinite() {
                    r.auc_pairs / r.pos / r.neg
                } else {
                    return Err(NOT_REPRESENTABLE);
                };
                // (Sums added in different orders can put a perfect ranking an ulp past 1.)
                in_range(auc, 0.0, 1.0)
            } else {
                Err(ONE_CLASS)
            }
        }
        Metric::AveragePrecision => {
            if r.pos > 0.0 {
                in_range(r.ap_sum / r.pos, 0.0, 1.0)
            } else {
                Err(NO_POSITIVES)
            }
        }
        _ => unreachable!("not a rank metric"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for n in default_metrics().iter().chain(&calibration_metrics()) {
            assert_eq!(Metric::parse(n).unwrap().name(), *n);
        }
        for i in &REGISTRY {
            assert_eq!(Metric::parse_in(i.name, i.family).unwrap(), i.metric);
            assert_eq!(i.metric.info().name, i.name);
            assert_eq!(
                i.metric.is_calibration(),
                i.kind == Kind::Calibration,
                "{}",
                i.name
            );
        }
        assert_eq!(default_metrics().len(), 15);
        assert_eq!(Metric::parse("f2").unwrap(), Metric::FBeta(2.0));
        assert_eq!(Metric::parse("f0.5").unwrap().name(), "f0.5");
        assert_eq!(Metric::parse("f1e200").unwrap().name(), "f1e200");
        assert_eq!(Metric::parse("f1e+200").unwrap().name(), "f1e200");
        assert_eq!(Metric::parse("f0.00001").unwrap().name(), "f1e-5");
        for beta in [1e200, 1e-200, 12345.678, 0.1, 3.0, f64::MAX, 5e-324] {
            let name = Metric::FBeta(beta).name();
            assert_eq!(Metric::parse(&name).unwrap(), Metric::FBeta(beta), "{name}");
        }
        assert!(Metric::parse("f-1").is_err());
        assert!(Metric::parse("auc").is_err());
    }

    /// F-beta by its textbook formula in exact rational arithmetic (integers as f64 are
    /// exact up to 2^53; the cells here are small integers and beta^2 a small integer).
    fn fbeta_textbook(b2: f64, tp: f64, fp: f64, fn_: f64) -> f64 {
        (1.0 + b2) * tp / ((1.0 + b2) * tp + b2 * fn_ + fp)
    }

    #[test]
    fn fbeta_matches_the_textbook_formula_and_its_limits() {
        let (tp, fp, fn_) = (3.0, 1.0, 2.0);
        for beta in [0.5f64, 1.0, 2.0, 3.0, 0.1] {
            let got = fbeta(beta, tp, fp, fn_).unwrap();
            let want = fbeta_textbook(beta * beta, tp, fp, fn_);
            assert!((got - want).abs() <= 1e-15, "beta {beta}: {got} vs {want}");
        }
        let f1 = Metric::F1
            .from_counts(&BinaryCounts {
                tp,
                fp,
                fn_,
                ..Default::default()
            })
            .unwrap();
        assert!((fbeta(1.0, tp, fp, fn_).unwrap() - f1).abs() <= 1e-15);
        // beta^2 overflows (1e200) or underflows (1e-200): recall and precision exactly.
        let (recall, precision) = (tp / (tp + fn_), tp / (tp + fp));
        for beta in [1e160, 1e200, f64::MAX] {
            assert_eq!(fbeta(beta, tp, fp, fn_), Ok(recall), "beta {beta}");
        }
        for beta in [1e-160, 1e-200, f64::MIN_POSITIVE, 5e-324] {
            assert_eq!(fbeta(beta, tp, fp, fn_), Ok(precision), "beta {beta}");
        }
        // Near the limits the value lies between them, monotone in beta.
        let mid = fbeta(1e3, tp, fp, fn_).unwrap();
        assert!(mid > recall && mid < precision);
        // No true positives: 0 when there is an error of either kind, else undefined.
        assert_eq!(fbeta(1e200, 0.0, 5.0, 0.0), Ok(0.0));
        assert_eq!(fbeta(1e-200, 0.0, 0.0, 5.0), Ok(0.0));
        assert_eq!(fbeta(2.0, 0.0, 0.0, 0.0), Err(F_UNDEFINED));
        // Parsing keeps the beta; the value is finite.
        let m = Metric::parse("f1e200").unwrap();
        let c = BinaryCounts {
            tp,
            fp,
            fn_,
            tn: 4.0,
            ..Default::default()
        };
        assert_eq!(m.from_counts(&c), Ok(recall));
    }

    #[test]
    fn mcc_is_normalized_and_scale_free() {
        let (tp, fp, tn, fn_) = (3.0f64, 1.0, 4.0, 2.0);
        let want = (tp * tn - fp * fn_) / ((tp + fp) * (tp + fn_) * (tn + fp) * (tn + fn_)).sqrt();
        let base = mcc(tp, fp, tn, fn_).unwrap();
        assert!((base - want).abs() < 1e-15);
        // Every scale, including ones where the products of sums overflow (1e80: 1e320) or
        // underflow (1e-100: 1e-400), and powers of two where the result is bit-identical.
        for k in [-300, -200, -100, -20, 20, 80, 160, 300] {
            let s = 10f64.powi(k);
            let got = mcc(tp * s, fp * s, tn * s, fn_ * s).unwrap();
            assert!((got - want).abs() < 1e-14, "scale 1e{k}: {got} vs {want}");
        }
        for e in [-1000, -500, 500, 1000] {
            let s = crate::state::WeightScale::times_pow2(1.0, e);
            assert_eq!(
                mcc(tp * s, fp * s, tn * s, fn_ * s),
                Ok(base),
                "scale 2^{e}"
            );
        }
        // The largest finite cells: the total overflows.
        assert_eq!(
            mcc(f64::MAX, f64::MAX, f64::MAX, f64::MAX),
            Err(NOT_REPRESENTABLE)
        );
        // Perfect and inverted predictions, and an empty row or column.
        assert_eq!(mcc(5.0, 0.0, 7.0, 0.0), Ok(1.0));
        assert_eq!(mcc(0.0, 5.0, 0.0, 7.0), Ok(-1.0));
        assert_eq!(mcc(5.0, 2.0, 0.0, 0.0), Err(MCC_UNDEFINED));
        // Rare cells (fractions near 1e-200) do not underflow the denominator.
        let r = mcc(1e-200, 1e-200, 1.0, 1e-200).unwrap();
        assert!((r - 0.5).abs() < 1e-12, "{r}");
    }

    #[test]
    fn overflowing_denominators_are_not_representable_rather_than_0() {
        let m = f64::MAX;
        // tp + a fn overflows: tp / inf was 0 (reachable from raw counts).
        assert_eq!(fbeta(1.0, m, 0.0, m), Err(NOT_REPRESENTABLE));
        assert_eq!(fbeta(1e200, 1e308, 0.0, 1e308), Err(NOT_REPRESENTABLE));
        assert_eq!(fbeta(1e-200, 1e308, 1e308, 0.0), Err(NOT_REPRESENTABLE));
        // Non-finite cells: never NaN (inf / inf) nor 0 (a NaN tp).
        assert_eq!(fbeta(1.0, f64::INFINITY, 0.0, 1.0), Err(NOT_REPRESENTABLE));
        assert_eq!(fbeta(1.0, f64::NAN, 1.0, 1.0), Err(NOT_REPRESENTABLE));
        // Just below the overflow the value is the exact ratio (a = 1/2 at beta 1).
        let f = fbeta(1.0, m / 2.0, 0.0, m / 2.0).unwrap();
        assert!((f - 2.0 / 3.0).abs() <= 2.0 * f64::EPSILON, "{f}");
        let counts = |tp: f64, fp: f64, tn: f64, fn_: f64| BinaryCounts {
            w: tp + fp + tn + fn_,
            tp,
            fp,
            tn,
            fn_,
            ..Default::default()
        };
        for (metric, c) in [
            (Metric::FBeta(2.0), counts(m, 0.0, 0.0, m)),
            (Metric::Precision, counts(1e308, 1e308, 0.0, 0.0)),
            (Metric::F1, counts(5e307, m, 0.0, 0.0)),
            (Metric::Recall, counts(1e308, 0.0, 0.0, 1e308)),
            (Metric::Accuracy, counts(1e308, 1e308, 0.0, 0.0)),
            (Metric::BalancedAccuracy, counts(1e308, 0.0, 1.0, 1e308)),
        ] {
            assert_eq!(metric.from_counts(&c), Err(NOT_REPRESENTABLE), "{metric:?}");
        }
        // Halved, the same cells give the exact ratios.
        let c = counts(5e307, 5e307, 0.0, 0.0);
        assert_eq!(Metric::Precision.from_counts(&c), Ok(0.5));
    }

    #[test]
    fn only_a_rounding_overshoot_is_brought_into_range() {
        assert_eq!(in_range(0.25, 0.0, 1.0), Ok(0.25));
        assert_eq!(in_range(1.0 + 4.0 * f64::EPSILON, 0.0, 1.0), Ok(1.0));
        assert_eq!(in_range(-1e-12, 0.0, 1.0), Ok(0.0));
        assert_eq!(in_range(-1.0 - 1e-12, -1.0, 1.0), Ok(-1.0));
        assert_eq!(in_range(f64::NAN, 0.0, 1.0), Err(NOT_REPRESENTABLE));
        assert_eq!(in_range(1e300, 0.0, f64::INFINITY), Ok(1e300));
        // Sums of the same weights in different orders (hundreds of ulps at 10^6 rows).
        let c = BinaryCounts {
            w: 1.0,
            tp: 0.5,
            tn: 0.5 + 300.0 * f64::EPSILON,
            ..Default::default()
        };
        assert_eq!(Metric::Accuracy.from_counts(&c), Ok(1.0));
        // A defect's value (an accuracy of 1.3) is never shown as 1: an internal error, and a
        // failed assertion in debug builds.
        let c = BinaryCounts {
            w: 1.0,
            tp: 0.6,
            tn: 0.7,
            ..Default::default()
        };
        for (what, r) in [
            (
                "accuracy 1.3",
                std::panic::catch_unwind(|| Metric::Accuracy.from_counts(&c)),
            ),
            (
                "1 + 1e-6",
                std::panic::catch_unwind(|| in_range(1.0 + 1e-6, 0.0, 1.0)),
            ),
            (
                "mcc -1.5",
                std::panic::catch_unwind(|| in_range(-1.5, -1.0, 1.0)),
            ),
        ] {
            if cfg!(debug_assertions) {
                assert!(r.is_err(), "{what}: {r:?}");
            } else {
                assert_eq!(r.unwrap(), Err(OUT_OF_RANGE), "{what}");
            }
        }
    }

    #[test]
    fn rank_values_survive_extreme_sums() {
        let r = RankSums {
            pos: 1e200,
            neg: 1e200,
            auc_pairs: f64::MAX,
            ..Default::default()
        };
        // pos * neg overflows: dividing one sum at a time gives a finite number.
        assert!(rank_value(Metric::RocAuc, &r).is_ok_and(f64::is_finite));
        let r = RankSums {
            pos: 1e-200,
            neg: 1e-200,
            auc_pairs: 0.0,
            ..Default::default()
        };
        // pos * neg underflows to 0, and so does the pair count (0 / 0 was NaN, and a perfect
        // ranking read 0): not representable.
        assert_eq!(rank_value(Metric::RocAuc, &r), Err(NOT_REPRESENTABLE));
        let r = RankSums {
            pos: 1e-160,
            neg: 1e-160,
            auc_pairs: 1e-320,
            ..Default::default()
        };
        assert_eq!(rank_value(Metric::RocAuc, &r), Err(NOT_REPRESENTABLE));
        let r = RankSums {
            pos: 0.0,
            ap_sum: f64::INFINITY,
            ..Default::default()
        };
        assert_eq!(rank_value(Metric::AveragePrecision, &r), Err(NO_POSITIVES));
    }

    #[test]
    fn counts_give_textbook_values() {
        let c = BinaryCounts {
            n: 10,
            w: 10.0,
            tp: 3.0,
            fp: 1.0,
            tn: 4.0,
            fn_: 2.0,
            log_loss: 5.0,
            brier: 2.0,
        };
        assert_eq!(Metric::Accuracy.from_counts(&c), Ok(0.7));
        assert_eq!(Metric::Precision.from_counts(&c), Ok(0.75));
        assert_eq!(Metric::Recall.from_counts(&c), Ok(0.6));
        assert_eq!(Metric::F1.from_counts(&c), Ok(6.0 / 9.0));
        let mcc = (12.0 - 2.0) / (4.0f64 * 5.0 * 5.0 * 6.0).sqrt();
        assert!((Metric::Mcc.from_counts(&c).unwrap() - mcc).abs() < 1e-15);
        let empty = BinaryCounts {
            tn: 3.0,
            w: 3.0,
            n: 3,
            ..Default::default()
        };
        assert_eq!(
            Metric::Precision.from_counts(&empty),
            Err(NO_PREDICTED_POSITIVES)
        );
        assert_eq!(Metric::Recall.from_counts(&empty), Err(NO_POSITIVES));
    }
}
