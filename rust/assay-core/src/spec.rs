//! The job spec: what one evaluation computes (columns, slices, metrics, intervals, the task
//! family and its options), checked before any row is read. The engine's stages, the task
//! families and the bindings all read it; it depends on no stage.

use crate::bootstrap::IntervalSpec;
use crate::error::{AssayError, Result};
use crate::metrics::{Family, Metric};
use crate::reliability::CalibSpec;
use crate::slicing::SliceSpec;
pub use crate::task::TaskOptions;

/// How ROC-AUC and average precision are computed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum AucMode {
    /// Exact: keeps (score, label, weight, slice ids) of every row and sorts once.
    Exact,
    /// From a fixed histogram of `bins` equal-width score bins over [0, 1]: fixed memory.
    Binned(usize),
    /// From per-slice sorted runs merged down to at most this many runs per slice (see
    /// [`crate::sketch`]): bounded state, with a guaranteed error bound in the report.
    Sketch(usize),
}

/// What to do with rows whose score is NaN/inf/null or whose label is null.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum NanPolicy {
    Raise,
    Drop,
}

/// A complete evaluation job.
#[derive(Clone, Debug)]
pub struct EvalSpec {
    /// The task family: binary classification (`score` holds scores, `label` 0/1),
    /// regression (`score` holds the predictions, `label` numeric targets), multiclass or
    /// ranking (see `crate::task`).
    pub family: Family,
    /// The family's own options (see [`TaskOptions`]; `None` for binary classification, and
    /// for a regression with the defaults).
    pub task: TaskOptions,
    pub label: String,
    pub score: String,
    pub weight: Option<String>,
    pub threshold: f64,
    pub slices: Vec<SliceSpec>,
    /// Per slice spec, the one slice to report (its label, e.g. a discovered
    /// `"country=BR & device=mobile"`) instead of all of them; empty for none.
    pub slice_only: Vec<Option<String>>,
    /// The rows of an in-memory input (None for a stream read once). Jobs that keep rows
    /// reserve them once; a job whose only kept rows would be the overall slice's quantile
    /// bins instead holds on to the batches (the caller's memory, not a copy) and reads the
    /// few rows it needs from them a second time. The count is only a hint: any number of
    /// rows is handled.
    pub rows_hint: Option<u64>,
    pub metrics: Vec<Metric>,
    pub min_slice_size: u64,
    pub nan_policy: NanPolicy,
    pub auc: AucMode,
    /// Worker threads (None: all cores).
    pub n_threads: Option<usize>,
    /// Confidence intervals (None: point estimates only).
    pub interval: Option<IntervalSpec>,
    /// A paired comparison of `score` (the reference) with further models.
    pub compare: Option<CompareSpec>,
    /// Bins of the calibration metrics.
    pub calibration: CalibSpec,
    /// Build the reliability table of the calibration bins, with Wilson intervals at this
    /// level (`Evaluation::reliability`).
    pub reliability: Option<f64>,
    /// The most slices one slice spec may produce (None: no limit): a spec that passes it
    /// (an ID-like column as a slice) stops the pass with an error naming its columns.
    pub max_slices: Option<u64>,
    /// The columns whose values the pass hashes into the state's content hash, in this order
    /// (see `crate::fingerprint`); None: no hash.
    pub fingerprint: Option<Vec<String>>,
}

/// Models compared in one pass with the same replicate weights.
#[derive(Clone, Debug, PartialEq)]
pub struct CompareSpec {
    /// Name of the reference model (its column is `EvalSpec::score`).
    pub reference: String,
    /// (name, score column) of each other model.
    pub others: Vec<(String, String)>,
}

