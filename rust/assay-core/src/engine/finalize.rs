//! Finalization: a (merged) [`PartialState`] into the report. Sorts and walks of the kept rows
//! (exact rank metrics, quantile bins), replicate intervals and the iterated calibration fits
//! run here, once, however many shards the state was merged from.

use arrow_array::{ArrayRef, RecordBatch};
use arrow_buffer::NullBuffer;
use rayon::prelude::*;

use crate::bootstrap::CiMethod;
use crate::error::{AssayError, Result};
use crate::input::{f64_view, validity};
use crate::intervals::{delta_interval, slice_intervals, CalibIntervals};
use crate::metrics::{rank_value, Metric, RankSums, TOO_SMALL};
use crate::rank::{
    rank_sums, rank_sums_binned, rank_sums_calibrated, rank_sums_calibrated_shared,
    replicate_rank_sums,
};
use crate::reliability::{
    self as rel, BinRule, LogisticFit, BIN_FIELDS, GRID_CELLS, GRID_FIELDS, LOGIT_CELLS,
    LOGIT_FIELDS, REP_BIN_FIELDS,
};
use crate::report::{build_report, ReportRow, ReportSchema};
use crate::state::partial::PartialState;
use crate::state::{ChunkState, RankRows, StateShape, WeightScale};

use super::accumulate::Leased;
use super::plan::{check_replicate_rank_size, Plan};
use super::{job_pool, EvalSpec, Evaluation};

/// The kept rows a finalization reads: its own (the one-pass `evaluate`, which may reuse their
/// memory as scratch), or a state's that must stay as it is.
enum Ranks<'a> {
    Owned(Vec<RankRows>),
    Shared(&'a [RankRows]),
}

impl Ranks<'_> {
    fn get(&self, m: usize) -> &RankRows {
        match self {
            Ranks::Owned(r) => &r[m],
            Ranks::Shared(r) => &r[m],
        }
    }
}

/// The report of `state` (accumulated, and perhaps merged, for `spec`). The state does not
/// change: it can be finalized again, or merged further.
pub fn finalize(
    state: &PartialState,
    spec: &EvalSpec,
    interrupted: &dyn Fn() -> bool,
) -> Result<Evaluation> {
    spec.validate()?;
    let plan = Plan::new(spec, state.slicer.n_specs(), state.replay.is_some());
    check_layout(state, &plan, spec)?;
    let pool = job_pool(spec.n_threads)?;
    finalize_parts(
        state,
        state.total.clone(),
        Ranks::Shared(&state.rank),
        spec,
        interrupted,
        &pool,
    )
}

/// [`finalize`] of a state nobody else holds (the one-pass `evaluate`): its memory is reused.
pub(super) fn finalize_owned(
    mut state: PartialState,
    spec: &EvalSpec,
    interrupted: &dyn Fn() -> bool,
    pool: &rayon::ThreadPool,
) -> Result<Evaluation> {
    spec.validate()?;
    let plan = Plan::new(spec, state.slicer.n_specs(), state.replay.is_some());
    check_layout(&state, &plan, spec)?;
    let total = std::mem::take(&mut state.total);
    let rank = std::mem::take(&mut state.rank);
    finalize_parts(&state, total, Ranks::Owned(rank), spec, interrupted, pool)
}

