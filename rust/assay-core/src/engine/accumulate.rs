//! The pass: one read of the record batches into a [`PartialState`] (every metric, every
//! slice, every replicate), in parallel chunks cut by global row position.

use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::{ArrowError, SchemaRef};
use rayon::prelude::*;

use crate::bootstrap::add_row;
use crate::error::{invalid, AssayError, Result};
use crate::input::{
    check_label_type, check_numeric_type, check_row_id_type, column_index, next_batch, u64_values,
    validity,
};
use crate::piece::{first_weight_scale, row_id, valid_weight, Piece, PieceScratch, RoleColumns};
use crate::reliability::{
    self as rel, BIN_FIELDS, GRID_CELLS, GRID_FIELDS, LOGIT_CELLS, LOGIT_FIELDS, REP_BIN_FIELDS,
};
use crate::sketch::RunSketch;
use crate::slicing::Slicer;
use crate::state::partial::{compress_sketches, flush_sketches, PartialState, Replay};
use crate::state::{ChunkState, RankRows, RankWindow, WeightScale, REP_ROWS};

use super::plan::{check_state_size, Plan, WAVE};
use super::{job_pool, EvalSpec, NanPolicy, CHUNK_ROWS};

pub use crate::piece::SKETCH_FLUSH_ROWS;

/// Reads `batches` (with `schema`) once into the partial state of `spec`. `row_offset` is the
/// global position of the first row (a shard of a split job); `interrupted` is polled between
/// batches. Accepting no rows is not an error here: an empty state merges as the identity, and
/// [`super::finalize`] refuses a state with no rows.
pub fn accumulate<I>(
    schema: SchemaRef,
    batches: I,
    spec: &EvalSpec,
    row_offset: u64,
    interrupted: &dyn Fn() -> bool,
) -> Result<PartialState>
where
    I: Iterator<Item = std::result::Result<RecordBatch, ArrowError>>,
{
    let pool = job_pool(spec.n_threads)?;
    let mut state = accumulate_in(schema, batches, spec, row_offset, interrupted, &pool, false)?;
    compact_kept_rows(&mut state, spec, &pool);
    if interrupted() {
        return Err(crate::error::AssayError::Interrupted);
    }
    crate::runtime::check()?;
    Ok(state)
}

/// Chunks per thread that a group of small batches gathers before its pieces run (see
/// [`accumulate_in`]): enough for the threads to stay busy between the group's waves.
const GROUP_CHUNKS_PER_THREAD: usize = 4;

/// A batch of a group, prepared for its pieces: its role columns, slice ids, the global
/// position of its first row and the rows read before it.
struct GroupBatch {
    cols: RoleColumns,
    ids: Vec<Arc<Vec<u32>>>,
    at: u64,
    pos: u64,
}

/// Rows `lo..hi` of batch `batch` of a group, within one chunk; `end` is the global position
/// after its last row.
struct Cut {
    batch: usize,
    lo: usize,
    hi: usize,
    end: u64,
}

/// Refuses a slice spec with more than `max` slices (so far, after `rows` rows): an ID-like
/// column as a slice would otherwise make one slice per row, silently. A spec that reports
/// one found slice (`slice_only`, a `discover_slices` row) is exempt: its cross may have any
/// number of values, only one is reported.
fn check_slice_count(spec: &EvalSpec, n_ids: &[usize], max: u64, rows: u64) -> Result<()> {
    for (k, (s, &n)) in spec.slices.iter().zip(n_ids).enumerate() {
        let only = spec.slice_only.get(k).is_some_and(|o| o.is_some());
        if n as u64 > max && !only {
            let cols: Vec<&str> = s.iter().map(|f| f.column()).collect();
            let (what, hint) = if cols.len() == 1 {
                (
                    format!("column {:?}", cols[0]),
                    format!(
                        "bucket a numeric column with assay.bins({:?}, n) or leave it out of \
                         the slices",
                        cols[0]
                    ),
                )
            } else {
                (
                    format!("the cross of {cols:?}"),
                    "cross fewer columns, or bucket numeric ones with assay.bins".to_string(),
                )
            };
            return Err(AssayError::InvalidArgument(format!(
                "{what} makes more than max_slices={max} slices ({n} distinct slices in the \
                 first {rows} rows); {hint}, or raise max_slices (None: no limit)"
            )));
        }
    }
    Ok(())
}

