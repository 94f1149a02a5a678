//! The regression family's side of the seam (see `crate::task`): its options, its plan, its
//! columns, its row kernel over a piece and its finalizer.

use arrow_array::ArrayRef;
use arrow_buffer::NullBuffer;

use super::tweedie_domain;
use crate::bootstrap::CiMethod;
use crate::error::{invalid, AssayError, Result};
use crate::fastmath::all_within;
use crate::input::{check_numeric_type, column_index, f64_view, u64_values, validity};
use crate::metrics::{Family, Metric};
use crate::piece::{row_id, valid_weight, Piece, PieceScratch};
use crate::spec::{EvalSpec, NanPolicy};
use crate::state::{ChunkState, RankWindow, StateShape};
use crate::task::{
    FamilyColumns, FamilyPlan, FinalSlice, FinalizeInput, SliceFinalizer, SliceOut, TaskFamily,
};

/// The options of a regression job.
#[derive(Clone, Debug, PartialEq)]
pub struct RegressionOptions {
    /// The power of `tweedie_deviance` and `d2_tweedie` (0: squared error, 1: Poisson, 2:
    /// Gamma; in (-inf, 0] or [1, inf), as scikit-learn).
    pub power: f64,
    /// The (lower, upper) columns of a prediction interval (coverage, interval_width).
    pub bounds: Option<(String, String)>,
}

impl Default for RegressionOptions {
    fn default() -> Self {
        RegressionOptions {
            power: 0.0,
            bounds: None,
        }
    }
}

/// What a regression job sums beside the plain errors, from its metrics.
struct Needs {
    /// The squared log errors (msle, rmsle).
    log_errors: bool,
    /// The pinball quantiles, in layout order.
    quantiles: Vec<f64>,
    /// Which of the Poisson, Gamma and Tweedie deviances are summed, with the metric that
    /// asks for each (for messages).
    deviances: [Option<&'static str>; 3],
}

impl Needs {
    fn of(spec: &EvalSpec) -> Needs {
        let wants = |m: Metric| spec.metrics.contains(&m);
        Needs {
            log_errors: wants(Metric::Msle) || wants(Metric::Rmsle),
            quantiles: super::pinball_quantiles(&spec.metrics),
            deviances: [
                wants(Metric::PoissonDeviance).then_some("poisson_deviance"),
                wants(Metric::GammaDeviance).then_some("gamma_deviance"),
                if wants(Metric::TweedieDeviance) {
                    Some("tweedie_deviance")
                } else {
                    wants(Metric::D2Tweedie).then_some("d2_tweedie")
                },
            ],
        }
    }
}

/// The regression family.
pub struct Regression;

impl TaskFamily for Regression {
    fn foreign_options(&self, spec: &EvalSpec) -> String {
        match spec.task.regression() {
            Some(o) if o.bounds.is_none() => "power= applies to task=\"regression\"".into(),
            _ => "lower= and upper= (a prediction interval) apply to task=\"regression\" with \
                  one model"
                .into(),
        }
    }

    fn validate(&self, spec: &EvalSpec) -> Result<()> {
        let opts = spec.task.regression().cloned().unwrap_or_default();
        if !opts.power.is_finite() || (opts.power > 0.0 && opts.power < 1.0) {
            return Err(AssayError::InvalidArgument(format!(
                "power (of the Tweedie deviance) must be <= 0 or >= 1, got {}",
                opts.power
            )));
        }
        let wants_bounds = spec
            .metrics
            .iter()
            .find(|m| matches!(m, Metric::Coverage | Metric::IntervalWidth));
        if let (Some(m), None) = (wants_bounds, &opts.bounds) {
            let how = if spec.compare.is_some() {
                "which a comparison does not take (evaluate one model with lower= and upper=)"
            } else {
                "pass lower= and upper="
            };
            return Err(AssayError::InvalidArgument(format!(
                "{} needs the prediction interval's columns: {how}",
                m.name()
            )));
        }
        if opts.bounds.is_some() && spec.compare.is_some() {
            return Err(AssayError::InvalidArgument(self.foreign_options(spec)));
        }
        Ok(())
    }

