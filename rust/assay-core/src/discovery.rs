//! Slice discovery: the subgroups (conjunctions of feature = value predicates) where the
//! model's error is much higher than average. See `docs/discovery.md` for the definitions.
//!
//! One pass reads the rows into dense feature codes and per-row errors; the search then runs
//! level by level over the lattice of conjunctions. `SliceLine` (Sagadeeva & Boehm, 2021)
//! enumerates candidates by joining the valid slices of the level below and prunes them with
//! upper bounds of the score computed from their parents, so its top-k is exact; `Beam`
//! extends only the best slices of each level. Candidates are evaluated in parallel, one
//! counting pass per combination of features, with exact (sorted) predicate keys.

use std::sync::Arc;

use arrow_array::builder::{
    Float64Builder, ListBuilder, StringBuilder, UInt32Builder, UInt64Builder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_buffer::NullBuffer;
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef};
use hashbrown::{HashMap, HashSet};
use rayon::prelude::*;

use crate::bootstrap::{norm_cdf, norm_ppf};
use crate::engine::{job_pool, NanPolicy};
use crate::error::{invalid, AssayError, Result};
use crate::input::{check_label_type, check_numeric_type, column_index, f64_view, validity};
use crate::slicing::{Feature, Slicer};

/// The per-row error a search ranks slices by.
#[derive(Clone, Debug, PartialEq)]
pub enum ErrorKind {
    /// Log loss of the score (a probability) against the 0/1 label.
    LogLoss,
    /// 1 when `score >= threshold` disagrees with the label.
    ZeroOne(f64),
    /// (score - label)^2.
    Squared,
    /// A regressor's residual: |prediction - label| (or its square with `squared`); labels
    /// are any finite numbers.
    Residual { squared: bool },
    /// A column of per-row errors (finite, >= 0).
    Column(String),
    /// A multiclass model's log loss of its label's probability (or with `zero_one`, 1 when
    /// the argmax is not the label); the scores are a list column of K probabilities.
    Multiclass {
        zero_one: bool,
        classes: crate::multiclass::Classes,
        normalize: crate::multiclass::Normalize,
    },
}

/// How the lattice is searched.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Method {
    SliceLine,
    Beam(usize),
}

/// A slice discovery job.
#[derive(Clone, Debug)]
pub struct DiscoverySpec {
    /// One feature per entry (categorical column or binned numeric column).
    pub features: Vec<Feature>,
    pub error: ErrorKind,
    pub label: Option<String>,
    pub score: Option<String>,
    pub k: usize,
    pub max_level: usize,
    /// Minimum slice size in rows (>= 1).
    pub min_support: u64,
    pub alpha: f64,
    pub method: Method,
    pub max_values: usize,
    pub dedupe: bool,
    pub fdr: f64,
    pub nan_policy: NanPolicy,
    pub n_threads: Option<usize>,
    /// A paired search (`discover_regressions`): `Some` names the reference model's column.
    /// Each row's error is then `error(score) - error(reference)` (any sign), slices are ranked
    /// by their contribution (their sum of differences over all rows) and tested with a
    /// paired z-test.
    pub paired: Option<Paired>,
    /// The columns whose values the pass hashes into `Discovery::content_hash`, in this
    /// order (see `crate::fingerprint`); None: no hash.
    pub fingerprint: Option<Vec<String>>,
}

/// What a paired search adds to a job.
#[derive(Clone, Debug)]
pub struct Paired {
    /// The reference model's column (scores or predictions, as `score`).
    pub reference: String,
    /// The level of the (two-sided) intervals of the mean difference; `(1 - level) / 2` is
    /// the one-sided significance level of `significant` and of dedupe, so a slice is
    /// significant (uncorrected) exactly when its interval lies above 0.
    pub level: f64,
    /// How the p-values are adjusted over the family of scored candidates.
    pub correction: Correction,
}

impl Paired {
    /// The one-sided significance level, `(1 - level) / 2`.
    pub fn alpha(&self) -> f64 {
        0.5 * (1.0 - self.level)
    }

    /// The level the correction would test one more hypothesis at, after rejecting `r` of
    /// the `m` in this family (those with an adjusted p-value at most [`Paired::alpha`]):
    /// Holm's next step `alpha / (m - r)`, Benjamini-Hochberg's `alpha (r + 1) / m`, `alpha`
    /// itself without a correction (all at most `alpha`). Dedupe tests at this level, so a
    /// slice kept for the rows it does not share with a slice above it is significant as
    /// the next member of the family would be.
    fn rejection_level(&self, adjusted: &[f64]) -> f64 {
        let alpha = self.alpha();
        let m = adjusted.len() as f64;
        let r = adjusted.iter().filter(|q| **q <= alpha).count() as f64;
        match self.correction {
            Correction::None => alpha,
            Correction::Holm if m > r => alpha / (m - r),
            Correction::Holm => alpha,
            Correction::Bh if m > 0.0 => (alpha * (r + 1.0) / m).min(alpha),
            Correction::Bh => alpha,
        }
    }
}

/// A multiple-testing correction over the family of scored candidates.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Correction {
    /// Holm's step-down (family-wise error).
    Holm,
    /// Benjamini-Hochberg (false-discovery rate).
    Bh,
    /// None: the adjusted p-value is the p-value.
    None,
}

/// The result: the ranked slices and bookkeeping.
pub struct Discovery {
    pub table: RecordBatch,
    pub rows: u64,
    pub dropped: u64,
    pub error_mean: f64,
    /// Candidates scored (size >= min_support), the family of the Benjamini-Hochberg q-values.
    pub n_scored: u64,
    /// The content hash of the rows read (`DiscoverySpec::fingerprint`).
    pub content_hash: Option<u64>,
}

impl DiscoverySpec {
    fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(AssayError::InvalidArgument(m));
        if self.features.is_empty() {
            return bad("discover_slices needs at least one feature".into());
        }
        if self.k < 1 {
            return bad(format!("k must be at least 1, got {}", self.k));
        }
        if self.k > MAX_K {
            return bad(format!("k must be at most {MAX_K}, got {}", self.k));
        }
        if self.features.len() > u16::MAX as usize {
            return bad(format!(
                "discover_slices takes at most {} features, got {}",
                u16::MAX,
                self.features.len()
            ));
        }
        if self.max_level < 1 {
            return bad(format!(
                "max_level must be at least 1, got {}",
                self.max_level
            ));
        }
        if !(self.alpha > 0.0 && self.alpha <= 1.0) {
            return bad(format!("alpha must lie in (0, 1], got {}", self.alpha));
        }
        if self.min_support < 1 {
            return bad("min_support must be at least 1 row".into());
        }
        if !(self.fdr > 0.0 && self.fdr < 1.0) {
            return bad(format!("fdr must lie in (0, 1), got {}", self.fdr));
        }
        if !(1..=u16::MAX as usize).contains(&self.max_values) {
            return bad(format!(
                "max_values must be in [1, 65535], got {}",
                self.max_values
            ));
        }
        if let Method::Beam(w) = self.method {
            if w < 1 {
                return bad(format!("beam_width must be at least 1, got {w}"));
            }
            if w > MAX_CANDIDATES {
                return bad(format!(
                    "beam_width must be at most {MAX_CANDIDATES}, got {w}"
                ));
            }
        }
        if let ErrorKind::ZeroOne(t) = self.error {
            if !t.is_finite() {
                return bad(format!("threshold must be a finite number, got {t}"));
            }
        }
        if let Some(p) = &self.paired {
            if matches!(self.error, ErrorKind::Column(_)) {
                return bad(
                    "a paired search computes each model's error itself: error must be a \
                     built-in error, not a column"
                        .into(),
                );
            }
            if !(p.level > 0.0 && p.level < 1.0) {
                return bad(format!("ci must lie in (0, 1), got {}", p.level));
            }
        }
        Ok(())
    }
}

