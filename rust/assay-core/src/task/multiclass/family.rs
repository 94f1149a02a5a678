//! The multiclass family's side of the seam (see `crate::task`): its options, its plan, its
//! columns, its row kernel over a piece and its finalizer.

use rayon::prelude::*;

use super as mc;
use crate::error::{invalid, AssayError, Result};
use crate::input::{column_index, f64_view, u64_values};
use crate::metrics::Metric;
use crate::piece::{row_id, valid_weight, Piece, PieceScratch};
use crate::reliability::{self as rel, BinRule};
use crate::spec::{AucMode, EvalSpec, NanPolicy};
use crate::state::{ChunkState, RankWindow, StateShape, WeightScale};
use crate::task::{
    FamilyColumns, FamilyPlan, FinalSlice, FinalizeInput, SliceFinalizer, SliceOut, TaskFamily,
};

/// The options of a multiclass job.
#[derive(Clone, Debug, PartialEq)]
pub struct MulticlassSpec {
    /// The K classes, in score column order.
    pub classes: mc::Classes,
    /// Per model (the reference first): its K score columns, or empty when the model's
    /// scores are one list column (`EvalSpec::score`, `CompareSpec::others`).
    pub score_columns: Vec<Vec<String>>,
    pub normalize: mc::Normalize,
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

/// Whether the job asks for a calibration error (top-label or classwise).
fn wants_ece(spec: &EvalSpec) -> bool {
    spec.metrics
        .iter()
        .any(|m| matches!(m, Metric::EceTopLabel | Metric::EceClasswise))
}

/// The uniform edges of the calibration errors' bins kept in the pass (empty: none, or
/// quantile bins built at finalization from the kept rows).
fn ece_edges(spec: &EvalSpec) -> Vec<f64> {
    if wants_ece(spec) && spec.calibration.rule == BinRule::Uniform {
        rel::uniform_edges(spec.calibration.bins)
    } else {
        Vec::new()
    }
}

/// The multiclass family.
pub struct Multiclass;

impl TaskFamily for Multiclass {
    fn foreign_options(&self, _spec: &EvalSpec) -> String {
        "classes= and normalize= apply to task=\"multiclass\"".into()
    }

    fn validate(&self, spec: &EvalSpec) -> Result<()> {
        let Some(mcs) = spec.task.multiclass() else {
            return Err(AssayError::InvalidArgument(
                "task=\"multiclass\" needs its classes".into(),
            ));
        };
        let k = mcs.k();
        if !(2..=mc::MAX_CLASSES).contains(&k) {
            return Err(AssayError::InvalidArgument(format!(
                "a multiclass job needs 2 to {} classes, got {k}",
                mc::MAX_CLASSES
            )));
        }
        let mut seen = std::collections::HashSet::new();
        if let Some(dup) = mcs.classes.names.iter().find(|c| !seen.insert(*c)) {
            return Err(AssayError::InvalidArgument(format!(
                "classes= names {dup:?} twice; each class must be named once"
            )));
        }
        if mcs.classes.ints.as_ref().is_some_and(|v| v.len() != k) {
            return Err(AssayError::InvalidArgument(
                "the integer values of the classes must be as many as the classes".into(),
            ));
        }
        let models = 1 + spec.compare.as_ref().map_or(0, |c| c.others.len());
        if mcs.score_columns.len() != models {
            return Err(AssayError::InvalidArgument(format!(
                "a multiclass job names the score columns of {} models, it has {models}",
                mcs.score_columns.len()
            )));
        }
        if let Some(cols) = mcs
            .score_columns
            .iter()
            .find(|c| !c.is_empty() && c.len() != k)
        {
            return Err(AssayError::InvalidArgument(format!(
                "score= names {} columns, but there are {k} classes (one score column per \
                 class, in the order of classes=)",
                cols.len()
            )));
        }
        if spec.reliability.is_some() {
            return Err(AssayError::InvalidArgument(
                "reliability tables are for binary scores; task=\"multiclass\" has \
                 ece_top_label and ece_classwise"
                    .into(),
            ));
        }
        let resampled = spec.interval.as_ref().is_some_and(|iv| iv.slots() > 0);
        if resampled && spec.auc != AucMode::Exact && spec.metrics.iter().any(Metric::is_rank) {
            let what = match spec.auc {
                AucMode::Sketch(_) => ("sketch", "run sketch"),
                _ => ("binned", "histogram"),
            };
            return Err(AssayError::InvalidArgument(format!(
                "bootstrap intervals of the multiclass ROC-AUCs need auc=\"exact\" \
                 (auc=\"{}\" keeps one {} per slice and class, without replicates); for \
                 intervals of the other metrics, evaluate the ROC-AUCs in a job of their own",
                what.0, what.1
            )));
        }
        Ok(())
    }