/// Sorts and compacts a state's kept rows when they have repeated (score, slice, label)
/// entries (see `state::runs`): merging is then a k-way merge, and the finalization walks them
/// without sorting. Rows that would not shrink by half, rows with resampling keys, unweighted
/// rows whose quantile bins are selected from the rows, and weighted rows whose calibration
/// bins are read from the rows stay as they are. (Calibration bins read from the kept rows
/// count rows and sum squared weights: an unweighted job's counts carry both, a weighted
/// job's combined weights neither.)
pub(crate) fn compact_kept_rows(
    state: &mut PartialState,
    spec: &EvalSpec,
    pool: &rayon::ThreadPool,
) {
    let plan = Plan::new(spec, state.slicer.n_specs(), false);
    let compact = plan.compactable;
    let n_ids = state.n_ids();
    pool.install(|| {
        for r in state.rank.iter_mut() {
            if compact && r.row_keys.is_empty() && r.compaction_pays(&n_ids[1..]) {
                r.sort_compact(true);
            }
        }
    });
}

/// [`accumulate`] on the threads of `pool` (the one-pass `evaluate` keeps one pool, and its
/// warm threads, for both stages). `replayable`: the state is finalized in this call, so it
/// may hold on to the caller's in-memory batches (see `Plan::replay`); a state that may be
/// shipped never does.
pub(super) fn accumulate_in<I>(
    schema: SchemaRef,
    batches: I,
    spec: &EvalSpec,
    row_offset: u64,
    interrupted: &dyn Fn() -> bool,
    pool: &rayon::ThreadPool,
    replayable: bool,
) -> Result<PartialState>
where
    I: Iterator<Item = std::result::Result<RecordBatch, ArrowError>>,
{
    spec.validate()?;
    let stop = || interrupted() || crate::runtime::interrupted();
    let family = crate::task::of(spec.family);
    // The content hash (`fingerprint`), taken from each batch as it passes.
    let hash = std::cell::Cell::new(0u64);
    let mut at = row_offset;
    let mut batches = batches.inspect(|b| {
        if let (Ok(b), Some(cols)) = (b, &spec.fingerprint) {
            let h = pool.install(|| crate::fingerprint::batch_hash(b, cols, at));
            hash.set(hash.get().wrapping_add(h));
            at = at.wrapping_add(b.num_rows() as u64);
        }
    });
    let content_hash = || spec.fingerprint.as_ref().map(|_| hash.get());
    if let Some(fam) = family {
        let plan = Plan::new(spec, spec.slices.len(), false);
        let check = |n_ids: &[usize], rows: u64| -> Result<()> {
            if let Some(max) = spec.max_slices {
                check_slice_count(spec, n_ids, max, rows)?;
            }
            // The slice blocks (and their replicate blocks) of every model must fit.
            let all_ids: Vec<usize> = (0..plan.models())
                .flat_map(|_| std::iter::once(1).chain(n_ids.iter().copied()))
                .collect();
            check_state_size(&all_ids, &plan, 0)
        };
        if let Some(state) = fam.own_pass(
            schema.clone(),
            &mut batches,
            spec,
            row_offset,
            &stop,
            pool,
            &check,
        ) {
            return state.map(|mut s| {
                s.content_hash = content_hash();
                s
            });
        }
    }
    let label_idx = column_index(&schema, &spec.label)?;
    let mut score_names: Vec<&str> = vec![&spec.score];
    if let Some(c) = &spec.compare {
        score_names.extend(c.others.iter().map(|(_, col)| col.as_str()));
    }
    let score_idx: Vec<usize> = score_names
        .iter()
        .map(|c| column_index(&schema, c))
        .collect::<Result<_>>()?;
    let weight_idx = spec
        .weight
        .as_deref()
        .map(|w| column_index(&schema, w))
        .transpose()?;
    // The label's and scores' types, and the family's own columns (a multiclass model's
    // probabilities, regression's prediction interval).
    let fam_cols = match family {
        Some(fam) => fam.columns(spec, &schema, &score_names)?,
        None => {
            check_label_type(&spec.label, schema.field(label_idx).data_type())?;
            crate::task::FamilyColumns {
                numeric_scores: true,
                extra: Vec::new(),
            }
        }
    };
    if fam_cols.numeric_scores {
        for (c, i) in score_names.iter().zip(&score_idx) {
            check_numeric_type(c, "score", schema.field(*i).data_type())?;
        }
    }
    if let (Some(w), Some(i)) = (&spec.weight, weight_idx) {
        check_numeric_type(w, "weight", schema.field(i).data_type())?;
    }
    let row_id_name = spec.interval.as_ref().and_then(|iv| iv.row_id.clone());
    let row_id_idx = row_id_name
        .as_deref()
        .map(|c| column_index(&schema, c))
        .transpose()?;
    if let (Some(c), Some(i)) = (&row_id_name, row_id_idx) {
        check_row_id_type(c, schema.field(i).data_type())?;
    }
    let mut slicer = Slicer::new(&schema, &spec.slices)?;
    let plan = Plan::new(
        spec,
        slicer.n_specs(),
        replayable && spec.rows_hint.is_some(),
    );
    let models = plan.models();
    // A job whose state of the overall slice alone cannot fit (a multiclass K x K confusion
    // matrix of tens of thousands of classes) is refused before any allocation, even of an
    // empty input's state.
    check_state_size(&vec![1; models], &plan, 1)?;
    let lean = plan.lean();

    let n_specs = slicer.n_specs();
    let mut total = ChunkState::default();
    let mut open: Option<ChunkState> = None;
    let mut free: Vec<ChunkState> = Vec::new();
    let mut rank: Vec<RankRows> = (0..models).map(|_| RankRows::with_specs(n_specs)).collect();
    let model_ids = |n_ids: &[usize]| -> Vec<usize> {
        (0..models).flat_map(|_| n_ids.iter().copied()).collect()
    };
    let (mut rows, mut dropped) = (0u64, 0u64);
    // Sketch mode: per model, spec and slice, the runs of the rows flushed so far.
    let mut sketches: Vec<Vec<Vec<RunSketch>>> = if plan.sketch_runs > 0 {
        vec![vec![Vec::new(); n_specs + 1]; models]
    } else {
        Vec::new()
    };
    let mut prob_hists: Vec<rel::ProbHist> = if plan.prob_counts {
        vec![rel::ProbHist::default(); models]
    } else {
        Vec::new()
    };
    // The batches of a replayed job (references to the caller's in-memory table).
    let mut retained: Vec<RecordBatch> = Vec::new();
    // Fixed by the first batch that has a valid weight (see `WeightScale`).
    let mut weight_scale: Option<WeightScale> = None;

    // Batches are read in groups of at least `group_rows` rows (a batch is never split across
    // groups), whose pieces then run in parallel waves: a stream of small batches (64k rows, one
    // chunk each) keeps every thread busy as one large batch does. Pieces are cut by global
    // chunk and each chunk's pieces run in order on one chunk state, so the states, their
    // merge order and the kept rows are the same for any grouping, batching or thread count.
    let group_rows =
        (GROUP_CHUNKS_PER_THREAD * pool.current_num_threads()).clamp(1, WAVE) * CHUNK_ROWS as usize;
    let mut batches = batches.enumerate();
    let mut exhausted = false;
    while !exhausted {
        let mut group: Vec<GroupBatch> = Vec::new();
        let mut cuts: Vec<Cut> = Vec::new();
        let mut in_group = 0usize;
        while in_group < group_rows {
            let Some((batch_index, batch)) = batches.next() else {
                exhausted = true;
                break;
            };
            let Some(batch) = next_batch(&schema, batch, batch_index, &stop)? else {
                continue;
            };
            let len = batch.num_rows();
            // The global position of the batch's first row (chunks and replicate weights
            // follow it, so that the shards of a split job cut and resample like one pass).
            let at = row_offset
                .checked_add(rows)
                .and_then(|a| a.checked_add(len as u64).map(|_| a))
                .ok_or_else(|| {
                    AssayError::InvalidArgument(format!(
                        "row_offset {row_offset} plus the rows read overflows 2^64"
                    ))
                })?;
            if plan.replay {
                retained.push(batch.clone());
            }
            let col = |i: usize| batch.column(i).clone();
            let cols = RoleColumns {
                label_nulls: validity(&col(label_idx)),
                label: col(label_idx),
                // (A family that reads its scores itself has them in `family`.)
                scores: if !fam_cols.numeric_scores {
                    Vec::new()
                } else {
                    score_idx
                        .iter()
                        .map(|i| (col(*i), validity(&col(*i))))
                        .collect()
                },
                weight: weight_idx.map(|i| (col(i), validity(&col(i)))),
                row_id: row_id_idx.map(|i| (col(i), validity(&col(i)))),
                family: fam_cols
                    .extra
                    .iter()
                    .map(|idx| idx.iter().map(|i| col(*i)).collect())
                    .collect(),
                weight_scale: match weight_idx {
                    Some(i) => {
                        if weight_scale.is_none() {
                            weight_scale = first_weight_scale(&col(i));
                        }
                        weight_scale.unwrap_or(WeightScale::ONE)
                    }
                    None => WeightScale::ONE,
                },
            };
            let ids = pool.install(|| slicer.encode_batch(&batch))?;
            if let Some(max) = spec.max_slices {
                let n_ids: Vec<usize> = (0..n_specs).map(|s| slicer.n_ids(s)).collect();
                check_slice_count(spec, &n_ids, max, rows + len as u64)?;
            }
            // Cut the batch at global chunk boundaries.
            let mut start = 0usize;
            while start < len {
                // Rows to the next chunk boundary (no overflow near 2^64: `at + len` fits).
                let g = at + start as u64;
                let to_boundary = CHUNK_ROWS - g % CHUNK_ROWS;
                let end = (start as u64 + to_boundary).min(len as u64) as usize;
                cuts.push(Cut {
                    batch: group.len(),
                    lo: start,
                    hi: end,
                    end: at + end as u64,
                });
                start = end;
            }
            group.push(GroupBatch {
                cols,
                ids,
                at,
                pos: rows,
            });
            rows += len as u64;
            in_group += len;
        }
        if cuts.is_empty() {
            continue;
        }
        let n_ids: Vec<usize> = std::iter::once(1)
            .chain((0..n_specs).map(|s| slicer.n_ids(s)))
            .collect();
        let all_ids = model_ids(&n_ids);
        // Tasks: the cuts of one chunk, in order (a chunk that batches cut into pieces).
        let mut tasks: Vec<std::ops::Range<usize>> = Vec::new();
        for i in 0..cuts.len() {
            match tasks.last_mut() {
                Some(t) if cuts[t.end - 1].end % CHUNK_ROWS != 0 => t.end = i + 1,
                _ => tasks.push(i..i + 1),
            }
        }
        // Waves of a few chunks per thread: the chunk states in flight (and their memory) stay
        // bounded however large the batch, and merged states are reused.
        let wave = WAVE;
        check_state_size(&all_ids, &plan, tasks.len().min(wave))?;
        for (w, wave_tasks) in tasks.chunks(wave).enumerate() {
            let wave_cuts = &cuts[wave_tasks[0].start..wave_tasks[wave_tasks.len() - 1].end];
            // Kept rows are written in place: each cut gets a window of each model's rows.
            let sizes: Vec<usize> = wave_cuts
                .iter()
                .map(|c| {
                    if plan.keep_rows {
                        (c.hi - c.lo) * plan.kept_per_row
                    } else {
                        0
                    }
                })
                .collect();
            let keyed = plan.keyed_rows;
            if w == 0 && plan.keep_rows {
                let here: usize = cuts.iter().map(|c| c.hi - c.lo).sum();
                let mut hinted = spec
                    .rows_hint
                    .map_or(0, |h| h.saturating_sub(rows - here as u64) as usize);
                if plan.sketch_runs > 0 {
                    // Sketch mode keeps at most `sketch_flush_rows` rows (plus this group).
                    hinted = hinted.min(plan.sketch_flush_rows as usize);
                }
                for r in rank.iter_mut() {
                    r.reserve_rows(here.max(hinted) * plan.kept_per_row, plan.weighted, keyed);
                }
            }
            let mut windows: Vec<std::vec::IntoIter<RankWindow>> = pool.install(|| {
                rank.iter_mut()
                    .map(|r| r.open_windows(&sizes, plan.weighted, keyed).into_iter())
                    .collect()
            });
            let mut states: Vec<(ChunkState, Vec<Vec<RankWindow>>)> = wave_tasks
                .iter()
                .enumerate()
                .map(|(k, t)| {
                    let mut st = match (w == 0 && k == 0, open.take()) {
                        (true, Some(st)) => st,
                        (_, back) => {
                            open = back;
                            free.pop().unwrap_or_default()
                        }
                    };
                    st.resize_logged(&all_ids, plan.shape);
                    let rk = t
                        .clone()
                        .map(|_| {
                            windows
                                .iter_mut()
                                .map(|w| w.next().expect("a window per cut"))
                                .collect()
                        })
                        .collect();
                    (st, rk)
                })
                .collect();
            drop(windows);
            type Outcome = (Result<u64>, Vec<rel::ProbHist>);
            let outcomes: Vec<Vec<Outcome>> = pool.install(|| {
                wave_tasks
                    .par_iter()
                    .zip(states.par_iter_mut())
                    .map_init(Leased::take, |scratch, (t, (st, rks))| {
                        let scratch = &mut scratch.0;
                        let mut out = Vec::with_capacity(t.len());
                        for (c, rk) in cuts[t.clone()].iter().zip(rks.iter_mut()) {
                            // A piece is at most one chunk of rows, but with calibration
                            // kernels a batch's pieces take a quarter of a second: poll
                            // before each.
                            if let Err(e) = crate::runtime::check() {
                                out.push((Err(e), Vec::new()));
                                break;
                            }
                            let b = &group[c.batch];
                            let (cols, ids) = (&b.cols, &b.ids[..]);
                            let (lo, hi) = (c.lo, c.hi);
                            let first = b.at + lo as u64;
                            let mut probs = if plan.prob_counts {
                                vec![rel::ProbCells::default(); models]
                            } else {
                                Vec::new()
                            };
                            let r = if let Some(fam) = family {
                                let piece = Piece {
                                    spec,
                                    shape: plan.shape,
                                    keep_rows: plan.keep_rows,
                                    replay: plan.replay,
                                    resampler: plan.resampler.as_ref(),
                                    score_names: &plan.score_names,
                                    cols,
                                    ids,
                                    lo,
                                    hi,
                                    first_row: first,
                                    // (A replayed job keeps each row's position in its
                                    // batches.)
                                    first_pos: b.pos + lo as u64,
                                };
                                fam.update_piece(&piece, st, rk, &mut scratch.piece)
                            } else if lean {
                                update_piece::<true>(
                                    &plan, cols, ids, lo, hi, first, st, rk, &mut probs, scratch,
                                )
                            } else {
                                update_piece::<false>(
                                    &plan, cols, ids, lo, hi, first, st, rk, &mut probs, scratch,
                                )
                            };
                            let hists = probs.iter().map(rel::ProbCells::hist).collect();
                            out.push((r, hists));
                        }
                        out
                    })
                    .collect()
            });
            for (o, hists) in outcomes.into_iter().flatten() {
                dropped += o?;
                // In piece order (fixed by position), like every other merge.
                for (all, h) in prob_hists.iter_mut().zip(&hists) {
                    all.merge(h);
                }
            }
            let mut written: Vec<Vec<usize>> = vec![Vec::with_capacity(wave_cuts.len()); models];
            for (t, (mut st, rks)) in wave_tasks.iter().zip(states) {
                for rk in &rks {
                    for (m, win) in rk.iter().enumerate() {
                        written[m].push(win.at);
                    }
                }
                if cuts[t.end - 1].end % CHUNK_ROWS == 0 {
                    total.merge_chunk(&st, pool);
                    st.clear();
                    free.push(st);
                } else {
                    open = Some(st);
                }
            }
            for (r, wr) in rank.iter_mut().zip(&written) {
                r.close_windows(&sizes, wr);
            }
            // Sketch mode: the kept rows up to the last global multiple of `sketch_flush_rows`
            // this wave reached become runs, so memory stays bounded however many rows are
            // read, and (cut by position) the runs do not depend on the batches.
            let last_cut = wave_cuts
                .iter()
                .rposition(|c| c.end % plan.sketch_flush_rows == 0);
            if let (Some(p), true) = (last_cut, plan.sketch_runs > 0) {
                let budget = plan.sketch_runs;
                for ((r, wr), sk) in rank.iter_mut().zip(&written).zip(sketches.iter_mut()) {
                    let in_wave: usize = wr.iter().sum();
                    let cut = r.len() - in_wave + wr[..=p].iter().sum::<usize>();
                    pool.install(|| flush_sketches(sk, r, cut, &n_ids, budget, &plan.shape));
                }
                crate::runtime::check()?;
            }
        }
    }
    if let Some(st) = open.take() {
        total.merge_chunk(&st, pool);
    }
    let n_ids: Vec<usize> = std::iter::once(1)
        .chain((0..n_specs).map(|s| slicer.n_ids(s)))
        .collect();
    total.resize(&model_ids(&n_ids), plan.shape);
    if plan.sketch_runs > 0 {
        let budget = plan.sketch_runs;
        for (r, sk) in rank.iter_mut().zip(sketches.iter_mut()) {
            let cut = r.len();
            pool.install(|| flush_sketches(sk, r, cut, &n_ids, budget, &plan.shape));
            let per_slice = plan.shape.sketches_per_slice();
            for (k, per_id) in sk.iter_mut().enumerate() {
                per_id.resize_with(n_ids[k] * per_slice, RunSketch::default);
            }
        }
        pool.install(|| compress_sketches(&mut sketches, &plan.shape, budget));
    }
    Ok(PartialState {
        spec_json: String::new(),
        slicer,
        models,
        shape: plan.shape,
        total,
        rank: if plan.keep_rows && plan.sketch_runs == 0 {
            rank
        } else {
            Vec::new()
        },
        sketches,
        sketch_runs: plan.sketch_runs,
        prob_hists,
        weight_scale,
        rows,
        dropped,
        position_keys: plan.resampler.is_some() && row_id_idx.is_none(),
        ranges: if rows > 0 {
            vec![(row_offset, row_offset + rows)]
        } else {
            Vec::new()
        },
        queries: Vec::new(),
        content_hash: content_hash(),
        replay: plan.replay.then(|| Replay {
            batches: retained,
            label: label_idx,
            scores: score_idx.clone(),
            family: fam_cols.extra.clone(),
        }),
    })
}