/// The largest `k` (slices reported).
pub const MAX_K: usize = 1_000_000;

/// The most candidates one level of the search may score: their predicates and statistics
/// are held at once (about 100 bytes each).
pub const MAX_CANDIDATES: usize = 1 << 23;

/// The error of a level whose candidates exceed [`MAX_CANDIDATES`].
fn too_many_candidates(level: usize) -> AssayError {
    AssayError::InvalidArgument(format!(
        "the search would score more than {MAX_CANDIDATES} candidate slices at level {level}; \
         lower max_level, beam_width or max_values, or use fewer features"
    ))
}

/// Sufficient statistics of a slice's errors (a paired search's errors are differences of
/// two models' errors, of any sign).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Stats {
    size: u64,
    sum: f64,
    sq: f64,
    /// The largest error, or 0 when every error is below 0 (an upper bound either way).
    max: f64,
    /// The sum of the positive errors (`sum` when no error is negative): no subset of the
    /// slice has a larger error sum.
    pos: f64,
    /// A paired search's sum of the reference model's errors (0 otherwise).
    base: f64,
}

impl Stats {
    #[inline(always)]
    fn add(&mut self, e: f64, b: f64) {
        self.size += 1;
        self.sum += e;
        self.sq += e * e;
        self.max = self.max.max(e);
        self.pos += e.max(0.0);
        self.base += b;
    }
}

/// A conjunction: (feature, value code) pairs sorted by feature.
type Preds = Vec<(u16, u16)>;

#[derive(Clone, Debug)]
struct Scored {
    preds: Preds,
    stats: Stats,
    score: f64,
    /// Index in the family of scored candidates (for the q-value).
    family: usize,
}

/// The rows as the search reads them.
struct Data {
    /// Per feature, the value code of each row.
    codes: Vec<Vec<u16>>,
    /// Per feature, the number of values.
    domains: Vec<usize>,
    errors: Vec<f64>,
    /// A paired search's per-row errors of the reference model (empty otherwise).
    base: Vec<f64>,
    total: Stats,
}

impl Data {
    /// The reference error of row `i` (0 outside a paired search).
    #[inline(always)]
    fn base(&self, i: usize) -> f64 {
        if self.base.is_empty() {
            0.0
        } else {
            self.base[i]
        }
    }
}

/// Runs `spec` over `batches`.
pub fn discover_slices<I>(
    schema: SchemaRef,
    batches: I,
    spec: &DiscoverySpec,
    interrupted: &dyn Fn() -> bool,
) -> Result<Discovery>
where
    I: Iterator<Item = std::result::Result<RecordBatch, ArrowError>>,
{
    spec.validate()?;
    let stop = || interrupted() || crate::runtime::interrupted();
    let interrupted: &dyn Fn() -> bool = &stop;
    let pool = job_pool(spec.n_threads)?;
    let specs: Vec<Vec<Feature>> = spec.features.iter().map(|f| vec![f.clone()]).collect();
    for (i, f) in spec.features.iter().enumerate() {
        if spec.features[..i].iter().any(|g| g.column() == f.column()) {
            return Err(AssayError::InvalidArgument(format!(
                "feature {:?} is given twice",
                f.column()
            )));
        }
    }
    let mut slicer = Slicer::new(&schema, &specs)?;
    // The content hash (`fingerprint`), taken from each batch as it passes.
    let hash = std::cell::Cell::new(0u64);
    let mut at = 0u64;
    let batches = batches.inspect(|b| {
        if let (Ok(b), Some(cols)) = (b, &spec.fingerprint) {
            let h = pool.install(|| crate::fingerprint::batch_hash(b, cols, at));
            hash.set(hash.get().wrapping_add(h));
            at = at.wrapping_add(b.num_rows() as u64);
        }
    });
    let (data, rows, dropped) = read(&schema, batches, spec, &mut slicer, &pool, interrupted)?;
    let n = data.total.size;
    let mean = data.total.sum / n as f64;
    let ranks: Vec<Vec<usize>> = (0..spec.features.len())
        .map(|f| {
            let mut r = vec![usize::MAX; data.domains[f]];
            for (pos, id) in slicer.ordered_ids(f, |_| true).into_iter().enumerate() {
                r[id as usize] = pos;
            }
            r
        })
        .collect();
    let search = Search {
        spec,
        data: &data,
        mean,
        ranks: &ranks,
        k: if spec.dedupe {
            (4 * spec.k).max(spec.k + 20)
        } else {
            spec.k
        },
    };
    let (mut top, family) = if data.total.pos > 0.0 {
        search.run(&pool, interrupted)?
    } else {
        // No error anywhere (no row the model got worse on): no slice is worse than the rest.
        (Vec::new(), Vec::new())
    };
    let pvals: Vec<f64> = family
        .iter()
        .map(|s| match spec.paired {
            Some(_) => paired_greater(s),
            None => welch_greater(s, &data.total),
        })
        .collect();
    if interrupted() {
        return Err(AssayError::Interrupted);
    }
    let (qvals, fdr) = match &spec.paired {
        Some(p) => {
            let adjusted = adjust(&pvals, p.correction);
            let cut = p.rejection_level(&adjusted);
            (adjusted, cut)
        }
        None => (benjamini_hochberg(&pvals), spec.fdr),
    };
    if spec.dedupe {
        top = match spec.paired {
            Some(_) => dedupe_paired(top, &data, fdr, spec.k, &pool, interrupted)?,
            None => dedupe(top, fdr, spec.k),
        };
    }
    top.truncate(spec.k);
    let table = match &spec.paired {
        Some(p) => paired_output(&top, &slicer, &data, &pvals, &qvals, p)?,
        None => output(&top, &slicer, &data, mean, &pvals, &qvals, spec.fdr)?,
    };
    Ok(Discovery {
        table,
        rows,
        dropped,
        error_mean: if n > 0 { mean } else { f64::NAN },
        n_scored: family.len() as u64,
        content_hash: spec.fingerprint.as_ref().map(|_| hash.get()),
    })
}