    fn plan(&self, spec: &EvalSpec, replayable: bool) -> FamilyPlan {
        // Multiclass metrics are sums of the family's blocks: no binary state at all.
        let k = spec.task.multiclass().map_or(0, |mcs| mcs.k());
        let cal = spec.calibration;
        let slots = spec.interval.as_ref().map_or(0, |iv| iv.slots());
        // The ROC-AUCs: exact from kept rows, binned from per-slice histograms, or from run
        // sketches of the kept rows (flushed as the pass goes).
        let rank = spec.metrics.iter().any(Metric::is_rank);
        let auc_bins = match spec.auc {
            AucMode::Binned(b) if rank => b,
            _ => 0,
        };
        let sketch_runs = match spec.auc {
            AucMode::Sketch(r) if rank => r,
            _ => 0,
        };
        let ovo = spec
            .metrics
            .iter()
            .any(|m| matches!(m, Metric::RocAucOvo | Metric::RocAucOvoWeighted));
        // Quantile calibration bins take their edges from each slice's probabilities: the
        // calibration errors are then built at finalization from the kept rows.
        let quantile_ece = wants_ece(spec) && cal.rule == BinRule::Quantile;
        let ece = wants_ece(spec) && !quantile_ece;
        let keep_rows = (rank && auc_bins == 0) || quantile_ece;
        // The exact ROC-AUCs (and quantile calibration bins) read every row's K probabilities
        // at finalization: a state that is finalized in the call over an in-memory input
        // keeps one entry a row (its position) and reads the probability matrix again in
        // place; any other keeps the K entries (see `multiclass::aucs`).
        let replay = keep_rows && replayable && sketch_runs == 0;
        let flush = crate::piece::SKETCH_FLUSH_ROWS;
        FamilyPlan {
            shape: StateShape {
                family: crate::metrics::Family::Multiclass,
                slots,
                classes: k,
                top_k: MulticlassSpec::top_ks(&spec.metrics).len(),
                ece_bins: if ece { cal.bins } else { 0 },
                classwise: ece && spec.metrics.contains(&Metric::EceClasswise),
                auc_bins,
                auc_pairs: (auc_bins > 0 || sketch_runs > 0) && ovo,
                ..StateShape::default()
            },
            keep_rows,
            replay,
            kept_per_row: if replay { 1 } else { k },
            sketch_runs,
            sketch_flush_rows: (flush / k.max(1).next_power_of_two() as u64)
                .max(crate::piece::CHUNK_ROWS),
            keyed_rows: slots > 0,
            // (A row's K entries stay together and in class order.)
            compactable: false,
            row_bootstrap: true,
        }
    }