/// Updates `state` (and `rank`, one per model) with rows `lo..hi` of the batch; returns rows
/// dropped. States of model `m` and spec `k` sit at `state.specs[m * (n_specs + 1) + k]`.
/// `LEAN` jobs (one model, no resampling, no moments) compile without those branches: the
/// plain evaluation is the hot path most users run.
#[allow(clippy::too_many_arguments)]
fn update_piece<const LEAN: bool>(
    plan: &Plan,
    cols: &RoleColumns,
    ids: &[Arc<Vec<u32>>],
    lo: usize,
    hi: usize,
    first_row: u64,
    state: &mut ChunkState,
    rank: &mut [RankWindow],
    probs: &mut [rel::ProbCells],
    scratch: &mut Scratch,
) -> Result<u64> {
    let spec = plan.spec;
    let Scratch { piece, aux } = scratch;
    let (labels, scores, raw_weights, weights) = piece.views.of(cols, lo, hi);
    let drop = spec.nan_policy == NanPolicy::Drop;
    let mut dropped = 0;
    let bins = plan.hist_bins;
    let slots = if plan.additive_reps {
        plan.shape.slots
    } else {
        0
    };
    let per_model = ids.len() + 1;
    let row_ids = cols.row_id.as_ref().map(|(a, _)| u64_values(a, lo, hi));
    let mut kw = vec![0.0f64; slots.max(plan.shape.slots * plan.shape.calib_reps as usize)];
    let calib_bins = plan.shape.calib_bins;
    let calib = calib_bins > 0 || plan.shape.grid || plan.shape.logit;
    if LEAN
        && lean_fast_piece(
            plan,
            cols,
            ids,
            (lo, hi),
            (labels, scores[0], weights),
            state,
            &mut rank[0],
            probs.first_mut(),
            aux,
        )
    {
        return Ok(0);
    }
    'rows: for j in 0..hi - lo {
        // Rows of a resampled job cost one update per replicate slot: poll for an interrupt
        // every few rows (a piece alone can take seconds).
        if !LEAN && slots > 0 && j % crate::runtime::POLL_REPLICATED_ROWS == 0 {
            crate::runtime::check()?;
        }
        let i = lo + j;
        let row = first_row + j as u64;
        let y = labels[j];
        let label_missing = cols.label_nulls.as_ref().is_some_and(|n| n.is_null(i)) || y.is_nan();
        if label_missing {
            if drop {
                dropped += 1;
                continue;
            }
            return Err(invalid(
                &spec.label,
                format!(
                    "null or NaN label at row {row}; pass nan_policy=\"drop\" to drop such rows"
                ),
            ));
        }
        // A row missing any model's score is dropped for all models: comparisons are paired.
        for (m, (_, nulls)) in cols.scores.iter().enumerate() {
            let s = scores[m][j];
            let score_missing = nulls.as_ref().is_some_and(|n| n.is_null(i));
            if score_missing || !s.is_finite() {
                if drop {
                    dropped += 1;
                    continue 'rows;
                }
                let what = if score_missing {
                    "null".to_string()
                } else {
                    s.to_string()
                };
                return Err(invalid(
                    plan.score_names[m],
                    format!(
                        "score is {what} at row {row}; pass nan_policy=\"drop\" to drop such rows"
                    ),
                ));
            }
        }
        let yb = if y == 1.0 {
            true
        } else if y == 0.0 {
            false
        } else {
            return Err(invalid(
                &spec.label,
                format!("labels must be 0 or 1 (or booleans); found {y:?} at row {row}"),
            ));
        };
        if plan.need_probability {
            for (m, sc) in scores.iter().enumerate() {
                let s = sc[j];
                if !(0.0..=1.0).contains(&s) {
                    return Err(invalid(
                        plan.score_names[m],
                        format!("score {s:?} at row {row} is outside [0, 1]; log_loss, brier, the calibration metrics and auc=\"binned\" need probabilities"),
                    ));
                }
            }
        }
        let w = match (&raw_weights, &weights) {
            (Some(raw), Some(w)) => valid_weight(spec, cols, raw, w, i, j, row)?,
            _ => 1.0,
        };
        let mut row_key = 0;
        if let (false, Some(r)) = (LEAN, &plan.resampler) {
            row_key = r.row_key(row_id(spec, cols, &row_ids, i, j, row)?);
            if !kw.is_empty() {
                r.fill(row_key, w, 0, &mut kw);
            }
        }
        for (m, sc) in scores
            .iter()
            .enumerate()
            .take(if LEAN { 1 } else { usize::MAX })
        {
            let s = sc[j];
            let pred = s >= spec.threshold;
            let ll = if plan.need_log_loss {
                crate::fastmath::log_loss(yb, s)
            } else {
                0.0
            };
            let br = (s - y) * (s - y);
            let hist_bin = if bins > 0 {
                ((s * bins as f64) as usize).min(bins - 1)
            } else {
                0
            };
            let cell = (yb as usize) << 1 | pred as usize;
            let calib_bin = if calib_bins > 0 {
                rel::uniform_bin(&plan.calib_edges, s)
            } else {
                0
            };
            let model_states = &mut state.specs[m * per_model..(m + 1) * per_model];
            for (k, st) in model_states.iter_mut().enumerate() {
                let id = if k == 0 { 0 } else { ids[k - 1][i] as usize };
                st.counts[id].add(yb, pred, w, ll, br);
                if bins > 0 {
                    st.hist_add((id * bins + hist_bin) * 2 + yb as usize, w);
                }
                if !LEAN && plan.shape.moments {
                    st.moments[id].add(yb, pred, w, ll, br);
                }
                if !LEAN && slots > 0 {
                    let block = &mut st.reps[id * REP_ROWS * slots..(id + 1) * REP_ROWS * slots];
                    add_row(block, slots, cell, &kw, plan.rep_losses.then_some((ll, br)));
                }
                if calib {
                    update_calibration(plan, st, id, calib_bin, s, y, w, &kw);
                }
            }
            if plan.prob_counts {
                probs[m].add(s, yb);
            }
            if plan.keep_rows {
                let rank = &mut rank[m];
                rank.put(s, yb, w, row_key);
                let at = rank.at;
                for (k, v) in rank.ids.iter_mut().enumerate() {
                    v[at] = ids[k][i];
                }
                rank.at += 1;
            }
        }
    }
    Ok(dropped)
}