/// Reads every batch: feature codes and per-row errors of the kept rows.
fn read<I>(
    schema: &SchemaRef,
    batches: I,
    spec: &DiscoverySpec,
    slicer: &mut Slicer,
    pool: &rayon::ThreadPool,
    interrupted: &dyn Fn() -> bool,
) -> Result<(Data, u64, u64)>
where
    I: Iterator<Item = std::result::Result<RecordBatch, ArrowError>>,
{
    let role = |name: &Option<String>, what: &str| -> Result<usize> {
        let name = name.as_deref().ok_or_else(|| {
            AssayError::InvalidArgument(format!("this error needs a {what} column"))
        })?;
        column_index(schema, name)
    };
    let (label_idx, score_idx, col_idx) = match &spec.error {
        ErrorKind::Column(c) => {
            let i = column_index(schema, c)?;
            check_numeric_type(c, "an error column", schema.field(i).data_type())?;
            (None, None, Some(i))
        }
        ErrorKind::Multiclass { classes, .. } => {
            let (l, s) = (role(&spec.label, "label")?, role(&spec.score, "score")?);
            let k = classes.names.len();
            crate::multiclass::check_label_type(schema.field(l).data_type(), classes)
                .map_err(|m| crate::error::schema(spec.label.as_deref().unwrap_or(""), m))?;
            crate::multiclass::check_score_type(schema.field(s).data_type(), k, false)
                .map_err(|m| crate::error::schema(spec.score.as_deref().unwrap_or(""), m))?;
            (Some(l), Some(s), None)
        }
        _ => {
            let (l, s) = (role(&spec.label, "label")?, role(&spec.score, "score")?);
            let label = spec.label.as_deref().unwrap_or("");
            if matches!(spec.error, ErrorKind::Residual { .. }) {
                check_numeric_type(label, "label", schema.field(l).data_type())?;
            } else {
                check_label_type(label, schema.field(l).data_type())?;
            }
            let score = spec.score.as_deref().unwrap_or("");
            check_numeric_type(score, "score", schema.field(s).data_type())?;
            (Some(l), Some(s), None)
        }
    };
    let ref_idx = match &spec.paired {
        Some(p) => {
            let i = column_index(schema, &p.reference)?;
            let dt = schema.field(i).data_type();
            match &spec.error {
                // (A multiclass reference model: a list column of its K probabilities.)
                ErrorKind::Multiclass { classes, .. } => {
                    crate::multiclass::check_score_type(dt, classes.names.len(), false)
                        .map_err(|m| crate::error::schema(&p.reference, m))?
                }
                _ => check_numeric_type(&p.reference, "score", dt)?,
            }
            Some(i)
        }
        None => None,
    };
    let nf = spec.features.len();
    let mut codes: Vec<Vec<u16>> = vec![Vec::new(); nf];
    let mut errors: Vec<f64> = Vec::new();
    let mut base: Vec<f64> = Vec::new();
    let (mut rows, mut dropped) = (0u64, 0u64);
    let drop = spec.nan_policy == NanPolicy::Drop;
    for (batch_index, batch) in batches.enumerate() {
        let Some(batch) = crate::input::next_batch(schema, batch, batch_index, interrupted)? else {
            continue;
        };
        let len = batch.num_rows();
        let ids = pool.install(|| slicer.encode_batch(&batch))?;
        for (f, feature) in spec.features.iter().enumerate() {
            let nvals = slicer.n_ids(f);
            if nvals > spec.max_values {
                return Err(AssayError::InvalidArgument(format!(
                    "feature {:?} has more than {} distinct values; bucket a numeric column \
                     with assay.bins({:?}, n) or raise max_values",
                    feature.column(),
                    spec.max_values,
                    feature.column()
                )));
            }
        }
        let (mut b1, mut b2, mut b3) = (Vec::new(), Vec::new(), Vec::new());
        let col = |i: usize| batch.column(i).clone();
        // Each kept row's (error, reference error); the reference error is 0 outside a
        // paired search.
        let keep_err: Vec<Option<(f64, f64)>> = match (&spec.error, label_idx, score_idx) {
            (
                ErrorKind::Multiclass {
                    zero_one,
                    classes,
                    normalize,
                },
                Some(l),
                Some(s),
            ) => {
                let lname = spec.label.as_deref().unwrap_or("");
                let errors = |s: usize, sname: &str| {
                    multiclass_errors(
                        &col(l),
                        &col(s),
                        (*zero_one, classes, *normalize),
                        (lname, sname),
                        rows,
                        drop,
                    )
                };
                let model = errors(s, spec.score.as_deref().unwrap_or(""))?;
                match (ref_idx, &spec.paired) {
                    // A paired search: each row's (difference, reference error), as below;
                    // a row either model cannot score is dropped for both.
                    (Some(r), Some(p)) => model
                        .into_iter()
                        .zip(errors(r, &p.reference)?)
                        .map(|(m, r)| {
                            let (e, b) = (m?.0, r?.0);
                            Some((e - b, b))
                        })
                        .collect(),
                    _ => model,
                }
            }
            _ => match (label_idx, score_idx, col_idx) {
                (_, _, Some(c)) => {
                    let a: ArrayRef = col(c);
                    let nulls = validity(&a);
                    let v = f64_view(&a, 0, len, &mut b1);
                    let name = match &spec.error {
                        ErrorKind::Column(n) => n.as_str(),
                        _ => "",
                    };
                    let mut out = Vec::with_capacity(len);
                    for (i, e) in v.iter().enumerate() {
                        let row = rows + i as u64;
                        if nulls.as_ref().is_some_and(|n| n.is_null(i)) || e.is_nan() {
                            if drop {
                                out.push(None);
                                continue;
                            }
                            return Err(invalid(name, format!("error is null or NaN at row {row}; pass nan_policy=\"drop\" to drop such rows")));
                        }
                        if !(e.is_finite() && *e >= 0.0) {
                            return Err(invalid(
                                name,
                                format!("errors must be finite and >= 0; found {e:?} at row {row}"),
                            ));
                        }
                        out.push(Some((*e, 0.0)));
                    }
                    out
                }
                (Some(l), Some(s), None) => {
                    let (la, sa) = (col(l), col(s));
                    let ra = ref_idx.map(col);
                    let (ln, sn): (Option<NullBuffer>, Option<NullBuffer>) =
                        (validity(&la), validity(&sa));
                    let rn: Option<NullBuffer> = ra.as_ref().and_then(validity);
                    let y = f64_view(&la, 0, len, &mut b1);
                    let p = f64_view(&sa, 0, len, &mut b2);
                    let r: &[f64] = match &ra {
                        Some(a) => f64_view(a, 0, len, &mut b3),
                        None => &[],
                    };
                    let (lname, sname) = (
                        spec.label.as_deref().unwrap_or(""),
                        spec.score.as_deref().unwrap_or(""),
                    );
                    let rname = spec.paired.as_ref().map_or("", |p| p.reference.as_str());
                    let residual = matches!(spec.error, ErrorKind::Residual { .. });
                    // The error of output `pv` (of column `name`) against label `yv`.
                    let error_of = |yv: f64, pv: f64, name: &str, row: u64| -> Result<f64> {
                        if let ErrorKind::Residual { squared } = spec.error {
                            let e = (pv - yv).abs();
                            return Ok(if squared { e * e } else { e });
                        }
                        Ok(match spec.error {
                            ErrorKind::LogLoss => {
                                if !(0.0..=1.0).contains(&pv) {
                                    return Err(invalid(name, format!("score {pv:?} at row {row} is outside [0, 1]; error=\"log_loss\" needs probabilities")));
                                }
                                crate::fastmath::log_loss(yv == 1.0, pv)
                            }
                            ErrorKind::ZeroOne(t) => ((pv >= t) != (yv == 1.0)) as u8 as f64,
                            ErrorKind::Squared => (pv - yv) * (pv - yv),
                            ErrorKind::Residual { .. }
                            | ErrorKind::Column(_)
                            | ErrorKind::Multiclass { .. } => unreachable!(),
                        })
                    };
                    let mut out = Vec::with_capacity(len);
                    for i in 0..len {
                        let row = rows + i as u64;
                        let (yv, pv) = (y[i], p[i]);
                        let rv = r.get(i).copied().unwrap_or(0.0);
                        let bad_label = ln.as_ref().is_some_and(|n| n.is_null(i))
                            || yv.is_nan()
                            || (residual && !yv.is_finite());
                        let bad_score =
                            sn.as_ref().is_some_and(|n| n.is_null(i)) || !pv.is_finite();
                        let bad_ref = ra.is_some()
                            && (rn.as_ref().is_some_and(|n| n.is_null(i)) || !rv.is_finite());
                        if bad_label || bad_score || bad_ref {
                            if drop {
                                out.push(None);
                                continue;
                            }
                            let what = if bad_score {
                                sname
                            } else if bad_ref {
                                rname
                            } else {
                                lname
                            };
                            return Err(invalid(what, format!("null, NaN or infinite value at row {row}; pass nan_policy=\"drop\" to drop such rows")));
                        }
                        if !residual && yv != 0.0 && yv != 1.0 {
                            return Err(invalid(
                                lname,
                                format!(
                                "labels must be 0 or 1 (or booleans); found {yv:?} at row {row}"
                            ),
                            ));
                        }
                        let e = error_of(yv, pv, sname, row)?;
                        if ra.is_some() {
                            let b = error_of(yv, rv, rname, row)?;
                            out.push(Some((e - b, b)));
                        } else {
                            out.push(Some((e, 0.0)));
                        }
                    }
                    out
                }
                _ => unreachable!("the error's columns were resolved above"),
            },
        };
        for (i, e) in keep_err.iter().enumerate() {
            match e {
                Some((e, b)) => {
                    errors.push(*e);
                    if ref_idx.is_some() {
                        base.push(*b);
                    }
                    for f in 0..nf {
                        codes[f].push(ids[f][i] as u16);
                    }
                }
                None => dropped += 1,
            }
        }
        rows += len as u64;
    }
    if errors.is_empty() {
        return Err(crate::error::no_rows(rows));
    }
    let mut total = Stats::default();
    for (i, e) in errors.iter().enumerate() {
        total.add(*e, base.get(i).copied().unwrap_or(0.0));
    }
    let domains = (0..nf).map(|f| slicer.n_ids(f)).collect();
    Ok((
        Data {
            codes,
            domains,
            errors,
            base,
            total,
        },
        rows,
        dropped,
    ))
}