fn finalize_parts(
    state: &PartialState,
    total: ChunkState,
    mut rank: Ranks,
    spec: &EvalSpec,
    interrupted: &dyn Fn() -> bool,
    pool: &rayon::ThreadPool,
) -> Result<Evaluation> {
    let stop = || interrupted() || crate::runtime::interrupted();
    let slicer = &state.slicer;
    let n_specs = slicer.n_specs();
    let plan = Plan::new(spec, n_specs, state.replay.is_some());
    let models = plan.models();
    let model_ids = |n_ids: &[usize]| -> Vec<usize> {
        (0..models).flat_map(|_| n_ids.iter().copied()).collect()
    };
    let cal = spec.calibration;
    let wants_bins = spec.reliability.is_some() || spec.metrics.iter().any(Metric::uses_bins);
    let (rows, dropped) = (state.rows, state.dropped);
    let kept = rows - dropped;
    if kept == 0 {
        return Err(crate::error::no_rows(rows));
    }
    if let Some(iv) = &spec.interval {
        let jackknifed: Vec<String> = spec
            .metrics
            .iter()
            .filter(|m| !crate::intervals::has_influence(**m, spec.weight.is_some()))
            .map(Metric::name)
            .collect();
        let min_rows = 2 * crate::bootstrap::JACK_GROUPS as u64;
        if iv.method == CiMethod::Bca && kept < min_rows && !jackknifed.is_empty() {
            return Err(AssayError::InvalidArgument(format!(
                "ci_method=\"bca\" takes the acceleration of {} from a {}-group jackknife, \
                 which needs at least {min_rows} rows; got {kept}. Use ci_method=\"percentile\"",
                jackknifed.join(", "),
                crate::bootstrap::JACK_GROUPS
            )));
        }
    }
    let n_ids: Vec<usize> = std::iter::once(1)
        .chain((0..n_specs).map(|s| slicer.n_ids(s)))
        .collect();
    let fin_shape = StateShape {
        slots: plan.shape.slots,
        ..plan.calib_shape
    };
    let mut total = total;
    total.resize(&model_ids(&n_ids), fin_shape);
    let per_model = n_specs + 1;

    let want_ap = spec.metrics.contains(&Metric::AveragePrecision);
    let mut ranks: Vec<Vec<Vec<RankSums>>> = Vec::new();
    let mut rep_ranks: Vec<Vec<Vec<Vec<RankSums>>>> = Vec::new();
    // Quantile calibration bins, per model, spec and slice: (edges, bins).
    let mut qbins: Vec<rel::QuantileBins> = Vec::new();
    for m in 0..models {
        ranks.push(if let Some(want) = &plan.sorted_calib {
            let want = &rel::SortedWant {
                counted: rank.get(m).counted,
                ..want.clone()
            };
            let (sums, calib) = match &mut rank {
                Ranks::Owned(r) => pool.install(|| rank_sums_calibrated(&mut r[m], &n_ids, want)),
                Ranks::Shared(r) => {
                    pool.install(|| rank_sums_calibrated_shared(&r[m], &n_ids, want))
                }
            };
            let mut q: rel::QuantileBins = Vec::new();
            for (k, per_id) in calib.into_iter().enumerate() {
                let st = &mut total.specs[m * per_model + k];
                let (nb, ng, nl) = (
                    fin_shape.calib_bins * BIN_FIELDS,
                    (GRID_CELLS + 1) * GRID_FIELDS,
                    LOGIT_CELLS * LOGIT_FIELDS,
                );
                let mut qk = Vec::with_capacity(per_id.len());
                for (id, c) in per_id.into_iter().enumerate() {
                    // (Each state is empty when the job does not ask for it.)
                    for (all, one, len) in [
                        (&mut st.calib, &c.bins, nb),
                        (&mut st.grid, &c.grid, ng),
                        (&mut st.logit, &c.logit, nl),
                    ] {
                        if !one.is_empty() {
                            all[id * len..(id + 1) * len].copy_from_slice(one);
                        }
                    }
                    qk.push(c.quantile);
                }
                q.push(qk);
            }
            qbins.push(q);
            sums
        } else if plan.exact_rank {
            pool.install(|| rank_sums(rank.get(m), &n_ids))
        } else if plan.sketch_runs > 0 && plan.family.is_none() {
            state.sketches[m]
                .iter()
                .map(|per_id| {
                    per_id
                        .iter()
                        .map(|sk| rank_sums_binned(&sk.to_hist()))
                        .collect()
                })
                .collect()
        } else if plan.hist_bins > 0 {
            let b = plan.hist_bins;
            total.specs[m * per_model..(m + 1) * per_model]
                .iter()
                .map(|st| st.hist.chunks_exact(2 * b).map(rank_sums_binned).collect())
                .collect()
        } else {
            Vec::new()
        });
        crate::runtime::check()?;
        rep_ranks.push(match (&plan.resampler, &spec.interval) {
            (Some(r), Some(iv)) if plan.exact_rank => {
                check_replicate_rank_size(&n_ids, iv.slots(), models)?;
                pool.install(|| replicate_rank_sums(rank.get(m), &n_ids, r, iv.slots(), want_ap))
            }
            _ => Vec::new(),
        });
        crate::runtime::check()?;
    }
    // (A binary job replays for its quantile bins; a family may replay for its own, below.)
    if let (true, true, Some(replay)) = (plan.replay, plan.prob_counts, &state.replay) {
        qbins = (0..models)
            .map(|m| {
                let cols = ReplayColumns {
                    label: replay.label,
                    scores: &replay.scores,
                    model: m,
                };
                let hist = &state.prob_hists[m];
                let one =
                    replay_quantile_bins(&replay.batches, &cols, hist, cal.bins, pool, &stop)?;
                Ok(vec![vec![one]])
            })
            .collect::<Result<_>>()?;
    } else if plan.quantile_bins {
        qbins = (0..models)
            .map(|m| {
                let hist = state.prob_hists.get(m);
                let rk = rank.get(m);
                pool.install(|| rel::quantile_bin_states(rk, &n_ids, cal.bins, hist))
            })
            .collect();
    }
    let qbins = qbins;
    // A task family's finalizer reads what it needs of the kept rows now.
    let mut family = match plan.family {
        Some(fam) => {
            let input = crate::task::FinalizeInput {
                state,
                total: &total,
                ranks: if plan.keep_rows && plan.sketch_runs == 0 {
                    (0..models).map(|m| rank.get(m)).collect()
                } else {
                    Vec::new()
                },
                n_ids: &n_ids,
                shape: fin_shape,
                keep_rows: plan.keep_rows,
                sketch_runs: plan.sketch_runs,
                resampler: plan.resampler.as_ref(),
                pool,
            };
            Some(fam.finalizer(spec, &input)?)
        }
        None => None,
    };
    drop(rank);
    crate::runtime::check()?;
    // SmoothECE and the logistic fit of every slice, in parallel (they iterate).
    let grids: Vec<Vec<Vec<SliceFits>>> = pool.install(|| {
        (0..models)
            .map(|m| {
                (0..per_model)
                    .map(|k| {
                        let st = &total.specs[m * per_model + k];
                        (0..n_ids[k])
                            .into_par_iter()
                            .map(|id| {
                                // (Each fit iterates: once stopped, the rest are skipped.)
                                if crate::runtime::interrupted() {
                                    SliceFits {
                                        smooth: None,
                                        fit: None,
                                    }
                                } else {
                                    slice_fits(st, id, fin_shape)
                                }
                            })
                            .collect()
                    })
                    .collect()
            })
            .collect()
    });
    crate::runtime::check()?;

    // Reported weight sums are scaled back to the user's units.
    let scale = state.weight_scale.unwrap_or(WeightScale::ONE);
    let mut report_rows: Vec<Vec<ReportRow>> = (0..models).map(|_| Vec::new()).collect();
    let mut reliability_rows: Vec<(String, Vec<f64>, Vec<f64>)> = Vec::new();
    let mut deltas = crate::report::ComparisonRows::default();
    // The slices reported, per spec (0: overall) in report order: the non-empty ones (and
    // only the found slice of a `slice_only` spec).
    let reported: Vec<Vec<u32>> = (0..per_model)
        .map(|k| {
            if k == 0 {
                return vec![0];
            }
            let st0 = &total.specs[k];
            let only = spec.slice_only.get(k - 1).and_then(|o| o.as_deref());
            slicer.ordered_ids(k - 1, |id| {
                st0.counts[id as usize].n > 0
                    && only.is_none_or(|label| slicer.describe(k - 1, id).label == label)
            })
        })
        .collect();
    // The reports keep their replicate values (for summaries across slices, such as
    // disparities) when there are bootstrap replicates and all the models' values fit the
    // budget.
    let keep_reps = match (&spec.interval, &plan.resampler) {
        (Some(iv), Some(_)) if iv.method != CiMethod::Analytic => reported
            .iter()
            .map(Vec::len)
            .sum::<usize>()
            .checked_mul(spec.metrics.len().max(1))
            .and_then(|c| c.checked_mul(iv.replicates))
            .and_then(|c| c.checked_mul(models))
            .is_some_and(|c| c <= crate::report::REPORT_REPLICATES_MAX),
        _ => false,
    };
    let n_reps = spec.interval.as_ref().map_or(0, |iv| iv.replicates);
    let mut report_reps: Vec<Vec<Vec<Vec<f64>>>> = (0..models).map(|_| Vec::new()).collect();
    let mut row_specs: Vec<u32> = Vec::new();
    for (k, ordered) in reported.into_iter().enumerate() {
        for id in ordered {
            // Finalization (bootstrap intervals above all) is long with many slices.
            crate::runtime::check()?;
            let desc = (k > 0).then(|| slicer.describe(k - 1, id));
            row_specs.push(k as u32);
            let idu = id as usize;
            let mut replicates: Vec<Vec<Vec<f64>>> = Vec::new();
            for m in 0..models {
                let st = &total.specs[m * per_model + k];
                let c = &st.counts[idu];
                let small = k > 0 && c.n < spec.min_slice_size;
                let rank_k = ranks[m].get(k).map(|r| &r[idu]);
                let rep_rank_k = rep_ranks[m].get(k).map(|r| r[idu].as_slice());
                let nb = cal.bins * BIN_FIELDS;
                let bins: Option<&[f64]> = match cal.rule {
                    BinRule::Uniform if fin_shape.calib_bins > 0 => {
                        Some(&st.calib[idu * nb..(idu + 1) * nb])
                    }
                    BinRule::Quantile if wants_bins => Some(&qbins[m][k][idu].1),
                    _ => None,
                };
                let fits = &grids[m][k][idu];
                if m == 0 && spec.reliability.is_some() {
                    let label = desc.as_ref().map_or("overall", |d| d.label.as_str());
                    let edges = match cal.rule {
                        BinRule::Uniform => plan.calib_edges.clone(),
                        BinRule::Quantile => qbins[m][k][idu].0.clone(),
                    };
                    let b = bins.expect("bins of a reliability job").to_vec();
                    reliability_rows.push((label.to_string(), edges, b));
                }
                let mut kept = (spec.compare.is_some() || keep_reps).then(Vec::new);
                let (values, intervals, family_bounds) = if let Some(fam) = family.as_mut() {
                    let label = desc.as_ref().map_or("overall", |d| d.label.as_str());
                    let out = fam.slice(
                        &crate::task::FinalSlice {
                            model: m,
                            spec_index: k,
                            id: idu,
                            label,
                            states: st,
                            shape: fin_shape,
                            small,
                        },
                        kept.as_mut(),
                    );
                    (out.values, out.intervals, Some(out.bounds))
                } else {
                    let values: Vec<crate::metrics::Value> = spec
                        .metrics
                        .iter()
                        .map(|metric| {
                            if small {
                                Err(TOO_SMALL)
                            } else if metric.is_rank() {
                                rank_value(*metric, rank_k.expect("rank sums of a rank metric"))
                            } else if metric.is_calibration() {
                                calibration_value(*metric, bins, qbins.get(m), k, idu, fits)
                            } else {
                                metric.from_counts(c)
                            }
                        })
                        .collect();
                    let intervals = spec.interval.as_ref().map(|iv| {
                        slice_intervals(
                            iv,
                            &spec.metrics,
                            c,
                            &values,
                            st.moments.get(idu),
                            rank_k,
                            &st.reps,
                            idu,
                            rep_rank_k,
                            spec.weight.is_some(),
                            kept.as_mut(),
                            &CalibIntervals {
                                rule: cal.rule,
                                bins: cal.bins,
                                reps: plan.shape.calib_reps.then(|| {
                                    let len = cal.bins * REP_BIN_FIELDS * plan.shape.slots;
                                    &st.calib_reps[idu * len..(idu + 1) * len]
                                }),
                                fit: fits.fit.as_ref(),
                            },
                        )
                    });
                    (values, intervals, None)
                };
                if let Some(k) = kept {
                    if keep_reps {
                        // (The slots after the replicates are jackknife groups.)
                        report_reps[m].push(
                            k.iter()
                                .map(|v| v[..n_reps.min(v.len())].to_vec())
                                .collect(),
                        );
                    }
                    replicates.push(k);
                }
                let bounds = match (family_bounds, state.sketches.get(m)) {
                    // (A family's slice bounds come with its values.)
                    (Some(b), _) => b,
                    (None, Some(sk)) => {
                        let sk = &sk[k][idu];
                        spec.metrics
                            .iter()
                            .map(|metric| match metric {
                                Metric::RocAuc => Some(sk.auc_error_bound()),
                                Metric::AveragePrecision => Some(sk.ap_error_bound()),
                                _ => None,
                            })
                            .collect()
                    }
                    (None, None) => Vec::new(),
                };
                report_rows[m].push(ReportRow {
                    slice: desc.clone(),
                    counts: scale.unscale_counts(c),
                    values,
                    intervals,
                    bounds,
                });
            }
            if let (Some(cmp), Some(iv)) = (&spec.compare, &spec.interval) {
                let label = desc.as_ref().map_or("overall", |d| d.label.as_str());
                let values: Vec<&[crate::metrics::Value]> = report_rows
                    .iter()
                    .map(|r| r.last().expect("just pushed").values.as_slice())
                    .collect();
                for (j, metric) in spec.metrics.iter().enumerate() {
                    for (m, (name, _)) in cmp.others.iter().enumerate() {
                        let m = m + 1;
                        let reps = crate::intervals::replicate_deltas(
                            &replicates[0][j],
                            &replicates[m][j],
                        );
                        deltas.push(
                            label,
                            *metric,
                            values.iter().map(|v| v[j]).collect(),
                            name,
                            delta_interval(iv, *metric, values[0][j], values[m][j], &reps),
                            &reps[..iv.replicates.min(reps.len())],
                        );
                    }
                }
            }
        }
    }
    // A stage that stopped early for an interrupt leaves partial sums: never report them.
    if stop() {
        return Err(AssayError::Interrupted);
    }
    let schema = ReportSchema {
        metrics: &spec.metrics,
        intervals: spec.interval.is_some(),
        weighted: spec.weight.is_some(),
    };
    let features = slicer.feature_columns();
    let mut reports = report_rows
        .into_iter()
        .zip(report_reps)
        .map(|(rows, reps)| {
            let mut r = build_report(&features, &schema, rows)?;
            r.rows = Some(crate::report::row_batch(
                &row_specs,
                &spec.metrics,
                keep_reps.then_some(reps.as_slice()),
                n_reps,
            )?);
            Ok(r)
        })
        .collect::<Result<Vec<_>>>()?;
    let report = reports.remove(0);
    let comparison = match &spec.compare {
        Some(cmp) => {
            let mut models = vec![cmp.reference.as_str()];
            models.extend(cmp.others.iter().map(|(n, _)| n.as_str()));
            Some(deltas.finish(&models, &spec.metrics)?)
        }
        None => None,
    };
    let reliability = match spec.reliability {
        Some(level) => Some(rel::reliability_table(&reliability_rows, level, &scale)?),
        None => None,
    };
    let family_tables = match family {
        Some(fam) => fam.tables(&scale)?,
        None => Vec::new(),
    };
    Ok(Evaluation {
        report,
        others: reports,
        comparison,
        reliability,
        family_tables,
        rows,
        dropped,
        content_hash: state.content_hash,
    })
}