/// The plain job's fast path for a piece without nulls: one vectorizable check of every row,
/// then one tight loop per slice spec with no error branches. Each accumulator receives its rows
/// in row order, as in the general loop, so the sums have the same bits. Returns false (and
/// changes nothing) when some row is invalid: the general loop then reports or drops it.
#[allow(clippy::too_many_arguments)]
fn lean_fast_piece(
    plan: &Plan,
    cols: &RoleColumns,
    ids: &[Arc<Vec<u32>>],
    (lo, hi): (usize, usize),
    (labels, scores, weights): (&[f64], &[f64], Option<&[f64]>),
    state: &mut ChunkState,
    rank: &mut RankWindow,
    probs: Option<&mut rel::ProbCells>,
    aux: &mut [Vec<f64>; 2],
) -> bool {
    let no_nulls = cols.label_nulls.is_none()
        && cols.scores[0].1.is_none()
        && cols.weight.as_ref().is_none_or(|(_, n)| n.is_none());
    if !no_nulls {
        return false;
    }
    let rows_ok = crate::fastmath::binary_rows_valid(labels, scores, plan.need_probability);
    // Scaled weights must stay normal (see the general loop, which reports the ones that do not).
    let scaled = cols.weight_scale.exp != 0;
    // Positive and finite: at least the least subnormal; positive and normal: at least
    // MIN_POSITIVE.
    let least = if scaled {
        f64::MIN_POSITIVE
    } else {
        f64::from_bits(1)
    };
    let weights_ok = weights.is_none_or(|w| crate::fastmath::all_within(w, least, f64::MAX));
    if !(rows_ok && weights_ok) {
        return false;
    }
    let spec = plan.spec;
    let n = hi - lo;
    let w_at = |j: usize| weights.map_or(1.0, |w| w[j]);
    let [log_loss, logits] = aux;
    log_loss.clear();
    if plan.need_log_loss {
        crate::fastmath::log_losses(labels, scores, log_loss);
    }
    logits.clear();
    if plan.shape.logit {
        crate::fastmath::logits(scores, logits);
    }
    let bins = plan.hist_bins;
    let shape = plan.shape;
    for (k, st) in state.specs.iter_mut().enumerate().take(ids.len() + 1) {
        let id_of = |j: usize| {
            if k == 0 {
                0
            } else {
                ids[k - 1][lo + j] as usize
            }
        };
        if k == 0 && weights.is_none() {
            let ll = plan.need_log_loss.then_some(&log_loss[..]);
            st.counts[0].add_unweighted(labels, scores, spec.threshold, ll, plan.need_brier);
        } else if k == 0 {
            // One slice: the counts stay in registers.
            let mut c = st.counts[0];
            for j in 0..n {
                let (y, s) = (labels[j], scores[j]);
                let ll = if plan.need_log_loss { log_loss[j] } else { 0.0 };
                c.add(
                    y == 1.0,
                    s >= spec.threshold,
                    w_at(j),
                    ll,
                    (s - y) * (s - y),
                );
            }
            st.counts[0] = c;
        } else {
            for j in 0..n {
                let (y, s) = (labels[j], scores[j]);
                let ll = if plan.need_log_loss { log_loss[j] } else { 0.0 };
                let c = &mut st.counts[id_of(j)];
                c.add(
                    y == 1.0,
                    s >= spec.threshold,
                    w_at(j),
                    ll,
                    (s - y) * (s - y),
                );
            }
        }
        if bins > 0 {
            for j in 0..n {
                let s = scores[j];
                let b = ((s * bins as f64) as usize).min(bins - 1);
                st.hist_add(
                    (id_of(j) * bins + b) * 2 + (labels[j] == 1.0) as usize,
                    w_at(j),
                );
            }
        }
        if shape.calib_bins > 0 {
            let len = shape.calib_bins * BIN_FIELDS;
            for j in 0..n {
                let (s, id) = (scores[j], id_of(j));
                let b = rel::uniform_bin(&plan.calib_edges, s);
                rel::add_bin(
                    &mut st.calib[id * len..(id + 1) * len],
                    b,
                    s,
                    labels[j],
                    w_at(j),
                );
            }
        }
        if shape.grid {
            let len = (GRID_CELLS + 1) * GRID_FIELDS;
            for j in 0..n {
                let id = id_of(j);
                rel::add_grid(
                    &mut st.grid[id * len..(id + 1) * len],
                    scores[j],
                    labels[j],
                    w_at(j),
                );
            }
        }
        if shape.logit {
            let len = LOGIT_CELLS * LOGIT_FIELDS;
            for j in 0..n {
                let id = id_of(j);
                let cells = &mut st.logit[id * len..(id + 1) * len];
                rel::add_logit_at(cells, logits[j], labels[j], w_at(j));
            }
        }
    }
    if let (true, Some(p)) = (plan.prob_counts, probs) {
        p.add_rows(scores, labels);
    }
    if plan.keep_rows {
        rank.scores[..n].copy_from_slice(scores);
        for (l, y) in rank.labels[..n].iter_mut().zip(labels) {
            *l = (*y == 1.0) as u8;
        }
        if plan.weighted {
            rank.weights[..n].copy_from_slice(weights.expect("weights of a weighted job"));
        }
        for (k, v) in rank.ids.iter_mut().enumerate() {
            v[..n].copy_from_slice(&ids[k][lo..hi]);
        }
        rank.at = n;
    }
    true
}

