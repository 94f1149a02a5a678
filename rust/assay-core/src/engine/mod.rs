//! Plans an evaluation job and drives it through its stages, each its own module with one
//! direction of dependency:
//!
//! - [`plan`]: what the job keeps (state shapes, kept rows, calibration routes), from the spec;
//! - [`accumulate`]: the pass over the record batches into a [`PartialState`];
//! - [`merge`]: partial states of shards merged by slice value, in a canonical order;
//! - [`finalize`]: a (merged) state into the report.
//!
//! [`evaluate`] is `accumulate` then `finalize` on one input. Rows are cut into logical chunks
//! of [`CHUNK_ROWS`] by global row position (`row_offset` + position in the input); each
//! chunk's state is updated row by row in row order and finished chunks fold into the total in
//! chunk order, so a result does not depend on the thread count or on how the rows were split
//! into batches.

pub mod accumulate;
pub mod blocks;
pub mod finalize;
pub mod merge;
pub mod plan;

use arrow_array::RecordBatch;
use arrow_schema::{ArrowError, SchemaRef};

use crate::bootstrap::IntervalSpec;
use crate::error::{AssayError, Result};
use crate::metrics::{Family, Metric};
use crate::reliability::CalibSpec;
use crate::report::Report;
use crate::slicing::SliceSpec;
pub use crate::state::partial::PartialState;

/// A rayon pool owned by one call (see [`crate::runtime::job_pool`]).
pub use crate::runtime::job_pool;
pub use accumulate::accumulate;
pub use finalize::finalize;
pub use merge::merge;

/// Rows per logical chunk: the unit of parallel work and of deterministic merging.
pub const CHUNK_ROWS: u64 = 1 << 16;
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
    /// The task family: binary classification (`score` holds scores, `label` 0/1) or
    /// regression (`score` holds the predictions, `label` numeric targets).
    pub family: Family,
    pub label: String,
    pub score: String,
    pub weight: Option<String>,
    /// The power of regression's `tweedie_deviance` and `d2_tweedie` (0: squared error, 1:
    /// Poisson, 2: Gamma; in (-inf, 0] or [1, inf), as scikit-learn).
    pub power: f64,
    /// Regression: the (lower, upper) columns of a prediction interval (coverage,
    /// interval_width).
    pub bounds: Option<(String, String)>,
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
    /// The multiclass family's options (None for the other families).
    pub multiclass: Option<MulticlassSpec>,
    /// The ranking family's options (None for the other families).
    pub ranking: Option<crate::ranking::RankingSpec>,
}

/// The options of a multiclass job.
#[derive(Clone, Debug, PartialEq)]
pub struct MulticlassSpec {
    /// The K classes, in score column order.
    pub classes: crate::multiclass::Classes,
    /// Per model (the reference first): its K score columns, or empty when the model's
    /// scores are one list column (`EvalSpec::score`, `CompareSpec::others`).
    pub score_columns: Vec<Vec<String>>,
    pub normalize: crate::multiclass::Normalize,
}

impl MulticlassSpec {
    /// The classes K.
    pub fn k(&self) -> usize {
        self.classes.names.len()
    }