struct Search<'a> {
    spec: &'a DiscoverySpec,
    data: &'a Data,
    mean: f64,
    ranks: &'a [Vec<usize>],
    /// Slices kept in the top list (more than the user's k with dedupe).
    k: usize,
}

impl Search<'_> {
    fn score(&self, s: &Stats) -> f64 {
        if self.spec.paired.is_some() {
            // The slice's contribution to the overall change of the mean error.
            return s.sum / self.data.total.size as f64;
        }
        let a = self.spec.alpha;
        let n = self.data.total.size as f64;
        let size = s.size as f64;
        a * (s.sum / size / self.mean - 1.0) - (1.0 - a) * (n / size - 1.0)
    }

    /// The largest score a slice of at most `ss` rows, error sum at most `se` and largest
    /// row error at most `sm` can reach with at least `min_support` rows: the score is
    /// monotone between the probe points `min_support`, `se / sm` and `ss`.
    ///
    /// A paired search's score is a slice's error sum over all rows `n`: no subset has a
    /// larger error sum than `se` (which bounds the sum of the positive errors).
    fn upper_bound(&self, ss: f64, se: f64, sm: f64) -> f64 {
        let a = self.spec.alpha;
        let n = self.data.total.size as f64;
        let sigma = self.spec.min_support as f64;
        if self.spec.paired.is_some() {
            return if ss >= sigma {
                se / n
            } else {
                f64::NEG_INFINITY
            };
        }
        let knee = if sm > 0.0 {
            (se / sm).max(sigma)
        } else {
            sigma
        };
        [sigma, knee.min(ss), ss]
            .iter()
            .filter(|s| **s >= sigma && **s <= ss)
            .map(|s| {
                let e = (s * sm).min(se);
                a * (e / s / self.mean - 1.0) - (1.0 - a) * (n / s - 1.0)
            })
            .fold(f64::NEG_INFINITY, f64::max)
    }

    /// Orders slices: score descending, then level, then predicates in report order.
    fn order(&self, a: &Scored, b: &Scored) -> std::cmp::Ordering {
        b.score
            .total_cmp(&a.score)
            .then(a.preds.len().cmp(&b.preds.len()))
            .then_with(|| {
                let key = |p: &Preds| -> Vec<(u16, usize)> {
                    p.iter()
                        .map(|(f, v)| (*f, self.ranks[*f as usize][*v as usize]))
                        .collect()
                };
                key(&a.preds).cmp(&key(&b.preds))
            })
    }

    /// The search, level by level; `interrupted` is polled between levels on the calling
    /// thread (each level's work runs in `pool`).
    fn run(
        &self,
        pool: &rayon::ThreadPool,
        interrupted: &dyn Fn() -> bool,
    ) -> Result<(Vec<Scored>, Vec<Stats>)> {
        let nf = self.data.codes.len();
        let mut family: Vec<Stats> = Vec::new();
        let mut top: Vec<Scored> = Vec::new();
        // Level 1: every (feature, value).
        let level1: Vec<Preds> = (0..nf)
            .flat_map(|f| (0..self.data.domains[f]).map(move |v| vec![(f as u16, v as u16)]))
            .collect();
        if level1.len() > MAX_CANDIDATES {
            return Err(too_many_candidates(1));
        }
        let mut evaluated = pool.install(|| self.evaluate(&level1));
        let max_level = self.spec.max_level.min(nf);
        for level in 1..=max_level {
            let scored = self.keep_scored(&mut evaluated, &mut family);
            self.update_top(&mut top, &scored);
            if level == max_level {
                break;
            }
            if interrupted() {
                return Err(AssayError::Interrupted);
            }
            let candidates = match self.spec.method {
                Method::SliceLine => self.join(&evaluated, &top),
                Method::Beam(width) => self.extend_beam(&scored, width),
            }
            .ok_or_else(|| too_many_candidates(level + 1))?;
            if candidates.is_empty() {
                break;
            }
            if interrupted() {
                return Err(AssayError::Interrupted);
            }
            evaluated = pool.install(|| self.evaluate(&candidates));
            if interrupted() {
                return Err(AssayError::Interrupted);
            }
        }
        Ok((top, family))
    }

    /// Slices with at least `min_support` rows, scored and numbered into the family.
    fn keep_scored(
        &self,
        evaluated: &mut Vec<(Preds, Stats)>,
        family: &mut Vec<Stats>,
    ) -> Vec<Scored> {
        let sigma = self.spec.min_support;
        evaluated.retain(|(_, s)| s.size >= sigma);
        evaluated
            .iter()
            .map(|(p, s)| {
                family.push(*s);
                Scored {
                    preds: p.clone(),
                    stats: *s,
                    score: self.score(s),
                    family: family.len() - 1,
                }
            })
            .collect()
    }

    fn update_top(&self, top: &mut Vec<Scored>, scored: &[Scored]) {
        top.extend(scored.iter().filter(|s| s.score > 0.0).cloned());
        top.sort_by(|a, b| self.order(a, b));
        top.truncate(self.k);
    }

    /// SliceLine's candidates of the next level: joins of two valid slices that share all
    /// but their last predicate, kept when every parent is valid and the upper bound of the
    /// score can still enter the top list. None when they would exceed [`MAX_CANDIDATES`]
    /// (or the job was interrupted: the caller then stops).
    fn join(&self, evaluated: &[(Preds, Stats)], top: &[Scored]) -> Option<Vec<Preds>> {
        let mut valid: Vec<&(Preds, Stats)> =
            evaluated.iter().filter(|(_, s)| s.pos > 0.0).collect();
        valid.sort_by(|a, b| a.0.cmp(&b.0));
        let index: HashMap<&Preds, &Stats> = valid.iter().map(|(p, s)| (p, s)).collect();
        let threshold = if top.len() >= self.k {
            top[self.k - 1].score.max(0.0)
        } else {
            0.0
        };
        let mut out = Vec::new();
        let mut start = 0;
        while start < valid.len() {
            if out.len() > MAX_CANDIDATES {
                return None;
            }
            if crate::runtime::interrupted() {
                return Some(Vec::new());
            }
            let prefix = &valid[start].0[..valid[start].0.len() - 1];
            let mut end = start + 1;
            while end < valid.len() && &valid[end].0[..prefix.len()] == prefix {
                end += 1;
            }
            for i in start..end {
                for j in i + 1..end {
                    let (a, b) = (valid[i].0.last().unwrap(), valid[j].0.last().unwrap());
                    if a.0 == b.0 {
                        continue; // two values of one feature never meet
                    }
                    let mut cand: Preds = prefix.to_vec();
                    cand.push(*a);
                    cand.push(*b);
                    // Every parent (drop one predicate) must be valid; bounds from all.
                    let (mut ss, mut se, mut sm) = (f64::INFINITY, f64::INFINITY, f64::INFINITY);
                    let mut all = true;
                    for drop in 0..cand.len() {
                        let parent: Preds = cand
                            .iter()
                            .enumerate()
                            .filter(|(t, _)| *t != drop)
                            .map(|(_, p)| *p)
                            .collect();
                        match index.get(&parent) {
                            Some(s) => {
                                ss = ss.min(s.size as f64);
                                se = se.min(s.pos);
                                sm = sm.min(s.max);
                            }
                            None => {
                                all = false;
                                break;
                            }
                        }
                    }
                    if all && self.upper_bound(ss, se, sm) > threshold {
                        out.push(cand);
                    }
                }
                if out.len() > MAX_CANDIDATES {
                    return None;
                }
            }
            start = end;
        }
        Some(out)
    }

    /// Beam search: the `width` best slices of this level, each extended by every value of
    /// every feature it does not use.
    fn extend_beam(&self, scored: &[Scored], width: usize) -> Option<Vec<Preds>> {
        let mut beam: Vec<&Scored> = scored.iter().filter(|s| s.stats.pos > 0.0).collect();
        beam.sort_by(|a, b| self.order(a, b));
        beam.truncate(width);
        let mut seen: HashSet<Preds> = HashSet::new();
        let mut out = Vec::new();
        for s in beam {
            for f in 0..self.data.codes.len() {
                if s.preds.iter().any(|(g, _)| *g as usize == f) {
                    continue;
                }
                for v in 0..self.data.domains[f] {
                    let mut cand = s.preds.clone();
                    cand.push((f as u16, v as u16));
                    cand.sort_unstable();
                    if seen.insert(cand.clone()) {
                        out.push(cand);
                    }
                }
                if out.len() > MAX_CANDIDATES {
                    return None;
                }
            }
        }
        Some(out)
    }

    /// The statistics of each candidate: one counting pass over the rows per combination of
    /// features, the combinations in parallel.
    fn evaluate(&self, candidates: &[Preds]) -> Vec<(Preds, Stats)> {
        let mut groups: HashMap<Vec<u16>, Vec<usize>> = HashMap::new();
        for (i, c) in candidates.iter().enumerate() {
            groups
                .entry(c.iter().map(|(f, _)| *f).collect())
                .or_default()
                .push(i);
        }
        let mut groups: Vec<(Vec<u16>, Vec<usize>)> = groups.into_iter().collect();
        groups.sort();
        let results: Vec<Vec<(usize, Stats)>> = groups
            .par_iter()
            .map(|(feats, members)| self.count(feats, members, candidates))
            .collect();
        let mut stats = vec![Stats::default(); candidates.len()];
        for r in results {
            for (i, s) in r {
                stats[i] = s;
            }
        }
        candidates.iter().cloned().zip(stats).collect()
    }

    fn count(&self, feats: &[u16], members: &[usize], candidates: &[Preds]) -> Vec<(usize, Stats)> {
        if crate::runtime::interrupted() {
            // The job stops after this level; its statistics are discarded.
            return members.iter().map(|m| (*m, Stats::default())).collect();
        }
        let cols: Vec<&[u16]> = feats
            .iter()
            .map(|f| self.data.codes[*f as usize].as_slice())
            .collect();
        let errors = &self.data.errors;
        // Mixed-radix keys of the value codes: exact (u128 holds 8 features of 16-bit codes);
        // a longer combination whose key space overflows is keyed by its codes themselves.
        let mut strides: Option<Vec<u128>> = Some(Vec::with_capacity(feats.len()));
        let mut cells: u128 = 1;
        for f in feats {
            if let Some(s) = strides.as_mut() {
                s.push(cells);
            }
            match cells.checked_mul(self.data.domains[*f as usize].max(1) as u128) {
                Some(c) => cells = c,
                None => strides = None,
            }
        }
        let Some(strides) = strides else {
            let slot: HashMap<Vec<u16>, usize> = members
                .iter()
                .enumerate()
                .map(|(j, m)| (candidates[*m].iter().map(|(_, v)| *v).collect(), j))
                .collect();
            let mut acc = vec![Stats::default(); members.len()];
            let mut key = vec![0u16; cols.len()];
            for (i, e) in errors.iter().enumerate() {
                for (k, c) in key.iter_mut().zip(&cols) {
                    *k = c[i];
                }
                if let Some(j) = slot.get(&key) {
                    acc[*j].add(*e, self.data.base(i));
                }
            }
            return members.iter().copied().zip(acc).collect();
        };
        let key_of = |p: &Preds| -> u128 {
            p.iter()
                .zip(&strides)
                .map(|((_, v), s)| *v as u128 * s)
                .sum()
        };
        let row_key = |i: usize| -> u128 {
            cols.iter()
                .zip(&strides)
                .map(|(c, s)| c[i] as u128 * s)
                .sum()
        };
        if cells <= 1 << 16 {
            let mut acc = vec![Stats::default(); cells as usize];
            for (i, e) in errors.iter().enumerate() {
                acc[row_key(i) as usize].add(*e, self.data.base(i));
            }
            members
                .iter()
                .map(|m| (*m, acc[key_of(&candidates[*m]) as usize]))
                .collect()
        } else {
            let slot: HashMap<u128, usize> = members
                .iter()
                .enumerate()
                .map(|(j, m)| (key_of(&candidates[*m]), j))
                .collect();
            let mut acc = vec![Stats::default(); members.len()];
            for (i, e) in errors.iter().enumerate() {
                if let Some(j) = slot.get(&row_key(i)) {
                    acc[*j].add(*e, self.data.base(i));
                }
            }
            members.iter().copied().zip(acc).collect()
        }
    }
}

