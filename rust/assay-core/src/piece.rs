//! One piece of a batch as the pass hands it to a row kernel (the binary one in
//! `engine::accumulate`, or a task family's): the role columns, their f64 views, the checks of
//! a row's weight and the id it resamples by. Below both the engine and the families.

use std::sync::Arc;

use arrow_array::ArrayRef;
use arrow_buffer::NullBuffer;

use crate::bootstrap::Resampler;
use crate::error::{invalid, Result};
use crate::input::{f64_view, validity};
use crate::spec::EvalSpec;
use crate::state::{StateShape, WeightScale};

/// Rows per logical chunk: the unit of parallel work and of deterministic merging (a piece is
/// at most one chunk).
pub const CHUNK_ROWS: u64 = 1 << 16;

/// Sketch mode turns its kept rows into runs at every multiple of this many global row
/// positions (a multiple of [`CHUNK_ROWS`]): at most this many rows (plus one batch) are kept
/// (a multiclass job, K entries a row, flushes about K times as often: `Plan::sketch_flush_rows`).
pub const SKETCH_FLUSH_ROWS: u64 = 1 << 22;

/// Rows `lo..hi` of one batch, and what the job's plan says about them.
pub struct Piece<'a> {
    pub spec: &'a EvalSpec,
    /// The shape of the states the piece updates.
    pub shape: StateShape,
    /// Whether rows are kept (`RankWindow`s, one per model), and whether a replayed job keeps
    /// each row's position instead of its values (see `engine::plan::Plan::replay`).
    pub keep_rows: bool,
    pub replay: bool,
    pub resampler: Option<&'a Resampler>,
    /// The score column of each model (the reference first).
    pub score_names: &'a [&'a str],
    pub cols: &'a RoleColumns,
    /// Per slice spec, the slice id of every row of the batch.
    pub ids: &'a [Arc<Vec<u32>>],
    pub lo: usize,
    pub hi: usize,
    /// The global position of row `lo` (replicate weights, messages).
    pub first_row: u64,
    /// The position of row `lo` in the job's batches (what a replayed job keeps).
    pub first_pos: u64,
}

/// A piece's reusable buffers: the f64 views of its role columns, and the task family's own
/// (created by the family on first use; see [`PieceScratch::family`]).
#[derive(Default)]
pub struct PieceScratch {
    pub views: Views,
    pub family: Option<Box<dyn std::any::Any + Send>>,
}

impl PieceScratch {
    /// The family's buffers of type `T` (created empty on first use).
    pub fn family<T: Default + Send + 'static>(&mut self) -> (&mut Views, &mut T) {
        if !self.family.as_ref().is_some_and(|b| b.is::<T>()) {
            self.family = Some(Box::<T>::default());
        }
        let fam = self
            .family
            .as_mut()
            .and_then(|b| b.downcast_mut::<T>())
            .expect("just created");
        (&mut self.views, fam)
    }
}

/// The role columns of one batch.
pub struct RoleColumns {
    pub label: ArrayRef,
    pub label_nulls: Option<NullBuffer>,
    /// One score column per model (the reference first); empty when the family reads its
    /// scores itself.
    pub scores: Vec<(ArrayRef, Option<NullBuffer>)>,
    pub weight: Option<(ArrayRef, Option<NullBuffer>)>,
    pub row_id: Option<(ArrayRef, Option<NullBuffer>)>,
    /// The task family's own columns, in the groups it asked for
    /// (`crate::task::FamilyColumns::extra`): regression's prediction interval bounds, the
    /// multiclass probabilities of each model.
    pub family: Vec<Vec<ArrayRef>>,
    /// The job's [`WeightScale`] (fixed from the first batch with a valid weight).
    pub weight_scale: WeightScale,
}

