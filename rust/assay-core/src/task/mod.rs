//! The task families and their registry: the seam between the engine and the families.
//!
//! Binary classification owns the engine's historical blocks (confusion counts, replicate rows,
//! histograms, calibration grids, kept rows). Every other family lives in its own folder here
//! (`regression/`, `multiclass/`, `ranking/`: its kernels in `mod.rs`, its side of the seam in
//! `family.rs`) and implements [`TaskFamily`]: it checks its options, says what the pass keeps
//! ([`FamilyPlan`]), reads its columns and accumulates the rows of a piece (or runs a pass of
//! its own), and finalizes a slice's values and intervals. Per slice it keeps one block of
//! `f64` fields (`state::SliceStates::fam`) and one per replicate slot (`fam_reps`), whose
//! lengths and merges are declared below. The engine's stages (plan, accumulate, merge,
//! finalize) call only this registry; partial states, the codec, merging across shards, the
//! bootstrap, comparisons and the report stay generic. Adding a family adds a folder here, a
//! [`Family`] variant with its metrics, a [`TaskOptions`] variant and the lines of [`of`] and
//! the block functions below. See docs/families.md.

pub mod multiclass;
pub mod ranking;
pub mod regression;

use arrow_array::RecordBatch;
use arrow_schema::{ArrowError, Schema, SchemaRef};

use crate::bootstrap::{Interval, Resampler};
use crate::error::{AssayError, Result};
use crate::metrics::{Family, Value};
use crate::piece::{Piece, PieceScratch};
use crate::spec::EvalSpec;
use crate::state::partial::PartialState;
use crate::state::{ChunkState, RankRows, RankWindow, SliceStates, StateShape, WeightScale};

/// A task family's options, beside the generic ones of [`EvalSpec`].
#[derive(Clone, Debug, Default, PartialEq)]
pub enum TaskOptions {
    /// No options: binary classification, or a regression with the defaults.
    #[default]
    None,
    Regression(regression::RegressionOptions),
    Multiclass(multiclass::MulticlassSpec),
    Ranking(ranking::RankingSpec),
}

impl TaskOptions {
    /// The family the options belong to (None: no options).
    pub fn family(&self) -> Option<Family> {
        match self {
            TaskOptions::None => None,
            TaskOptions::Regression(_) => Some(Family::Regression),
            TaskOptions::Multiclass(_) => Some(Family::Multiclass),
            TaskOptions::Ranking(_) => Some(Family::Ranking),
        }
    }

    pub fn regression(&self) -> Option<&regression::RegressionOptions> {
        match self {
            TaskOptions::Regression(o) => Some(o),
            _ => None,
        }
    }

    pub fn multiclass(&self) -> Option<&multiclass::MulticlassSpec> {
        match self {
            TaskOptions::Multiclass(o) => Some(o),
            _ => None,
        }
    }

    pub fn ranking(&self) -> Option<&ranking::RankingSpec> {
        match self {
            TaskOptions::Ranking(o) => Some(o),
            _ => None,
        }
    }
}

/// The family of a job, or None for binary classification (the engine's own blocks).
pub fn of(family: Family) -> Option<&'static dyn TaskFamily> {
    match family {
        Family::Binary => None,
        Family::Regression => Some(&regression::family::Regression),
        Family::Multiclass => Some(&multiclass::family::Multiclass),
        Family::Ranking => Some(&ranking::family::Ranking),
    }
}

/// Checks a job's family options: options of another family are refused with the message of
/// the family they belong to, and the job's family checks its own.
pub fn validate(spec: &EvalSpec) -> Result<()> {
    if let Some(f) = spec.task.family().filter(|f| *f != spec.family) {
        let fam = of(f).expect("a family with options");
        return Err(AssayError::InvalidArgument(fam.foreign_options(spec)));
    }
    match of(spec.family) {
        Some(fam) => fam.validate(spec),
        None => Ok(()),
    }
}

/// What a family's job keeps, in place of the binary blocks: the engine's plan takes these.
#[derive(Clone, Debug)]
pub struct FamilyPlan {
    pub shape: StateShape,
    /// Whether rows are kept (`kept_per_row` entries each), and whether an in-memory input is
    /// read again at finalization instead (see `engine::plan::Plan::replay`).
    pub keep_rows: bool,
    pub replay: bool,
    pub kept_per_row: usize,
    /// Run sketches of the kept rows (`auc="sketch"`): their budget (0: none), and the global
    /// row positions at which kept rows become runs.
    pub sketch_runs: usize,
    pub sketch_flush_rows: u64,
    /// Whether kept rows carry resampling keys, and whether they may be compacted into
    /// entries of equal (score, slice ids, label).
    pub keyed_rows: bool,
    pub compactable: bool,
    /// Whether the bootstrap resamples rows by position (false: by a key of the family's, such
    /// as ranking's query).
    pub row_bootstrap: bool,
}

/// The columns a family reads beside the label, weight and row id.
pub struct FamilyColumns {
    /// Whether the engine reads the score columns as numbers (false: the family reads them
    /// itself, from `extra`).
    pub numeric_scores: bool,
    /// Groups of column indices, handed to each piece as `RoleColumns::family`.
    pub extra: Vec<Vec<usize>>,
}