/// One-sided Welch t-test p-value of "the slice's mean error is higher than the rest's".
fn welch_greater(s: &Stats, total: &Stats) -> f64 {
    let (n1, n2) = (s.size as f64, (total.size - s.size) as f64);
    if n1 < 2.0 || n2 < 2.0 {
        return 1.0;
    }
    let m1 = s.sum / n1;
    let m2 = (total.sum - s.sum) / n2;
    let v1 = ((s.sq - n1 * m1 * m1) / (n1 - 1.0)).max(0.0);
    let v2 = ((total.sq - s.sq - n2 * m2 * m2) / (n2 - 1.0)).max(0.0);
    let (a, b) = (v1 / n1, v2 / n2);
    let se = (a + b).sqrt();
    if se.is_nan() || se <= 0.0 {
        return if m1 > m2 { 0.0 } else { 1.0 };
    }
    let t = (m1 - m2) / se;
    let df = (a + b) * (a + b) / (a * a / (n1 - 1.0) + b * b / (n2 - 1.0));
    student_t_sf(t, df)
}

/// The mean, standard error and degrees of freedom of a slice's (paired) errors; the
/// standard error is NaN below 2 rows.
fn mean_se(s: &Stats) -> (f64, f64, f64) {
    let n = s.size as f64;
    let m = s.sum / n;
    if n < 2.0 {
        return (m, f64::NAN, f64::NAN);
    }
    // The one-pass sum of squares cancels when every difference is the same value (not
    // exact in binary): a residue at the rounding of `sq` is no variance.
    let ss = s.sq - n * m * m;
    let var = if ss <= 1e-12 * s.sq {
        0.0
    } else {
        ss / (n - 1.0)
    };
    (m, (var / n).sqrt(), n - 1.0)
}