/// Buffers a worker reuses from one chunk to the next (fresh ones would page-fault).
#[derive(Default)]
pub(super) struct Scratch {
    /// The role columns of a piece as f64, and a task family's buffers.
    pub(super) piece: PieceScratch,
    /// Per-row log losses and logits of the fast path.
    aux: [Vec<f64>; 2],
}

/// Piece buffers kept between waves and between calls ([`Leased`]): without them every wave
/// of every call allocated its buffers afresh (a few hundred KiB each, above the allocator's
/// mmap threshold), and the kernel zeroed their pages again. A split job (many small
/// `accumulate` calls) paid this per shard. At most [`STASH_MAX`] are kept (a few MiB).
static STASH: std::sync::Mutex<Vec<Scratch>> = std::sync::Mutex::new(Vec::new());

/// Buffers kept in [`STASH`] at most.
const STASH_MAX: usize = 8;

/// A piece's buffers, taken from [`STASH`] (or new) and put back when dropped. The lock is
/// only tried, never waited for: a busy (or, after a `fork`, orphaned) lock costs one
/// allocation, never a wait. Only the buffers of bounded size (a piece's rows, at most a
/// chunk) are kept; a task family's own buffers are dropped.
pub(super) struct Leased(pub(super) Scratch);

impl Leased {
    pub(super) fn take() -> Leased {
        let kept = STASH.try_lock().ok().and_then(|mut s| s.pop());
        Leased(kept.unwrap_or_default())
    }
}