/// What a family's finalizer may read: the (merged) state and its kept rows.
pub struct FinalizeInput<'a> {
    pub state: &'a PartialState,
    /// The additive blocks, resized to every slice.
    pub total: &'a ChunkState,
    /// Per model, its kept rows (empty when the plan keeps none).
    pub ranks: Vec<&'a RankRows>,
    /// Slices per spec (the overall slice first).
    pub n_ids: &'a [usize],
    pub shape: StateShape,
    pub keep_rows: bool,
    pub sketch_runs: usize,
    pub resampler: Option<&'a Resampler>,
    pub pool: &'a rayon::ThreadPool,
}

/// One slice of one model, as the report asks for it.
pub struct FinalSlice<'a> {
    pub model: usize,
    /// The slice spec (0: overall) and the slice's id in it.
    pub spec_index: usize,
    pub id: usize,
    pub label: &'a str,
    pub states: &'a SliceStates,
    /// The shape of `states` (with the replicate slots of the job).
    pub shape: StateShape,
    /// Whether the slice is below `min_slice_size` (its values are reported as too small).
    pub small: bool,
}

/// A slice's values, intervals and guaranteed error bounds (one per metric, or empty).
pub struct SliceOut {
    pub values: Vec<Value>,
    pub intervals: Option<Vec<Interval>>,
    pub bounds: Vec<Option<f64>>,
}

/// A family's finalization of one job: built once (sorts and walks of the kept rows), then
/// asked for each reported slice in report order.
pub trait SliceFinalizer {
    /// The values of one slice; `kept` receives each metric's replicate values (comparisons
    /// and summaries across slices read them).
    fn slice(&mut self, s: &FinalSlice, kept: Option<&mut Vec<Vec<f64>>>) -> SliceOut;

    /// The family's own tables of the reference model, by name (weights in the user's units).
    fn tables(self: Box<Self>, _scale: &WeightScale) -> Result<Vec<(&'static str, RecordBatch)>> {
        Ok(Vec::new())
    }
}

/// The batches of a pass a family runs itself.
pub type Batches<'a> = dyn Iterator<Item = std::result::Result<RecordBatch, ArrowError>> + 'a;

/// A task family: what it keeps and how, from its options, for the engine's stages.
pub trait TaskFamily: Sync {
    /// The message for this family's options given to a job of another family.
    fn foreign_options(&self, spec: &EvalSpec) -> String;

    /// Checks the family's options, and what the family refuses (before the generic checks).
    fn validate(&self, spec: &EvalSpec) -> Result<()>;

    /// What the pass keeps. `replayable`: the input is in memory and the state is finalized in
    /// the same call.
    fn plan(&self, spec: &EvalSpec, replayable: bool) -> FamilyPlan;

    /// A pass of the family's own, for a family whose values need all of a group's rows at
    /// once (ranking's queries); None: the engine's chunked pass and [`Self::update_piece`].
    /// `check(n_ids, rows)` is the engine's check of the slices seen so far (their count and
    /// the memory of their states).
    #[allow(clippy::too_many_arguments)]
    fn own_pass(
        &self,
        _schema: SchemaRef,
        _batches: &mut Batches,
        _spec: &EvalSpec,
        _row_offset: u64,
        _stop: &dyn Fn() -> bool,
        _pool: &rayon::ThreadPool,
        _check: &dyn Fn(&[usize], u64) -> Result<()>,
    ) -> Option<Result<PartialState>> {
        None
    }

    /// Checks the label's and the scores' types, and names the family's own columns.
    fn columns(
        &self,
        spec: &EvalSpec,
        schema: &Schema,
        score_names: &[&str],
    ) -> Result<FamilyColumns>;

    /// Accumulates the rows of one piece into `state` (and the kept rows into `rank`, one
    /// window per model); returns the rows dropped.
    fn update_piece(
        &self,
        _piece: &Piece,
        _state: &mut ChunkState,
        _rank: &mut [RankWindow],
        _scratch: &mut PieceScratch,
    ) -> Result<u64> {
        unreachable!("a family with a pass of its own has no pieces")
    }

    /// The finalizer of a job of `spec` (which it may keep); it reads what it needs of `input`
    /// now (kept rows are released after this call).
    fn finalizer<'s>(
        &self,
        spec: &'s EvalSpec,
        input: &FinalizeInput,
    ) -> Result<Box<dyn SliceFinalizer + 's>>;

    /// Refuses a job whose `model_ids` slices (per model) would keep too many of the family's
    /// structures (checked as the slices are found).
    fn check_slices(
        &self,
        _shape: &StateShape,
        _sketch_runs: usize,
        _model_ids: usize,
    ) -> Result<()> {
        Ok(())
    }

    /// For a job whose slice states do not fit: what one slice keeps beyond its count (" x K
    /// classes") and a hint of what to change (appended to the message).
    fn size_hint(&self, _shape: &StateShape) -> (String, String) {
        (String::new(), String::new())
    }

    /// What the torch path cannot fill for this family (None: it can), and the family's
    /// entries of the device layout (`engine::blocks::device_layout`).
    fn on_device(&self, _spec: &EvalSpec) -> Option<String> {
        None
    }
    fn device_layout(&self, _spec: &EvalSpec) -> Vec<(&'static str, f64)> {
        Vec::new()
    }
}

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