/// One-sided p-value of "the mean difference of errors (model minus reference) is above 0"
/// in the slice: the paired z-test (large-sample; the same normal approximation as the
/// interval, so `delta_lo > 0` exactly when the p-value is below `(1 - level) / 2`).
fn paired_greater(s: &Stats) -> f64 {
    let (m, se, _) = mean_se(s);
    if se.is_nan() {
        return 1.0;
    }
    if se <= 0.0 {
        return if m > 0.0 { 0.0 } else { 1.0 };
    }
    norm_cdf(-m / se)
}

/// The normal quantile of a two-sided interval at `level`.
fn z_of(level: f64) -> f64 {
    norm_ppf(0.5 + 0.5 * level)
}

/// Holm's step-down adjusted p-values of `p`, in input order.
pub fn holm(p: &[f64]) -> Vec<f64> {
    let m = p.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|a, b| p[*a].total_cmp(&p[*b]).then(a.cmp(b)));
    let mut out = vec![1.0; m];
    let mut running = 0.0f64;
    for (rank, &i) in order.iter().enumerate() {
        running = running.max(((m - rank) as f64 * p[i]).min(1.0));
        out[i] = running;
    }
    out
}

/// `p` adjusted by `correction`.
fn adjust(p: &[f64], correction: Correction) -> Vec<f64> {
    match correction {
        Correction::Holm => holm(p),
        Correction::Bh => benjamini_hochberg(p),
        Correction::None => p.to_vec(),
    }
}

/// Effect size: difference of mean error (slice minus rest) in pooled standard deviations.
fn effect_size(s: &Stats, total: &Stats) -> f64 {
    let (n1, n2) = (s.size as f64, (total.size - s.size) as f64);
    if n1 < 1.0 || n2 < 1.0 || n1 + n2 < 3.0 {
        return f64::NAN;
    }
    let m1 = s.sum / n1;
    let m2 = (total.sum - s.sum) / n2;
    let ss1 = (s.sq - n1 * m1 * m1).max(0.0);
    let ss2 = (total.sq - s.sq - n2 * m2 * m2).max(0.0);
    let sd = ((ss1 + ss2) / (n1 + n2 - 2.0)).sqrt();
    if sd > 0.0 {
        (m1 - m2) / sd
    } else {
        f64::NAN
    }
}

/// P(T > t) for Student's t with `df` degrees of freedom.
pub fn student_t_sf(t: f64, df: f64) -> f64 {
    if t.is_nan() || df.is_nan() {
        return f64::NAN;
    }
    let x = df / (df + t * t);
    let tail = 0.5 * reg_inc_beta(0.5 * df, 0.5, x);
    if t > 0.0 {
        tail
    } else {
        1.0 - tail
    }
}