    fn plan(&self, spec: &EvalSpec, _replayable: bool) -> FamilyPlan {
        // Regression metrics are none of the binary kinds: only the family's blocks, and the
        // moments of analytic intervals (BCa reads the jackknife slots).
        let needs = Needs::of(spec);
        let opts = spec.task.regression().cloned().unwrap_or_default();
        FamilyPlan {
            shape: StateShape {
                family: Family::Regression,
                quantiles: needs.quantiles.len(),
                deviance: needs.deviances[2].is_some(),
                power: opts.power,
                interval: opts.bounds.is_some(),
                slots: spec.interval.as_ref().map_or(0, |iv| iv.slots()),
                moments: spec
                    .interval
                    .as_ref()
                    .is_some_and(|iv| iv.method == CiMethod::Analytic),
                ..StateShape::default()
            },
            // The absolute errors, for the exact medians.
            keep_rows: spec.metrics.contains(&Metric::MedianAbsoluteError),
            replay: false,
            kept_per_row: 1,
            sketch_runs: 0,
            sketch_flush_rows: crate::piece::SKETCH_FLUSH_ROWS,
            // (The medians are not resampled.)
            keyed_rows: false,
            compactable: true,
            row_bootstrap: true,
        }
    }

    fn columns(
        &self,
        spec: &EvalSpec,
        schema: &arrow_schema::Schema,
        _score_names: &[&str],
    ) -> Result<FamilyColumns> {
        let label = column_index(schema, &spec.label)?;
        check_numeric_type(&spec.label, "label", schema.field(label).data_type())?;
        let opts = spec.task.regression().cloned().unwrap_or_default();
        let extra = match &opts.bounds {
            Some((lo, hi)) => {
                let (a, b) = (column_index(schema, lo)?, column_index(schema, hi)?);
                check_numeric_type(lo, "lower bound", schema.field(a).data_type())?;
                check_numeric_type(hi, "upper bound", schema.field(b).data_type())?;
                vec![vec![a, b]]
            }
            None => Vec::new(),
        };
        Ok(FamilyColumns {
            numeric_scores: true,
            extra,
        })
    }

    fn update_piece(
        &self,
        piece: &Piece,
        state: &mut ChunkState,
        rank: &mut [RankWindow],
        scratch: &mut PieceScratch,
    ) -> Result<u64> {
        update_piece(piece, state, rank, scratch)
    }

    fn finalizer<'s>(
        &self,
        spec: &'s EvalSpec,
        input: &FinalizeInput,
    ) -> Result<Box<dyn SliceFinalizer + 's>> {
        // The exact medians, from the kept absolute errors: `[model][spec][id]`.
        let medians = if input.keep_rows {
            let models = input.state.models;
            let m = (0..models)
                .map(|m| {
                    input
                        .pool
                        .install(|| super::medians(input.ranks[m], input.n_ids))
                })
                .collect();
            crate::runtime::check()?;
            m
        } else {
            Vec::new()
        };
        Ok(Box::new(Finalizer {
            spec,
            quantiles: Needs::of(spec).quantiles,
            medians,
        }))
    }

    fn device_layout(&self, spec: &EvalSpec) -> Vec<(&'static str, f64)> {
        let needs = Needs::of(spec);
        let opts = spec.task.regression().cloned().unwrap_or_default();
        let [poisson, gamma, tweedie] = needs.deviances.map(|d| d.is_some() as u8 as f64);
        let mut layout = vec![
            ("dev_poisson", poisson),
            ("dev_gamma", gamma),
            ("dev_tweedie", tweedie),
            ("power", opts.power),
            ("interval", opts.bounds.is_some() as u8 as f64),
            ("regression", 1.0),
            ("log_errors", needs.log_errors as u8 as f64),
        ];
        // (One entry per pinball quantile, in layout order.)
        layout.extend(needs.quantiles.iter().map(|q| ("quantile", *q)));
        layout
    }
}

/// The regression finalization: each slice's values from its block (and its exact median).
struct Finalizer<'s> {
    spec: &'s EvalSpec,
    quantiles: Vec<f64>,
    /// `[model][spec][id]` (empty: no median asked for).
    medians: Vec<Vec<Vec<f64>>>,
}