    /// The top-k accuracies asked for, in metric order.
    pub fn top_ks(metrics: &[Metric]) -> Vec<usize> {
        metrics
            .iter()
            .filter_map(|m| match m {
                Metric::TopK(k) => Some(*k),
                _ => None,
            })
            .collect()
    }
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
    pub(crate) fn validate(&self) -> Result<()> {
        match (&self.multiclass, self.family) {
            (Some(mc), Family::Multiclass) => {
                let k = mc.k();
                if !(2..=crate::multiclass::MAX_CLASSES).contains(&k) {
                    return Err(AssayError::InvalidArgument(format!(
                        "a multiclass job needs 2 to {} classes, got {k}",
                        crate::multiclass::MAX_CLASSES
                    )));
                }
                let mut seen = std::collections::HashSet::new();
                if let Some(dup) = mc.classes.names.iter().find(|c| !seen.insert(*c)) {
                    return Err(AssayError::InvalidArgument(format!(
                        "classes= names {dup:?} twice; each class must be named once"
                    )));
                }
                if mc.classes.ints.as_ref().is_some_and(|v| v.len() != k) {
                    return Err(AssayError::InvalidArgument(
                        "the integer values of the classes must be as many as the classes".into(),
                    ));
                }
                let models = 1 + self.compare.as_ref().map_or(0, |c| c.others.len());
                if mc.score_columns.len() != models {
                    return Err(AssayError::InvalidArgument(format!(
                        "a multiclass job names the score columns of {} models, it has {models}",
                        mc.score_columns.len()
                    )));
                }
                if let Some(cols) = mc
                    .score_columns
                    .iter()
                    .find(|c| !c.is_empty() && c.len() != k)
                {
                    return Err(AssayError::InvalidArgument(format!(
                        "score= names {} columns, but there are {k} classes (one score column \
                         per class, in the order of classes=)",
                        cols.len()
                    )));
                }
                if self.reliability.is_some() {
                    return Err(AssayError::InvalidArgument(
                        "reliability tables are for binary scores; task=\"multiclass\" has \
                         ece_top_label and ece_classwise"
                            .into(),
                    ));
                }
            }
            (None, Family::Multiclass) => {
                return Err(AssayError::InvalidArgument(
                    "task=\"multiclass\" needs its classes".into(),
                ))
            }
            (Some(_), _) => {
                return Err(AssayError::InvalidArgument(
                    "classes= and normalize= apply to task=\"multiclass\"".into(),
                ))
            }
            (None, _) => {}
        }
        match (&self.ranking, self.family) {
            (Some(_), Family::Ranking) => {
                if self.interval.as_ref().is_some_and(|iv| iv.row_id.is_some()) {
                    return Err(AssayError::InvalidArgument(
                        "task=\"ranking\" resamples queries (the query column is the \
                         bootstrap's unit): row_id= does not apply"
                            .into(),
                    ));
                }
                if self.reliability.is_some() {
                    return Err(AssayError::InvalidArgument(
                        "reliability tables are for binary scores, not task=\"ranking\"".into(),
                    ));
                }
                if self
                    .interval
                    .as_ref()
                    .is_some_and(|iv| iv.method == crate::bootstrap::CiMethod::Analytic)
                {
                    return Err(AssayError::InvalidArgument(
                        crate::ranking::NO_ANALYTIC_RANKING.into(),
                    ));
                }
                crate::ranking::check_metrics(&self.metrics)?;
            }
            (None, Family::Ranking) => {
                return Err(AssayError::InvalidArgument(
                    "task=\"ranking\" needs query= (the column of the query each row belongs \
                     to)"
                    .into(),
                ))
            }
            (Some(_), _) => {
                return Err(AssayError::InvalidArgument(
                    "query=, gain=, ties= and empty= apply to task=\"ranking\"".into(),
                ))
            }
            (None, _) => {}
        }
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
        if !self.power.is_finite() || (self.power > 0.0 && self.power < 1.0) {
            return Err(AssayError::InvalidArgument(format!(
                "power (of the Tweedie deviance) must be <= 0 or >= 1, got {}",
                self.power
            )));
        }
        let wants_bounds = self
            .metrics
            .iter()
            .find(|m| matches!(m, Metric::Coverage | Metric::IntervalWidth));
        if let (Some(m), None) = (wants_bounds, &self.bounds) {
            let how = if self.compare.is_some() {
                "which a comparison does not take (evaluate one model with lower= and upper=)"
            } else {
                "pass lower= and upper="
            };
            return Err(AssayError::InvalidArgument(format!(
                "{} needs the prediction interval's columns: {how}",
                m.name()
            )));
        }
        if self.bounds.is_some() && (self.compare.is_some() || self.family != Family::Regression) {
            return Err(AssayError::InvalidArgument(
                "lower= and upper= (a prediction interval) apply to task=\"regression\" with one \
                 model"
                    .into(),
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
                if self.family == Family::Multiclass {
                    return Err(AssayError::InvalidArgument(format!(
                        "bootstrap intervals of the multiclass ROC-AUCs need auc=\"exact\" \
                         (auc=\"{mode}\" keeps one {} per slice and class, without \
                         replicates); for intervals of the other metrics, evaluate the ROC-AUCs \
                         in a job of their own",
                        if mode == "sketch" {
                            "run sketch"
                        } else {
                            "histogram"
                        }
                    )));
                }
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

/// The output of a job: the report plus bookkeeping.
pub struct Evaluation {
    /// The report of `score` (the reference model of a comparison).
    pub report: Report,
    /// Comparison jobs: the report of each other model, and the paired differences.
    pub others: Vec<Report>,
    pub comparison: Option<RecordBatch>,
    /// The reliability table of the reference model (when `EvalSpec::reliability` is set).
    pub reliability: Option<RecordBatch>,
    /// A task family's own tables of the reference model (multiclass: `per_class` and
    /// `confusion`), by name.
    pub family_tables: Vec<(&'static str, RecordBatch)>,
    pub rows: u64,
    pub dropped: u64,
}

/// Runs `spec` over `batches` (with `schema`): [`accumulate`] then [`finalize`]. `interrupted`
/// is polled between batches on the calling thread; when it returns true the job stops with
/// [`AssayError::Interrupted`]. The long stages after the pass (sorts, rank and replicate
/// walks, finalization) poll the job's [`crate::runtime::Interrupt`] (see
/// [`crate::runtime::run_job`]) too.
pub fn evaluate<I>(
    schema: SchemaRef,
    batches: I,
    spec: &EvalSpec,
    interrupted: &dyn Fn() -> bool,
) -> Result<Evaluation>
where
    I: Iterator<Item = std::result::Result<RecordBatch, ArrowError>>,
{
    // One pool for both stages: its threads (and their allocator caches) stay warm.
    let pool = job_pool(spec.n_threads)?;
    let state = accumulate::accumulate_in(schema, batches, spec, 0, interrupted, &pool, true)?;
    finalize::finalize_owned(state, spec, interrupted, &pool)
}