/// Checks that this state is one of the job `plan` describes (the caller rebuilt the job
/// from the state's spec): models, shapes, kept rows and slice features.
fn check_layout(state: &PartialState, plan: &Plan, spec: &EvalSpec) -> Result<()> {
    let bad = || {
        AssayError::StateMismatch(
            "this partial state does not fit the spec it is finalized with (it was \
             accumulated for another spec)"
                .into(),
        )
    };
    if state.models != plan.models()
        || state.shape != plan.shape
        || state.slicer.n_specs() != spec.slices.len()
        || state.sketch_runs != plan.sketch_runs
        || state.position_keys
            != (plan.resampler.is_some()
                && plan.row_bootstrap
                && spec.interval.as_ref().is_some_and(|iv| iv.row_id.is_none()))
    {
        return Err(bad());
    }
    if !state.slicer.matches(&spec.slices) {
        return Err(bad());
    }
    let keeps = plan.keep_rows && plan.sketch_runs == 0;
    if keeps != (state.rank.len() == state.models) || (!keeps && !state.rank.is_empty()) {
        return Err(bad());
    }
    for r in &state.rank {
        let len = r.scores.len();
        // Counted entries (an unweighted job's combined rows) carry counts as weights; rows
        // whose quantile bins are selected from the rows are never combined.
        if len > 0
            && ((r.weights.len() == len) != (plan.weighted || r.counted)
                || (r.counted && (plan.weighted || plan.quantile_bins))
                || (r.row_keys.len() == len) != plan.keyed_rows)
        {
            return Err(bad());
        }
    }
    if (plan.sketch_runs > 0) == state.sketches.is_empty()
        || plan.prob_counts == state.prob_hists.is_empty()
        || (spec.weight.is_none() && state.weight_scale.is_some())
    {
        return Err(bad());
    }
    Ok(())
}