impl SliceFinalizer for Finalizer<'_> {
    fn slice(&mut self, s: &FinalSlice, kept: Option<&mut Vec<Vec<f64>>>) -> SliceOut {
        let spec = self.spec;
        let blen = crate::task::block_len(&s.shape);
        let rlen = crate::task::rep_block_len(&s.shape);
        let idu = s.id;
        let (values, intervals) = super::slice_results(
            &s.states.fam[idu * blen..(idu + 1) * blen],
            &s.states.fam_reps[idu * rlen..(idu + 1) * rlen],
            &super::Layout::of(&s.shape),
            &self.quantiles,
            self.medians
                .get(s.model)
                .map_or(f64::NAN, |md| md[s.spec_index][idu]),
            &spec.metrics,
            spec.interval.as_ref(),
            s.small,
            kept,
        );
        SliceOut {
            values,
            intervals,
            bounds: Vec::new(),
        }
    }
}

/// The regression family's piece: rows `lo..hi` of the batch are checked (non-finite labels
/// and predictions per `nan_policy`, weights, the log errors' domain), their replicate weights
/// drawn, and the accepted rows handed to `regression::accumulate_piece` for every model.
/// Returns the rows dropped.
fn update_piece(
    piece: &Piece,
    state: &mut ChunkState,
    rank: &mut [RankWindow],
    scratch: &mut PieceScratch,
) -> Result<u64> {
    let Piece {
        spec,
        cols,
        ids,
        lo,
        hi,
        first_row,
        ..
    } = *piece;
    let (views, reg) = scratch.family::<RegressionScratch>();
    let opts = spec.task.regression().cloned().unwrap_or_default();
    let needs = Needs::of(spec);
    // The prediction interval's columns (validity from the batch).
    let bound_cols = cols.family.first().map(|g| {
        let v = |a: &ArrayRef| (a.clone(), validity(a));
        [v(&g[0]), v(&g[1])]
    });
    let (labels, scores, raw_weights, weights) = views.of(cols, lo, hi);
    let drop = spec.nan_policy == NanPolicy::Drop;
    let slots = piece.shape.slots;
    let row_ids = cols.row_id.as_ref().map(|(a, _)| u64_values(a, lo, hi));
    let RegressionScratch {
        y: ys,
        p: ps,
        w: ws,
        kw,
        ids: idb,
        kernel,
        bound_bufs,
        bound_kept,
    } = reg;
    // The prediction interval's bounds, as given (views of the batch).
    let [lo_buf, hi_buf] = bound_bufs;
    let bounds: Option<(&[f64], &[f64])> = bound_cols
        .as_ref()
        .map(|[(a, _), (b, _)]| (f64_view(a, lo, hi, lo_buf), f64_view(b, lo, hi, hi_buf)));
    let n = hi - lo;
    kw.clear();
    if slots > 0 {
        kw.resize(n * slots, 0.0);
    }
    let per_model = ids.len() + 1;
    #[allow(clippy::too_many_arguments)]
    let run = |y: &[f64],
               p: &[Vec<f64>],
               direct: Option<&[&[f64]]>,
               w: Option<&[f64]>,
               spec_ids: Vec<&[u32]>,
               kw: &[f64],
               bounds: Option<(&[f64], &[f64])>,
               state: &mut ChunkState,
               rank: &mut [RankWindow],
               kernel: &mut super::Scratch| {
        for m in 0..scores.len() {
            let p = match direct {
                Some(d) => d[m],
                None => p[m].as_slice(),
            };
            if piece.keep_rows {
                // The absolute errors, for the exact medians (see `regression::medians`).
                let win = &mut rank[m];
                for (j, (yv, pv)) in y.iter().zip(p).enumerate() {
                    win.put((pv - yv).abs(), false, w.map_or(1.0, |w| w[j]), 0);
                    let at = win.at;
                    for (dst, src) in win.ids.iter_mut().zip(&spec_ids) {
                        dst[at] = src[j];
                    }
                    win.at += 1;
                }
            }
            let rows = crate::regression::PieceRows {
                y,
                p,
                w,
                ids: spec_ids.clone(),
                kw,
                slots,
                log: needs.log_errors,
                layout: super::Layout::of(&piece.shape),
                quantiles: &needs.quantiles,
                deviances: needs.deviances.map(|d| d.is_some()),
                // (Only one model has a prediction interval: see `EvalSpec::validate`.)
                bounds: if m == 0 { bounds } else { None },
            };
            let states = &mut state.specs[m * per_model..(m + 1) * per_model];
            super::accumulate_piece(&rows, states, kernel);
        }
    };
    // The deviances' domains: (power, metric) of each deviance the job sums.
    let powers: Vec<(f64, &str)> = [1.0, 2.0, opts.power]
        .into_iter()
        .zip(needs.deviances)
        .filter_map(|(pw, m)| m.map(|m| (pw, m)))
        .collect();
    // The common case first: no nulls, no non-finite value, valid weights (vectorizable folds
    // over the piece); its rows go to the kernel as they are, without copies.
    let no_nulls = |n: &Option<NullBuffer>| {
        n.as_ref()
            .is_none_or(|b| b.slice(lo, hi - lo).null_count() == 0)
    };
    let finite = |v: &[f64]| all_within(v, f64::MIN, f64::MAX);
    let non_negative = |v: &[f64]| all_within(v, 0.0, f64::INFINITY);
    let clean = no_nulls(&cols.label_nulls)
        && cols.scores.iter().all(|(_, nl)| no_nulls(nl))
        && cols.row_id.as_ref().is_none_or(|(_, nl)| no_nulls(nl))
        && finite(labels)
        && scores.iter().all(|s| finite(s))
        && (!needs.log_errors || (non_negative(labels) && scores.iter().all(|s| non_negative(s))))
        && powers.iter().all(|(pw, _)| {
            let ok = |label: bool, v: &[f64]| {
                v.iter()
                    .fold(true, |a, x| a & tweedie_domain(*pw, label, *x).is_none())
            };
            ok(true, labels) && scores.iter().all(|s| ok(false, s))
        })
        && match (&raw_weights, &weights, &cols.weight) {
            (Some(raw), Some(w), Some((_, nl))) => {
                // Positive and finite; scaled, normal too.
                no_nulls(nl)
                    && all_within(raw, f64::from_bits(1), f64::MAX)
                    && (cols.weight_scale.exp == 0 || all_within(w, f64::MIN_POSITIVE, f64::MAX))
            }
            _ => true,
        }
        && match (&bounds, &bound_cols) {
            (Some((l, h)), Some([(_, ln), (_, hn)])) => {
                no_nulls(ln)
                    && no_nulls(hn)
                    && l.iter().zip(h.iter()).fold(true, |a, (x, y)| {
                        a & (x.is_finite() & y.is_finite() & (x <= y))
                    })
            }
            _ => true,
        };
    if clean {
        if let Some(r) = piece.resampler {
            for j in 0..n {
                let rid = row_ids.as_ref().map_or(first_row + j as u64, |v| v[j]);
                let w = weights.map_or(1.0, |w| w[j]);
                r.fill(r.row_key(rid), w, 0, &mut kw[j * slots..(j + 1) * slots]);
            }
        }
        let spec_ids: Vec<&[u32]> = ids.iter().map(|v| &v[lo..hi]).collect();
        run(
            labels,
            ps,
            Some(&scores),
            weights,
            spec_ids,
            kw,
            bounds,
            state,
            rank,
            kernel,
        );
        // (The kernel stops early on an interrupt: its partial sums must not be used.)
        crate::runtime::check()?;
        return Ok(0);
    }
    ys.clear();
    ws.clear();
    ps.resize_with(scores.len(), Vec::new);
    ps.iter_mut().for_each(Vec::clear);
    idb.resize_with(ids.len(), Vec::new);
    idb.iter_mut().for_each(Vec::clear);
    bound_kept.iter_mut().for_each(Vec::clear);
    kw.clear();
    let mut dropped = 0;
    let non_finite = |v: f64, null: bool| -> Option<String> {
        if null {
            Some("null".into())
        } else if !v.is_finite() {
            Some(format!("{v:?}"))
        } else {
            None
        }
    };
    'rows: for j in 0..n {
        let i = lo + j;
        let row = first_row + j as u64;
        let y = labels[j];
        let label_null = cols.label_nulls.as_ref().is_some_and(|n| n.is_null(i));
        if let Some(what) = non_finite(y, label_null) {
            if drop {
                dropped += 1;
                continue;
            }
            return Err(invalid(
                &spec.label,
                format!("label is {what} at row {row}; pass nan_policy=\"drop\" to drop such rows"),
            ));
        }
        for (m, (_, nulls)) in cols.scores.iter().enumerate() {
            let p = scores[m][j];
            if let Some(what) = non_finite(p, nulls.as_ref().is_some_and(|n| n.is_null(i))) {
                if drop {
                    dropped += 1;
                    continue 'rows;
                }
                return Err(invalid(
                    piece.score_names[m],
                    format!(
                        "prediction is {what} at row {row}; pass nan_policy=\"drop\" to drop \
                         such rows"
                    ),
                ));
            }
        }
        if needs.log_errors {
            let negative = std::iter::once((spec.label.as_str(), y))
                .chain(
                    piece
                        .score_names
                        .iter()
                        .zip(&scores)
                        .map(|(n, s)| (*n, s[j])),
                )
                .find(|(_, v)| *v < 0.0);
            if let Some((name, v)) = negative {
                return Err(invalid(
                    name,
                    format!(
                        "msle and rmsle need labels and predictions >= 0 (a log error of a \
                         negative value is not a relative error); found {v:?} at row {row}"
                    ),
                ));
            }
        }
        if let (Some((l, h)), Some([(_, ln), (_, hn)]), Some((lname, hname))) =
            (&bounds, &bound_cols, &opts.bounds)
        {
            for (v, nulls, name) in [(l[j], ln, lname), (h[j], hn, hname)] {
                if let Some(what) = non_finite(v, nulls.as_ref().is_some_and(|n| n.is_null(i))) {
                    if drop {
                        dropped += 1;
                        continue 'rows;
                    }
                    return Err(invalid(
                        name,
                        format!(
                            "interval bound is {what} at row {row}; pass nan_policy=\"drop\" \
                             to drop such rows"
                        ),
                    ));
                }
            }
            if l[j] > h[j] {
                return Err(invalid(
                    lname,
                    format!(
                        "the lower bound {:?} exceeds the upper bound {:?} ({hname:?}) at row \
                         {row}",
                        l[j], h[j]
                    ),
                ));
            }
        }
        for (pw, metric) in &powers {
            let values = std::iter::once((spec.label.as_str(), y, true)).chain(
                piece
                    .score_names
                    .iter()
                    .zip(&scores)
                    .map(|(n, s)| (*n, s[j], false)),
            );
            for (name, v, label) in values {
                if let Some(rule) = tweedie_domain(*pw, label, v) {
                    let what = if label { "labels" } else { "predictions" };
                    return Err(invalid(
                        name,
                        format!(
                            "{metric} (power {pw}) needs {what} {rule}; found {v:?} at row {row}"
                        ),
                    ));
                }
            }
        }
        let w = match (&raw_weights, &weights) {
            (Some(raw), Some(w)) => valid_weight(spec, cols, raw, w, i, j, row)?,
            _ => 1.0,
        };
        if let Some(r) = piece.resampler {
            let start = kw.len();
            kw.resize(start + slots, 0.0);
            let rid = row_id(spec, cols, &row_ids, i, j, row)?;
            r.fill(r.row_key(rid), w, 0, &mut kw[start..]);
        }
        ys.push(y);
        ws.push(w);
        for (m, sc) in scores.iter().enumerate() {
            ps[m].push(sc[j]);
        }
        for (b, v) in idb.iter_mut().zip(ids) {
            b.push(v[i]);
        }
        if let Some((l, h)) = &bounds {
            bound_kept[0].push(l[j]);
            bound_kept[1].push(h[j]);
        }
    }
    let spec_ids: Vec<&[u32]> = idb.iter().map(|v| v.as_slice()).collect();
    let w = raw_weights.is_some().then_some(ws.as_slice());
    let kept_bounds = bounds.map(|_| (bound_kept[0].as_slice(), bound_kept[1].as_slice()));
    run(
        ys,
        ps,
        None,
        w,
        spec_ids,
        kw,
        kept_bounds,
        state,
        rank,
        kernel,
    );
    Ok(dropped)
}

/// The regression piece's buffers (see [`update_piece`]).
#[derive(Default)]
struct RegressionScratch {
    y: Vec<f64>,
    p: Vec<Vec<f64>>,
    w: Vec<f64>,
    kw: Vec<f64>,
    /// Per slice spec, the accepted rows' slice ids.
    ids: Vec<Vec<u32>>,
    kernel: super::Scratch,
    /// The prediction interval's bounds: views of a piece, and the accepted rows' values.
    bound_bufs: [Vec<f64>; 2],
    bound_kept: [Vec<f64>; 2],
}