impl Drop for Leased {
    fn drop(&mut self) {
        if let Ok(mut s) = STASH.try_lock() {
            if s.len() < STASH_MAX {
                let mut kept = std::mem::take(&mut self.0);
                kept.piece.family = None;
                s.push(kept);
            }
        }
    }
}

/// One row's calibration states in slice `id` of `st`.
#[allow(clippy::too_many_arguments)]
#[inline]
fn update_calibration(
    plan: &Plan,
    st: &mut crate::state::SliceStates,
    id: usize,
    bin: usize,
    s: f64,
    y: f64,
    w: f64,
    kw: &[f64],
) {
    let shape = plan.shape;
    let bins = shape.calib_bins;
    if bins > 0 {
        let block = &mut st.calib[id * bins * BIN_FIELDS..(id + 1) * bins * BIN_FIELDS];
        rel::add_bin(block, bin, s, y, w);
        if shape.calib_reps {
            let len = bins * REP_BIN_FIELDS * shape.slots;
            let block = &mut st.calib_reps[id * len..(id + 1) * len];
            rel::add_bin_reps(block, shape.slots, bin, s, y, w, kw);
        }
    }
    if shape.grid {
        let len = (GRID_CELLS + 1) * GRID_FIELDS;
        rel::add_grid(&mut st.grid[id * len..(id + 1) * len], s, y, w);
    }
    if shape.logit {
        let len = LOGIT_CELLS * LOGIT_FIELDS;
        rel::add_logit(&mut st.logit[id * len..(id + 1) * len], s, y, w);
    }
}