/// The [`WeightScale`] of a job from the weights of its first batch: `None` when the batch has
/// no valid weight (the factor then comes from a later batch).
pub fn first_weight_scale(weights: &ArrayRef) -> Option<WeightScale> {
    let mut buf = Vec::new();
    let values = f64_view(weights, 0, weights.len(), &mut buf);
    let nulls = validity(weights);
    let max = values
        .iter()
        .enumerate()
        .filter(|(i, w)| nulls.as_ref().is_none_or(|n| n.is_valid(*i)) && w.is_finite())
        .fold(0.0f64, |m, (_, w)| m.max(*w));
    (max > 0.0).then(|| WeightScale::from_max(max))
}

/// The weight of row `j` of a piece (batch row `i`, global row `row`) as accumulated, after the
/// checks of the raw weight: positive and finite, and representable at the job's scale.
#[inline]
pub fn valid_weight(
    spec: &EvalSpec,
    cols: &RoleColumns,
    raw: &[f64],
    w: &[f64],
    i: usize,
    j: usize,
    row: u64,
) -> Result<f64> {
    let (_, wnulls) = cols.weight.as_ref().expect("a weight column");
    let v = raw[j];
    let name = spec.weight.as_deref().unwrap_or("weight");
    let null = wnulls.as_ref().is_some_and(|n| n.is_null(i));
    if null || !(v > 0.0 && v.is_finite()) {
        let shown = if null {
            "null".to_string()
        } else {
            format!("{v:?}")
        };
        return Err(invalid(
            name,
            format!("weights must be positive and finite; found {shown} at row {row}"),
        ));
    }
    // Scaled: a weight that overflowed, or underflowed to a subnormal or to 0, lost its value
    // (unscaled, `w` is `v`, checked above).
    if cols.weight_scale.exp != 0 && !w[j].is_normal() {
        return Err(invalid(name, cols.weight_scale.out_of_range(v, row)));
    }
    Ok(w[j])
}

/// Buffers behind a piece's role columns as f64 (a view of the batch where it already is).
#[derive(Default)]
pub struct Views {
    pub labels: Vec<f64>,
    weights: Vec<f64>,
    /// The weights times the job's [`WeightScale`] (when it is not 1).
    scaled_weights: Vec<f64>,
    scores: Vec<Vec<f64>>,
}

/// A piece's labels, scores (one per model), weights as given (their checks and messages read
/// these) and weights as accumulated.
pub type PieceViews<'a> = (
    &'a [f64],
    Vec<&'a [f64]>,
    Option<&'a [f64]>,
    Option<&'a [f64]>,
);

impl Views {
    pub fn of<'a>(&'a mut self, cols: &'a RoleColumns, lo: usize, hi: usize) -> PieceViews<'a> {
        let Views {
            labels,
            weights,
            scaled_weights,
            scores,
        } = self;
        scores.resize_with(cols.scores.len(), Vec::new);
        let label_view = f64_view(&cols.label, lo, hi, labels);
        let score_views = cols
            .scores
            .iter()
            .zip(scores.iter_mut())
            .map(|((a, _), buf)| f64_view(a, lo, hi, buf))
            .collect();
        let raw = cols
            .weight
            .as_ref()
            .map(|(w, _)| f64_view(w, lo, hi, weights));
        let scaled = raw.map(|raw| cols.weight_scale.apply(raw, scaled_weights));
        (label_view, score_views, raw, scaled)
    }
}

/// The id row `j` of a piece (batch row `i`, global row `row`) resamples by: its `row_id`
/// value, or its global position without a row id column.
pub fn row_id(
    spec: &EvalSpec,
    cols: &RoleColumns,
    row_ids: &Option<Vec<u64>>,
    i: usize,
    j: usize,
    row: u64,
) -> Result<u64> {
    match (row_ids, &cols.row_id) {
        (Some(v), Some((_, nulls))) => {
            if nulls.as_ref().is_some_and(|n| n.is_null(i)) {
                let name = spec.interval.as_ref().and_then(|iv| iv.row_id.as_deref());
                return Err(invalid(
                    name.unwrap_or("row_id"),
                    format!("row ids must not be null; found null at row {row}"),
                ));
            }
            Ok(v[j])
        }
        _ => Ok(row),
    }
}