    fn columns(
        &self,
        spec: &EvalSpec,
        schema: &arrow_schema::Schema,
        score_names: &[&str],
    ) -> Result<FamilyColumns> {
        let mcs = spec
            .task
            .multiclass()
            .expect("validated: a multiclass job has its classes");
        let label = column_index(schema, &spec.label)?;
        mc::check_label_type(schema.field(label).data_type(), &mcs.classes)
            .map_err(|m| crate::error::schema(&spec.label, m))?;
        // Per model, the columns of its probabilities (one list column, or K).
        let mut extra = Vec::with_capacity(mcs.score_columns.len());
        for (m, cols) in mcs.score_columns.iter().enumerate() {
            let named: Vec<&str> = if cols.is_empty() {
                vec![score_names[m]]
            } else {
                cols.iter().map(String::as_str).collect()
            };
            let mut idx = Vec::with_capacity(named.len());
            for c in named {
                let i = column_index(schema, c)?;
                mc::check_score_type(schema.field(i).data_type(), mcs.k(), !cols.is_empty())
                    .map_err(|m| crate::error::schema(c, m))?;
                idx.push(i);
            }
            extra.push(idx);
        }
        Ok(FamilyColumns {
            numeric_scores: false,
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
        Ok(Box::new(Finalizer::new(spec, input)?))
    }

    fn check_slices(&self, sh: &StateShape, sketch_runs: usize, model_ids: usize) -> Result<()> {
        // auc="sketch" keeps K (or K x K) run sketches per slice: bounded in number, which
        // also keeps their indices (`multiclass_sketch_keys`) within u32.
        let per_slice = sh.sketches_per_slice();
        if sketch_runs > 0 && per_slice > 1 && model_ids.saturating_mul(per_slice) > MAX_SKETCHES {
            return Err(AssayError::InvalidArgument(format!(
                "auc=\"sketch\" keeps {} run sketches per slice ({}), {} in all for \
                 {model_ids} slices (more than {MAX_SKETCHES} per model); use fewer or coarser \
                 slices, leave out roc_auc_ovo and roc_auc_ovo_weighted (one sketch per class \
                 instead of per pair), or auc=\"binned\"",
                per_slice,
                if sh.auc_pairs {
                    "one per pair of classes, for the one-vs-one ROC-AUCs"
                } else {
                    "one per class"
                },
                model_ids.saturating_mul(per_slice)
            )));
        }
        Ok(())
    }

    fn size_hint(&self, sh: &StateShape) -> (String, String) {
        // A slice keeps K x K confusion cells and its per-class sums, and with auc="binned"
        // K x 2 (or K x K) histograms.
        let classes = format!(" x {} classes", sh.classes);
        if sh.auc_bins > 0 {
            let hint = format!(
                "; auc=\"binned\" keeps {} x {} x {} histogram cells per slice: use fewer \
                 auc_bins, or auc=\"exact\"",
                sh.classes,
                if sh.auc_pairs { sh.classes } else { 2 },
                sh.auc_bins
            );
            (classes, hint)
        } else {
            let hint = "; each slice keeps a K x K confusion matrix: merge rare classes";
            (classes, hint.to_string())
        }
    }

    fn on_device(&self, _spec: &EvalSpec) -> Option<String> {
        Some("task=\"multiclass\"".into())
    }
}

/// The most run sketches a multiclass `auc="sketch"` job keeps per model (a sketch costs 24
/// bytes before its runs, up to `auc_max_runs` x 40 bytes with them).
pub const MAX_SKETCHES: usize = 1 << 22;

/// The multiclass finalization: the ROC-AUCs and quantile calibration errors of every slice
/// (from the kept rows, the run sketches or the histograms), then each slice's values.
struct Finalizer<'s> {
    spec: &'s EvalSpec,
    mcs: &'s MulticlassSpec,
    /// `[model][spec][id]`.
    aucs: Vec<Vec<Vec<mc::SliceAuc>>>,
    /// `[model][spec][id]` of (top-label, classwise).
    qece: Vec<Vec<Vec<[Option<f64>; 2]>>>,
    sketched: bool,
    tables: mc::TableRows,
}

impl<'s> Finalizer<'s> {
    fn new(spec: &'s EvalSpec, input: &FinalizeInput) -> Result<Self> {
        let mcs = spec.task.multiclass().expect("a multiclass job");
        let (k, n_ids, pool) = (mcs.k(), input.n_ids, input.pool);
        let models = input.state.models;
        let shape = input.shape;
        let exact_aucs = spec.metrics.iter().any(Metric::is_rank)
            && shape.auc_bins == 0
            && input.sketch_runs == 0;
        // The batches a replayed job reads model `m`'s probabilities from again (None: the
        // state keeps them).
        let replay_probs = |m: usize| {
            input.state.replay.as_ref().map(|r| mc::ReplayProbs {
                batches: &r.batches,
                label: r.label,
                columns: &r.family[m],
                classes: &mcs.classes,
                normalize: mcs.normalize,
            })
        };
        let aucs: Vec<Vec<Vec<mc::SliceAuc>>> = if input.sketch_runs > 0 {
            // auc="sketch": from each slice's run sketches (see `multiclass::sketch_aucs`).
            let per_slice = shape.sketches_per_slice();
            let pairs = shape.auc_pairs;
            (0..models)
                .map(|m| {
                    input.state.sketches[m]
                        .iter()
                        .map(|per_id| {
                            pool.install(|| {
                                per_id
                                    .par_chunks(per_slice)
                                    .map(|sk| mc::sketch_aucs(sk, k, pairs))
                                    .collect()
                            })
                        })
                        .collect()
                })
                .collect()
        } else if input.keep_rows && exact_aucs {
            let reps = input
                .resampler
                .zip(spec.interval.as_ref())
                .map(|(r, iv)| (r, iv.slots()));
            (0..models)
                .map(|m| {
                    // (A replayed job reads the probabilities again from its batches.)
                    let replay = replay_probs(m);
                    let rk = input.ranks[m];
                    pool.install(|| mc::aucs(rk, n_ids, k, reps, replay.as_ref()))
                })
                .collect()
        } else if shape.auc_bins > 0 {
            // auc="binned": from each slice's histograms (K x K x bins a slice with the
            // one-vs-one pairs: slices in parallel).
            let layout = mc::Layout::of(&shape);
            let blen = layout.block_len();
            let per_model = n_ids.len();
            (0..models)
                .map(|m| {
                    (0..per_model)
                        .map(|sk| {
                            let st = &input.total.specs[m * per_model + sk];
                            pool.install(|| {
                                (0..n_ids[sk])
                                    .into_par_iter()
                                    .map(|id| {
                                        let block = &st.fam[id * blen..(id + 1) * blen];
                                        mc::binned_aucs(block, &layout)
                                    })
                                    .collect()
                            })
                        })
                        .collect()
                })
                .collect()
        } else {
            Vec::new()
        };
        crate::runtime::check()?;
        // The calibration errors of quantile bins, from the kept rows (the same two routes).
        let qece = if input.keep_rows
            && spec.calibration.rule == BinRule::Quantile
            && wants_ece(spec)
        {
            let wants = (
                spec.metrics.contains(&Metric::EceTopLabel),
                spec.metrics.contains(&Metric::EceClasswise),
            );
            let bins = spec.calibration.bins;
            (0..models)
                .map(|m| {
                    let replay = replay_probs(m);
                    let rk = input.ranks[m];
                    pool.install(|| mc::quantile_eces(rk, n_ids, k, replay.as_ref(), bins, wants))
                })
                .collect()
        } else {
            Vec::new()
        };
        crate::runtime::check()?;
        Ok(Finalizer {
            spec,
            mcs,
            aucs,
            qece,
            sketched: input.sketch_runs > 0,
            tables: mc::TableRows::default(),
        })
    }
}

impl SliceFinalizer for Finalizer<'_> {
    fn slice(&mut self, s: &FinalSlice, kept: Option<&mut Vec<Vec<f64>>>) -> SliceOut {
        let spec = self.spec;
        let shape = s.shape;
        let layout = mc::Layout::of(&shape);
        let (blen, rlen) = (layout.block_len(), crate::task::rep_block_len(&shape));
        let (idu, k) = (s.id, s.spec_index);
        let block = &s.states.fam[idu * blen..(idu + 1) * blen];
        let auc = self.aucs.get(s.model).map(|a| &a[k][idu]);
        let qece = self.qece.get(s.model).map(|q| q[k][idu]);
        if s.model == 0 {
            self.tables.add(s.label, block, &layout, auc, s.small);
        }
        let (values, intervals) = mc::slice_results(
            block,
            &s.states.fam_reps[idu * rlen..(idu + 1) * rlen],
            &layout,
            &MulticlassSpec::top_ks(&spec.metrics),
            auc,
            qece,
            &spec.metrics,
            spec.interval.as_ref(),
            s.small,
            kept,
        );
        // A sketched slice's bounds come with its ROC-AUCs.
        let bounds = match auc {
            Some(a) if self.sketched => spec.metrics.iter().map(|m| a.bound(*m)).collect(),
            _ => Vec::new(),
        };
        SliceOut {
            values,
            intervals,
            bounds,
        }
    }