/// The regularized incomplete beta function I_x(a, b) (continued fraction, modified Lentz).
pub fn reg_inc_beta(a: f64, b: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let ln_front =
        libm::lgamma(a + b) - libm::lgamma(a) - libm::lgamma(b) + a * x.ln() + b * (1.0 - x).ln();
    if x > (a + 1.0) / (a + b + 2.0) {
        return 1.0 - reg_inc_beta(b, a, 1.0 - x);
    }
    let tiny = 1e-300;
    let (mut c, mut d) = (1.0, 1.0 - (a + b) * x / (a + 1.0));
    if d.abs() < tiny {
        d = tiny;
    }
    d = 1.0 / d;
    let mut f = d;
    for m in 1..10_000 {
        let m = m as f64;
        let even = m * (b - m) * x / ((a + 2.0 * m - 1.0) * (a + 2.0 * m));
        let odd = -(a + m) * (a + b + m) * x / ((a + 2.0 * m) * (a + 2.0 * m + 1.0));
        for numer in [even, odd] {
            d = 1.0 + numer * d;
            if d.abs() < tiny {
                d = tiny;
            }
            c = 1.0 + numer / c;
            if c.abs() < tiny {
                c = tiny;
            }
            d = 1.0 / d;
            f *= c * d;
        }
        if (c * d - 1.0).abs() < 1e-16 {
            break;
        }
    }
    (ln_front.exp() * f / a).clamp(0.0, 1.0)
}

/// Benjamini-Hochberg q-values (adjusted p-values) of `p`, in input order.
pub fn benjamini_hochberg(p: &[f64]) -> Vec<f64> {
    let m = p.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|a, b| p[*a].total_cmp(&p[*b]).then(a.cmp(b)));
    let mut q = vec![1.0; m];
    let mut running = 1.0f64;
    for (rank, &i) in order.iter().enumerate().rev() {
        let v = (p[i] * m as f64 / (rank + 1) as f64).min(1.0);
        running = running.min(v);
        q[i] = running;
    }
    q
}

/// Drops a slice when a reported slice is its ancestor, unless its error is significantly
/// (one-sided Welch at `fdr`) higher than that ancestor's other rows.
fn dedupe(top: Vec<Scored>, fdr: f64, k: usize) -> Vec<Scored> {
    let mut kept: Vec<Scored> = Vec::new();
    for s in top {
        if kept.len() >= k {
            break;
        }
        let ancestors: Vec<&Scored> = kept
            .iter()
            .filter(|a| {
                a.preds.len() < s.preds.len() && a.preds.iter().all(|p| s.preds.contains(p))
            })
            .collect();
        // The child against the other rows of its ancestor (the ancestor is the "total").
        let worse_than_all = ancestors
            .iter()
            .all(|a| welch_greater(&s.stats, &a.stats) < fdr);
        if ancestors.is_empty() || worse_than_all {
            kept.push(s);
        }
    }
    kept
}

/// A paired search's dedupe: a slice is kept when, against every slice kept above it that
/// shares rows with it, it still shows a regression of its own. Against an ancestor: its
/// errors are significantly (one-sided Welch, p at most `alpha`, the correction's next
/// level) higher than the ancestor's other rows (as [`dedupe`]). Against any other
/// overlapping slice: its rows outside that slice are significantly worse on their own (the
/// one-sided paired test), so a large slice that is worse only through the rows of a slice
/// above it ("gender=female" holding half of a broken "channel=partner") is left out.
///
/// Each candidate's rows are found with one pass over the codes; the kept slices are
/// checked on those rows by their predicates (no per-slice row sets are held), and two
/// slices with different values of one feature share no rows and are not checked.
fn dedupe_paired(
    top: Vec<Scored>,
    data: &Data,
    alpha: f64,
    k: usize,
    pool: &rayon::ThreadPool,
    interrupted: &dyn Fn() -> bool,
) -> Result<Vec<Scored>> {
    let n = data.errors.len();
    let holds = |p: &Preds, i: usize| p.iter().all(|(f, v)| data.codes[*f as usize][i] == *v);
    let disjoint = |a: &Preds, b: &Preds| {
        a.iter()
            .any(|(f, v)| b.iter().any(|(g, w)| f == g && v != w))
    };
    let mut kept: Vec<Scored> = Vec::new();
    for s in top {
        if kept.len() >= k {
            break;
        }
        if interrupted() {
            return Err(AssayError::Interrupted);
        }
        let overlapping: Vec<&Scored> = kept
            .iter()
            .filter(|r| !disjoint(&r.preds, &s.preds))
            .collect();
        let rows: Vec<usize> = if overlapping.is_empty() {
            Vec::new()
        } else {
            (0..n).filter(|i| holds(&s.preds, *i)).collect()
        };
        let keep = pool.install(|| {
            overlapping.par_iter().all(|r| {
                let ancestor =
                    r.preds.len() < s.preds.len() && r.preds.iter().all(|p| s.preds.contains(p));
                if ancestor {
                    return welch_greater(&s.stats, &r.stats) <= alpha;
                }
                let mut rest = Stats::default();
                for &i in &rows {
                    if !holds(&r.preds, i) {
                        rest.add(data.errors[i], data.base(i));
                    }
                }
                // No row in common: the slices do not overlap, nothing to explain away.
                rest.size == rows.len() as u64 || (rest.size > 0 && paired_greater(&rest) <= alpha)
            })
        });
        if keep {
            kept.push(s);
        }
    }
    Ok(kept)
}

/// A ranked table: `rank`, `slice`, `level`, `features`, `values`, `size`, `support`, then
/// `stats` (name, nullable, one value per slice: null where None), then `significant`.
fn ranked_table(
    top: &[Scored],
    slicer: &Slicer,
    rows: u64,
    stats: Vec<(&str, bool, Vec<Option<f64>>)>,
    significant: Vec<bool>,
) -> Result<RecordBatch> {
    let mut rank = UInt32Builder::new();
    let mut label = StringBuilder::new();
    let mut level = UInt32Builder::new();
    let mut features = ListBuilder::new(StringBuilder::new());
    let mut values = ListBuilder::new(StringBuilder::new());
    let mut size = UInt64Builder::new();
    let mut support = Float64Builder::with_capacity(top.len());
    for (r, s) in top.iter().enumerate() {
        rank.append_value(r as u32 + 1);
        let parts: Vec<_> = s
            .preds
            .iter()
            .map(|(f, v)| slicer.describe(*f as usize, *v as u32))
            .collect();
        label.append_value(
            parts
                .iter()
                .map(|d| d.label.as_str())
                .collect::<Vec<_>>()
                .join(" & "),
        );
        level.append_value(s.preds.len() as u32);
        for d in &parts {
            features.values().append_value(&d.values[0].0);
            values.values().append_option(d.values[0].1.as_deref());
        }
        features.append(true);
        values.append(true);
        size.append_value(s.stats.size);
        support.append_value(s.stats.size as f64 / rows as f64);
    }
    let list = |name: &str| {
        Field::new(
            name,
            DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
            false,
        )
    };
    let mut fields = vec![
        Field::new("rank", DataType::UInt32, false),
        Field::new("slice", DataType::Utf8, false),
        Field::new("level", DataType::UInt32, false),
        list("features"),
        list("values"),
        Field::new("size", DataType::UInt64, false),
        Field::new("support", DataType::Float64, false),
    ];
    let mut cols: Vec<ArrayRef> = vec![
        Arc::new(rank.finish()),
        Arc::new(label.finish()),
        Arc::new(level.finish()),
        Arc::new(features.finish()),
        Arc::new(values.finish()),
        Arc::new(size.finish()),
        Arc::new(support.finish()),
    ];
    for (name, nullable, v) in stats {
        fields.push(Field::new(name, DataType::Float64, nullable));
        cols.push(Arc::new(arrow_array::Float64Array::from(v)));
    }
    fields.push(Field::new("significant", DataType::Boolean, false));
    cols.push(Arc::new(arrow_array::BooleanArray::from(significant)));
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), cols)?)
}