/// The iterated calibration results of one slice.
struct SliceFits {
    smooth: Option<crate::metrics::Value>,
    fit: Option<std::result::Result<LogisticFit, &'static str>>,
}

fn slice_fits(st: &crate::state::SliceStates, id: usize, shape: StateShape) -> SliceFits {
    let present = st.counts.get(id).is_some_and(|c| c.n > 0);
    let smooth = (shape.grid && present).then(|| {
        let len = (GRID_CELLS + 1) * GRID_FIELDS;
        rel::smooth_ece(&st.grid[id * len..(id + 1) * len])
    });
    let fit = (shape.logit && present).then(|| {
        let len = LOGIT_CELLS * LOGIT_FIELDS;
        rel::logistic_fit(&st.logit[id * len..(id + 1) * len])
    });
    SliceFits { smooth, fit }
}

/// The value of a calibration metric of one slice.
fn calibration_value(
    m: Metric,
    bins: Option<&[f64]>,
    qbins: Option<&rel::QuantileBins>,
    k: usize,
    id: usize,
    fits: &SliceFits,
) -> crate::metrics::Value {
    match m {
        Metric::Ace => {
            let q = &qbins.expect("quantile bins of ace")[k][id].1;
            rel::bin_metric(Metric::Ece, q)
        }
        Metric::SmoothEce => fits.smooth.expect("grid of smooth_ece"),
        Metric::CalibrationSlope | Metric::CalibrationIntercept => {
            let f = fits.fit.expect("logit grid of the calibration fit")?;
            Ok(if m == Metric::CalibrationSlope {
                f.slope
            } else {
                f.intercept
            })
        }
        _ => rel::bin_metric(m, bins.expect("bins of a bin metric")),
    }
}