impl EvalSpec {
    /// Checks the job before any row is read: every option, and the combinations refused.
    pub fn validate(&self) -> Result<()> {
        // The family's options and what it refuses (multiclass, ranking, regression).
        crate::task::validate(self)?;
        if !self.threshold.is_finite() {
            return Err(AssayError::InvalidArgument(format!(
                "threshold must be a finite number, got {}",
                self.threshold
            )));
        }
        if self.metrics.is_empty() {
            return Err(AssayError::InvalidArgument(
                "metrics must name at least one metric".into(),
            ));
        }
        let foreign: Vec<String> = self
            .metrics
            .iter()
            .filter(|m| m.family() != self.family)
            .map(Metric::name)
            .collect();
        if !foreign.is_empty() {
            let family = self.family.name();
            let what = match foreign.as_slice() {
                [one] => format!("{one} is not a {family} metric"),
                many => format!("{} are not {family} metrics", many.join(", ")),
            };
            return Err(AssayError::InvalidArgument(format!(
                "{what}; task=\"{family}\" computes {}",
                crate::metrics::metrics_of(self.family).join(", ")
            )));
        }
        if let AucMode::Binned(b) = self.auc {
            if !(2..=1 << 20).contains(&b) {
                return Err(AssayError::InvalidArgument(format!(
                    "auc_bins must be in [2, 2^20], got {b}"
                )));
            }
        }
        if let AucMode::Sketch(k) = self.auc {
            if !(crate::sketch::MIN_MAX_RUNS..=crate::sketch::MAX_MAX_RUNS).contains(&k) {
                return Err(AssayError::InvalidArgument(format!(
                    "auc_max_runs must be in [{}, {}], got {k}",
                    crate::sketch::MIN_MAX_RUNS,
                    crate::sketch::MAX_MAX_RUNS
                )));
            }
            let quantile = self.metrics.contains(&Metric::Ace)
                || (self.calibration.rule == crate::reliability::BinRule::Quantile
                    && (self.reliability.is_some()
                        || self.metrics.iter().any(|m| {
                            m.uses_bins() || matches!(m, Metric::EceTopLabel | Metric::EceClasswise)
                        })));
            if quantile && self.metrics.iter().any(Metric::is_rank) {
                return Err(AssayError::InvalidArgument(
                    "quantile calibration bins (ace, calibration_strategy=\"quantile\") keep \
                     every row, which auc=\"sketch\" exists to avoid; use \
                     calibration_strategy=\"uniform\" (and ece instead of ace), or auc=\"exact\""
                        .into(),
                ));
            }
        }
        if let Some(iv) = &self.interval {
            iv.validate()?;
            if iv.slots() > 0
                && !matches!(self.auc, AucMode::Exact)
                && self.metrics.iter().any(Metric::is_rank)
            {
                let (mode, what) = match self.auc {
                    AucMode::Sketch(_) => ("sketch", "runs"),
                    _ => ("binned", "histogram"),
                };
                return Err(AssayError::InvalidArgument(format!(
                    "bootstrap intervals of roc_auc/average_precision need auc=\"exact\"; with \
                     auc=\"{mode}\" use ci_method=\"analytic\" (DeLong on the {what})"
                )));
            }
        }
        if let Some(c) = &self.compare {
            if c.others.is_empty() {
                return Err(AssayError::InvalidArgument(
                    "compare needs at least two models".into(),
                ));
            }
            match &self.interval {
                Some(iv) if iv.slots() > 0 => {}
                _ => {
                    return Err(AssayError::InvalidArgument(
                        "compare needs bootstrap=B (a paired bootstrap gives the interval of \
                         each difference) and ci_method \"percentile\", \"basic\" or \"bca\""
                            .into(),
                    ))
                }
            }
            let mut names = vec![&c.reference];
            names.extend(c.others.iter().map(|(n, _)| n));
            for (i, n) in names.iter().enumerate() {
                if names[..i].contains(n) {
                    return Err(AssayError::InvalidArgument(format!(
                        "model name {n:?} is given twice"
                    )));
                }
            }
        }
        self.calibration.validate()?;
        if let Some(level) = self.reliability {
            if !(level > 0.0 && level < 1.0) {
                return Err(AssayError::InvalidArgument(format!(
                    "ci must lie strictly between 0 and 1, got {level}"
                )));
            }
        }
        if !self.slice_only.is_empty() && self.slice_only.len() != self.slices.len() {
            return Err(AssayError::InvalidArgument(
                "slice_only must give one entry per slice spec".into(),
            ));
        }
        if self.n_threads == Some(0) {
            return Err(AssayError::InvalidArgument(
                "n_threads must be at least 1".into(),
            ));
        }
        Ok(())
    }
}