    fn tables(
        self: Box<Self>,
        scale: &WeightScale,
    ) -> Result<Vec<(&'static str, arrow_array::RecordBatch)>> {
        self.tables
            .finish(&self.mcs.classes.names, |w| scale.unscale(w))
    }
}

/// The multiclass piece's buffers (see [`update_piece`]).
#[derive(Default)]
struct MulticlassScratch {
    codes: Vec<u32>,
    weights: Vec<f64>,
    scaled: Vec<f64>,
    /// One row's probabilities per model (K each).
    p: Vec<Vec<f64>>,
    kw: Vec<f64>,
}

/// The multiclass family's piece: rows `lo..hi` of the batch, their labels mapped to classes,
/// every model's probabilities read in place (a row of K values at a time: the probability
/// matrix is never copied) and checked or normalized, their weights and replicate weights
/// drawn, and each accepted row added to its slice of every spec. Returns the rows dropped.
/// `first_pos`: the position of row `lo` in the job's batches (a replayed job keeps it).
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
        first_pos,
        ..
    } = *piece;
    let mcs = spec.task.multiclass().expect("a multiclass job");
    let k = mcs.k();
    let drop = spec.nan_policy == NanPolicy::Drop;
    let slots = piece.shape.slots;
    let MulticlassScratch {
        codes,
        weights,
        scaled,
        p,
        kw,
    } = scratch.family::<MulticlassScratch>().1;
    let map = mc::ClassMap::new(&mcs.classes);
    mc::label_codes(&cols.label, lo, hi, &map, codes);
    let raw = cols
        .weight
        .as_ref()
        .map(|(w, _)| f64_view(w, lo, hi, weights));
    let scaled_w = raw.map(|r| cols.weight_scale.apply(r, scaled));
    let row_ids = cols.row_id.as_ref().map(|(a, _)| u64_values(a, lo, hi));
    let sources: Vec<mc::ProbSource> = cols
        .family
        .iter()
        .map(|a| mc::ProbSource::new(a, k))
        .collect();
    let names: Vec<&str> = (0..sources.len())
        .map(|m| match mcs.score_columns[m].first() {
            Some(c) if sources.len() == 1 => c.as_str(),
            _ => piece.score_names[m],
        })
        .collect();
    p.resize_with(sources.len(), Vec::new);
    for v in p.iter_mut() {
        v.resize(k, 0.0);
    }
    kw.resize(slots, 0.0);
    let per_model = ids.len() + 1;
    let (ks, edges) = (MulticlassSpec::top_ks(&spec.metrics), ece_edges(spec));
    let kernel = mc::Kernel {
        layout: mc::Layout::of(&piece.shape),
        ks: &ks,
        edges: &edges,
        slots,
    };
    let mut dropped = 0;
    'rows: for (j, code) in codes.iter().enumerate() {
        if slots > 0 && j % crate::runtime::POLL_REPLICATED_ROWS == 0 {
            crate::runtime::check()?;
        }
        let i = lo + j;
        let row = first_row + j as u64;
        let y = match *code {
            mc::NULL_LABEL if drop => {
                dropped += 1;
                continue;
            }
            mc::NULL_LABEL => return Err(invalid(&spec.label, mc::null_label_message(row))),
            mc::UNKNOWN_LABEL => {
                let text = mc::label_text(&cols.label, i);
                return Err(invalid(
                    &spec.label,
                    mc::unknown_label_message(&text, row, &mcs.classes),
                ));
            }
            c => c as usize,
        };
        for (m, src) in sources.iter().enumerate() {
            let res = src
                .read(i, &mut p[m])
                .and_then(|_| mc::normalize_row(&mut p[m], mcs.normalize));
            if let Err(e) = res {
                if drop && e.droppable() {
                    dropped += 1;
                    continue 'rows;
                }
                // (K score columns: the column of the class at fault.)
                let name = match (mcs.score_columns[m].get(e.class().unwrap_or(usize::MAX)), m) {
                    (Some(c), _) => c.as_str(),
                    _ => names[m],
                };
                return Err(invalid(name, e.message(row, k)));
            }
        }
        let w = match (&raw, &scaled_w) {
            (Some(r), Some(s)) => valid_weight(spec, cols, r, s, i, j, row)?,
            _ => 1.0,
        };
        let mut key = 0;
        if let Some(r) = piece.resampler {
            let rid = row_id(spec, cols, &row_ids, i, j, row)?;
            key = r.row_key(rid);
            r.fill(key, w, 0, &mut kw[..]);
        }
        if piece.keep_rows && piece.replay {
            // One entry per row: its position in the batches, read again at finalization (as
            // an f64, exact for any position an in-memory table can have).
            let pos = (first_pos + j as u64) as f64;
            for win in rank.iter_mut() {
                win.put(pos, false, w, key);
                let at = win.at;
                for (dst, src) in win.ids.iter_mut().zip(ids) {
                    dst[at] = src[i];
                }
                win.at += 1;
            }
        } else if piece.keep_rows {
            // One entry per class (in class order, never reordered: see `multiclass::aucs`).
            for (win, pm) in rank.iter_mut().zip(p.iter()) {
                for (c, v) in pm.iter().enumerate() {
                    win.put(*v, c == y, w, key);
                    let at = win.at;
                    for (dst, src) in win.ids.iter_mut().zip(ids) {
                        dst[at] = src[i];
                    }
                    win.at += 1;
                }
            }
        }
        for (m, pm) in p.iter().enumerate() {
            let input = mc::RowInput {
                t: mc::row_terms(pm, y, &edges),
                p: pm,
                w,
                kw,
            };
            let states = &mut state.specs[m * per_model..(m + 1) * per_model];
            kernel.add(&mut states[0], 0, &input);
            for (s, st) in states[1..].iter_mut().enumerate() {
                kernel.add(st, ids[s][i] as usize, &input);
            }
        }
    }
    Ok(dropped)
}