/// Where a replayed job finds its columns in each batch.
struct ReplayColumns<'a> {
    label: usize,
    /// Every model's score column (a row missing any of them was dropped for all).
    scores: &'a [usize],
    /// The model whose bins are built.
    model: usize,
}

/// Rows a replay part reads at a time.
const REPLAY_ROWS: usize = 1 << 16;

/// The overall slice's quantile bins of model `cols.model` from `hist` (the pass's histogram
/// of its accepted rows) and a second read of the pass's `batches`: only the rows of the
/// quantiles' buckets are gathered, in row order, skipping the rows the pass dropped (null or
/// NaN label or score; every other bad row failed the pass). Scores crowded into one bucket
/// gather every accepted row instead. The same bits as the kept-rows route.
fn replay_quantile_bins(
    batches: &[RecordBatch],
    cols: &ReplayColumns,
    hist: &rel::ProbHist,
    n_bins: usize,
    pool: &rayon::ThreadPool,
    interrupted: &dyn Fn() -> bool,
) -> Result<(Vec<f64>, Vec<f64>)> {
    let plan = rel::HistQuantiles::new(hist, n_bins);
    let mut parts: Vec<rel::Gathered> = Vec::new();
    for batch in batches {
        if interrupted() {
            return Err(AssayError::Interrupted);
        }
        let label = batch.column(cols.label);
        let label_nulls = validity(label);
        let scores: Vec<(&ArrayRef, Option<NullBuffer>)> = cols
            .scores
            .iter()
            .map(|i| (batch.column(*i), validity(batch.column(*i))))
            .collect();
        let len = batch.num_rows();
        let starts: Vec<usize> = (0..len).step_by(REPLAY_ROWS).collect();
        let got: Vec<rel::Gathered> = pool.install(|| {
            starts
                .into_par_iter()
                .map_init(Leased::take, |scratch, lo| {
                    let scratch = &mut scratch.0;
                    let hi = (lo + REPLAY_ROWS).min(len);
                    let mut buf = Vec::new();
                    let s = f64_view(
                        scores[cols.model].0,
                        lo,
                        hi,
                        &mut scratch.piece.views.labels,
                    );
                    let mut got = plan
                        .as_ref()
                        .map_or_else(|| vec![Vec::new()], rel::HistQuantiles::gather_slots);
                    // Labels and the other models' scores are read only for the rows gathered.
                    let mut take = |j: usize, slot: usize| {
                        let i = lo + j;
                        let y = f64_view(label, i, i + 1, &mut buf)[0];
                        let missing = label_nulls.as_ref().is_some_and(|n| n.is_null(i))
                            || y.is_nan()
                            || scores.iter().any(|(a, nulls)| {
                                nulls.as_ref().is_some_and(|n| n.is_null(i))
                                    || !f64_view(a, i, i + 1, &mut buf)[0].is_finite()
                            });
                        if !missing {
                            got[slot].push((s[j], 1.0, y));
                        }
                    };
                    match &plan {
                        Some(p) => p.scan(s, take),
                        None => (0..s.len()).for_each(|j| take(j, 0)),
                    }
                    got
                })
                .collect()
        });
        parts.extend(got);
    }
    Ok(match plan {
        Some(p) => p.finish(parts),
        None => {
            let rows = parts.into_iter().flat_map(|mut p| p.swap_remove(0));
            let (s, y): (Vec<f64>, Vec<u8>) = rows.map(|(x, _, l)| (x, l as u8)).unzip();
            rel::slice_quantile_bins(&s, &y, None, n_bins)
        }
    })
}
