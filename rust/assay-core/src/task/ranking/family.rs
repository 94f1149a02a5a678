//! The ranking family's side of the seam (see `crate::task`): its options, its plan and its own
//! pass (a query's values need all of its rows), and its finalizer.

use arrow_schema::SchemaRef;

use crate::bootstrap::{CiMethod, Resampler};
use crate::error::{AssayError, Result};
use crate::metrics::Family;
use crate::spec::{EvalSpec, NanPolicy};
use crate::state::partial::PartialState;
use crate::state::StateShape;
use crate::task::{
    Batches, FamilyColumns, FamilyPlan, FinalSlice, FinalizeInput, SliceFinalizer, SliceOut,
    TaskFamily,
};

/// The ranking family.
pub struct Ranking;

impl TaskFamily for Ranking {
    fn foreign_options(&self, _spec: &EvalSpec) -> String {
        "query=, gain=, ties= and empty= apply to task=\"ranking\"".into()
    }

    fn validate(&self, spec: &EvalSpec) -> Result<()> {
        if spec.task.ranking().is_none() {
            return Err(AssayError::InvalidArgument(
                "task=\"ranking\" needs query= (the column of the query each row belongs to)"
                    .into(),
            ));
        }
        if spec.interval.as_ref().is_some_and(|iv| iv.row_id.is_some()) {
            return Err(AssayError::InvalidArgument(
                "task=\"ranking\" resamples queries (the query column is the bootstrap's \
                 unit): row_id= does not apply"
                    .into(),
            ));
        }
        if spec.reliability.is_some() {
            return Err(AssayError::InvalidArgument(
                "reliability tables are for binary scores, not task=\"ranking\"".into(),
            ));
        }
        if spec
            .interval
            .as_ref()
            .is_some_and(|iv| iv.method == CiMethod::Analytic)
        {
            return Err(AssayError::InvalidArgument(
                super::NO_ANALYTIC_RANKING.into(),
            ));
        }
        super::check_metrics(&spec.metrics)
    }

    fn plan(&self, spec: &EvalSpec, _replayable: bool) -> FamilyPlan {
        // Ranking keeps its rows in a pass of its own (`ranking::accumulate`) and leaves only
        // the family's blocks: per-query values summed per slice, and per slot.
        FamilyPlan {
            shape: StateShape {
                family: Family::Ranking,
                slots: spec.interval.as_ref().map_or(0, |iv| iv.slots()),
                ranking_metrics: spec.metrics.len(),
                ..StateShape::default()
            },
            keep_rows: false,
            replay: false,
            kept_per_row: 1,
            sketch_runs: 0,
            sketch_flush_rows: crate::piece::SKETCH_FLUSH_ROWS,
            keyed_rows: false,
            compactable: false,
            // (Queries are resampled by their key.)
            row_bootstrap: false,
        }
    }

    fn own_pass(
        &self,
        schema: SchemaRef,
        batches: &mut Batches,
        spec: &EvalSpec,
        row_offset: u64,
        stop: &dyn Fn() -> bool,
        pool: &rayon::ThreadPool,
        check: &dyn Fn(&[usize], u64) -> Result<()>,
    ) -> Option<Result<PartialState>> {
        let rk = spec
            .task
            .ranking()
            .expect("validated: a ranking job has its options");
        let plan = self.plan(spec, false);
        let mut scores: Vec<&str> = vec![&spec.score];
        if let Some(c) = &spec.compare {
            scores.extend(c.others.iter().map(|(_, col)| col.as_str()));
        }
        let models = scores.len();
        let pass = super::PassSpec {
            ranking: rk,
            label: &spec.label,
            scores,
            weight: spec.weight.as_deref(),
            slices: &spec.slices,
            metrics: &spec.metrics,
            drop: spec.nan_policy == NanPolicy::Drop,
            rows_hint: spec.rows_hint,
            resampler: spec
                .interval
                .as_ref()
                .filter(|iv| iv.slots() > 0)
                .map(|iv| Resampler::new(iv.seed, iv.replicates)),
            shape: plan.shape,
        };
        let out = match super::accumulate(schema, batches, &pass, row_offset, stop, pool, check) {
            Ok(out) => out,
            Err(e) => return Some(Err(e)),
        };
        Some(Ok(PartialState {
            spec_json: String::new(),
            slicer: out.slicer,
            models,
            shape: plan.shape,
            total: out.total,
            rank: Vec::new(),
            sketches: Vec::new(),
            sketch_runs: 0,
            prob_hists: Vec::new(),
            weight_scale: None,
            rows: out.rows,
            dropped: out.dropped,
            position_keys: false,
            ranges: if out.rows > 0 {
                vec![(row_offset, row_offset + out.rows)]
            } else {
                Vec::new()
            },
            replay: None,
            queries: out.queries,
            content_hash: None,
        }))
    }

    fn columns(
        &self,
        _spec: &EvalSpec,
        _schema: &arrow_schema::Schema,
        _score_names: &[&str],
    ) -> Result<FamilyColumns> {
        unreachable!("a ranking job has its own pass")
    }

    fn finalizer<'s>(
        &self,
        spec: &'s EvalSpec,
        _input: &FinalizeInput,
    ) -> Result<Box<dyn SliceFinalizer + 's>> {
        Ok(Box::new(Finalizer { spec }))
    }

    fn on_device(&self, _spec: &EvalSpec) -> Option<String> {
        Some("task=\"ranking\"".into())
    }
}

/// The ranking finalization: each slice's values from its queries' sums (and per slot).
struct Finalizer<'s> {
    spec: &'s EvalSpec,
}

impl SliceFinalizer for Finalizer<'_> {
    fn slice(&mut self, s: &FinalSlice, kept: Option<&mut Vec<Vec<f64>>>) -> SliceOut {
        let spec = self.spec;
        let layout = super::Layout::of(&s.shape);
        let (blen, rlen) = (layout.block_len(), layout.fields() * s.shape.slots);
        let idu = s.id;
        let (values, intervals) = super::slice_results(
            &s.states.fam[idu * blen..(idu + 1) * blen],
            &s.states.fam_reps[idu * rlen..(idu + 1) * rlen],
            &layout,
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
