//! The seam between the engine and its task families.
//!
//! Binary classification owns the engine's historical blocks (confusion counts, replicate rows,
//! histograms, calibration grids, kept rows). Every other family keeps, per slice, one block of
//! `f64` fields (`state::SliceStates::fam`) and one per replicate slot (`fam_reps`), and
//! declares here how long they are and how two of them merge. The pass hands a family the
//! accepted rows of a piece (`engine::accumulate`), and the finalization asks it for a slice's
//! values and intervals (`engine::finalize`); partial states, the codec, merging across shards,
//! the bootstrap, comparisons and the report stay generic. See docs/families.md.

use crate::metrics::Family;
use crate::multiclass;
use crate::ranking;
use crate::regression;
use crate::state::StateShape;

/// Fields of one slice's block in a job of `shape` (0 for binary).
pub fn block_len(shape: &StateShape) -> usize {
    match shape.family {
        Family::Binary => 0,
        Family::Regression => regression::Layout::of(shape).block_len(),
        Family::Multiclass => multiclass::Layout::of(shape).block_len(),
        Family::Ranking => ranking::Layout::of(shape).block_len(),
    }
}

/// Fields of one replicate slot of a slice (0 for binary).
pub fn rep_fields(shape: &StateShape) -> usize {
    match shape.family {
        Family::Binary => 0,
        Family::Regression => regression::Layout::of(shape).fields(),
        Family::Multiclass => multiclass::Layout::of(shape).fields(),
        Family::Ranking => ranking::Layout::of(shape).fields(),
    }
}

/// Fields of one slice's replicate block (all its slots) in a job of `shape` (0 for binary).
pub fn rep_block_len(shape: &StateShape) -> usize {
    rep_fields(shape) * shape.slots
}

/// Merges slice block `b` into `a` (`b`'s rows after `a`'s in the canonical order).
pub fn merge_block(shape: &StateShape, a: &mut [f64], b: &[f64]) {
    match shape.family {
        Family::Binary => {}
        Family::Regression => regression::merge_block(a, b, &regression::Layout::of(shape)),
        Family::Multiclass => multiclass::merge_block(a, b),
        Family::Ranking => ranking::merge_block(a, b),
    }
}

/// Merges one slice's replicate block `b` (all `slots`) into `a`.
pub fn merge_rep_block(shape: &StateShape, a: &mut [f64], b: &[f64], slots: usize) {
    match shape.family {
        Family::Binary => {}
        Family::Regression => {
            regression::merge_rep_block(a, b, slots, &regression::Layout::of(shape))
        }
        // (Sums: slot-major or not, they add field by field.)
        Family::Multiclass => multiclass::merge_block(a, b),
        Family::Ranking => ranking::merge_block(a, b),
    }
}

/// Each replicate slot's `fields` fields of one slice's replicate block (slot-major,
/// `[field * slots + slot]`), gathered slot by slot: what a family's finalizer reads each
/// slot's metrics from.
pub fn slot_fields(reps: &[f64], fields: usize, slots: usize) -> Vec<Vec<f64>> {
    (0..slots)
        .map(|s| (0..fields).map(|q| reps[q * slots + s]).collect())
        .collect()
}