/// One value per slice of `top`.
fn per_slice(top: &[Scored], f: impl Fn(&Scored) -> Option<f64>) -> Vec<Option<f64>> {
    top.iter().map(f).collect()
}

/// The ranked table of `discover_slices`.
fn output(
    top: &[Scored],
    slicer: &Slicer,
    data: &Data,
    mean: f64,
    pvals: &[f64],
    qvals: &[f64],
    fdr: f64,
) -> Result<RecordBatch> {
    let m = |s: &Scored| s.stats.sum / s.stats.size as f64;
    let stats = vec![
        ("error_mean", false, per_slice(top, |s| Some(m(s)))),
        ("error_ratio", false, per_slice(top, |s| Some(m(s) / mean))),
        ("score", false, per_slice(top, |s| Some(s.score))),
        // (NaN where undefined: the Python layer shows it as null.)
        (
            "effect_size",
            true,
            per_slice(top, |s| Some(effect_size(&s.stats, &data.total))),
        ),
        ("p_value", false, per_slice(top, |s| Some(pvals[s.family]))),
        ("q_value", false, per_slice(top, |s| Some(qvals[s.family]))),
    ];
    let significant = top.iter().map(|s| qvals[s.family] <= fdr).collect();
    ranked_table(top, slicer, data.total.size, stats, significant)
}

/// The ranked table of a paired search (`discover_regressions`).
fn paired_output(
    top: &[Scored],
    slicer: &Slicer,
    data: &Data,
    pvals: &[f64],
    adjusted: &[f64],
    paired: &Paired,
) -> Result<RecordBatch> {
    let z = z_of(paired.level);
    let ms = |s: &Scored| mean_se(&s.stats);
    let base = |s: &Scored| s.stats.base / s.stats.size as f64;
    // The interval's bounds, null below 2 rows.
    let bound = |sign: f64| {
        move |s: &Scored| {
            let (m, se, _) = ms(s);
            se.is_finite().then_some(m + sign * z * se)
        }
    };
    let stats = vec![
        ("error_reference", false, per_slice(top, |s| Some(base(s)))),
        (
            "error_model",
            false,
            per_slice(top, |s| Some(base(s) + ms(s).0)),
        ),
        ("delta", false, per_slice(top, |s| Some(ms(s).0))),
        ("delta_lo", true, per_slice(top, bound(-1.0))),
        ("delta_hi", true, per_slice(top, bound(1.0))),
        ("contribution", false, per_slice(top, |s| Some(s.score))),
        (
            "effect_size",
            true,
            per_slice(top, |s| {
                let (m, se, _) = ms(s);
                (se.is_finite() && se > 0.0).then(|| m / (se * (s.stats.size as f64).sqrt()))
            }),
        ),
        ("p_value", false, per_slice(top, |s| Some(pvals[s.family]))),
        (
            "p_adjusted",
            false,
            per_slice(top, |s| Some(adjusted[s.family])),
        ),
    ];
    let significant = top
        .iter()
        .map(|s| adjusted[s.family] <= paired.alpha())
        .collect();
    ranked_table(top, slicer, data.total.size, stats, significant)
}

/// The per-row errors of a multiclass model (labels mapped to classes, each row's K
/// probabilities read in place and checked or normalized): `None` for a row dropped by
/// `nan_policy="drop"`. `first`: the global position of the batch's first row.
fn multiclass_errors(
    labels: &ArrayRef,
    scores: &ArrayRef,
    (zero_one, classes, normalize): (
        bool,
        &crate::multiclass::Classes,
        crate::multiclass::Normalize,
    ),
    (lname, sname): (&str, &str),
    first: u64,
    drop: bool,
) -> Result<Vec<Option<(f64, f64)>>> {
    use crate::multiclass as mc;
    let k = classes.names.len();
    let map = mc::ClassMap::new(classes);
    let len = labels.len();
    let arrays = [scores.clone()];
    let src = mc::ProbSource::new(&arrays, k);
    let mut p = vec![0.0; k];
    let mut codes = Vec::new();
    mc::label_codes(labels, 0, len, &map, &mut codes);
    let mut out = Vec::with_capacity(len);
    for (i, code) in codes.iter().enumerate() {
        let row = first + i as u64;
        let y = match *code {
            mc::NULL_LABEL if drop => {
                out.push(None);
                continue;
            }
            mc::NULL_LABEL => return Err(invalid(lname, mc::null_label_message(row))),
            mc::UNKNOWN_LABEL => {
                let text = mc::label_text(labels, i);
                return Err(invalid(
                    lname,
                    mc::unknown_label_message(&text, row, classes),
                ));
            }
            c => c as usize,
        };
        if let Err(e) = src
            .read(i, &mut p)
            .and_then(|_| mc::normalize_row(&mut p, normalize))
        {
            if drop && e.droppable() {
                out.push(None);
                continue;
            }
            return Err(invalid(sname, e.message(row, k)));
        }
        let t = mc::row_terms(&p, y, &[]);
        let e = if zero_one {
            (t.pred != y) as u8 as f64
        } else {
            t.ll
        };
        out.push(Some((e, 0.0)));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn student_t_matches_known_values() {
        // t = 2.0, df = 10: one-sided p = 0.036694... (tables / scipy.stats.t.sf).
        assert!((student_t_sf(2.0, 10.0) - 0.036_694_017_385_370_16).abs() < 1e-12);
        assert!((student_t_sf(-1.0, 5.0) - 0.818_391_266_175_439_3).abs() < 1e-12);
        assert!((student_t_sf(0.0, 3.0) - 0.5).abs() < 1e-15);
        // Large df approaches the normal tail: P(Z > 1.96) = 0.0249979.
        assert!((student_t_sf(1.96, 1e7) - 0.024_997_895_148_220_43).abs() < 1e-6);
    }

    #[test]
    fn holm_steps_down() {
        // statsmodels multipletests([0.01, 0.04, 0.03, 0.5], method="holm")
        let a = holm(&[0.01, 0.04, 0.03, 0.5]);
        let expect = [0.04, 0.09, 0.09, 0.5];
        for (x, y) in a.iter().zip(expect) {
            assert!((x - y).abs() < 1e-15, "{a:?}");
        }
    }

    #[test]
    fn bh_adjusts_in_order() {
        let q = benjamini_hochberg(&[0.01, 0.04, 0.03, 0.5]);
        let expect = [0.04, 0.16 / 3.0, 0.16 / 3.0, 0.5];
        for (a, b) in q.iter().zip(expect) {
            assert!((a - b).abs() < 1e-15, "{q:?}");
        }
    }
}
