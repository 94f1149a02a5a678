//! Shapes finalized slice results into Arrow record batches: the wide table (one row per
//! slice) and the notes that say why a value is null.

use std::sync::Arc;

use arrow_array::builder::{Float64Builder, StringBuilder, UInt64Builder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema};

use crate::bootstrap::Interval;
use crate::error::{AssayError, Result};
use crate::metrics::Metric;
use crate::metrics::Value;
use crate::slicing::SliceDescription;
use crate::state::BinaryCounts;

/// One finalized slice (`slice = None` is the overall row).
pub struct ReportRow {
    pub slice: Option<SliceDescription>,
    pub counts: BinaryCounts,
    pub values: Vec<Value>,
    /// One interval per metric when the job asked for intervals.
    pub intervals: Option<Vec<Interval>>,
    /// Per metric, a guaranteed bound on the error of an approximate value (`auc="sketch"`);
    /// empty when every value is exact.
    pub bounds: Vec<Option<f64>>,
}

/// The note of a value computed within `bound` of the exact one.
fn bound_note(bound: f64) -> String {
    format!(
        "approximate (auc=\"sketch\"): within {bound:.3e} of the exact value (guaranteed bound)"
    )
}

/// The wide table and the (slice, metric, note) rows for null values.
pub struct Report {
    pub table: RecordBatch,
    pub notes: RecordBatch,
    /// One row per row of `table`: `spec`, the index of the row's slice spec (0 for
    /// overall, then the job's specs from 1); with bootstrap replicates, every metric's
    /// replicate values (one `FixedSizeList<Float64, B>` column per metric, null where the
    /// metric has none, NaN in a replicate where it is undefined) unless the job's would
    /// exceed [`REPORT_REPLICATES_MAX`]. Set by the finalization.
    pub rows: Option<RecordBatch>,
}

/// The most replicate values (reported slices x metrics x replicates x models) the reports
/// of one job keep: 256 MiB.
pub const REPORT_REPLICATES_MAX: usize = 1 << 25;

/// [`Report::rows`]: the spec of each row, and (`rows[r][metric]`) the bootstrap replicates
/// of each cell (any length but `replicates`, e.g. none, is null).
pub fn row_batch(
    specs: &[u32],
    metrics: &[Metric],
    rows: Option<&[Vec<Vec<f64>>]>,
    replicates: usize,
) -> Result<RecordBatch> {
    let width = i32::try_from(replicates)
        .map_err(|_| AssayError::InvalidArgument("too many bootstrap replicates".into()))?;
    let mut fields = vec![Field::new("spec", DataType::UInt32, false)];
    let mut cols: Vec<ArrayRef> = vec![Arc::new(arrow_array::UInt32Array::from(specs.to_vec()))];
    let Some(rows) = rows else {
        return Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), cols)?);
    };
    for (j, m) in metrics.iter().enumerate() {
        let mut b = arrow_array::builder::FixedSizeListBuilder::with_capacity(
            Float64Builder::with_capacity(rows.len() * replicates),
            width,
            rows.len(),
        );
        for r in rows {
            match r.get(j) {
                Some(v) if v.len() == replicates => {
                    b.values().append_slice(v);
                    b.append(true);
                }
                _ => {
                    b.values().append_nulls(replicates);
                    b.append(false);
                }
            }
        }
        let col = b.finish();
        fields.push(Field::new(
            m.name(),
            arrow_array::Array::data_type(&col).clone(),
            true,
        ));
        cols.push(Arc::new(col));
    }
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), cols)?)
}

const RESERVED: [&str; 3] = ["slice", "n", "weight_sum"];

pub const WEIGHT_SUM_NOT_REPRESENTABLE: &str =
    "not representable: the sum of the weights lies outside the float64 range";
pub const INTERVAL_NOT_REPRESENTABLE: &str =
    "no interval: its bounds are not representable in float64";

/// The last line of defence of invariant "a metric column never holds NaN or inf": a
/// non-finite value becomes undefined with a note.
fn finite_value(v: Value) -> Value {
    v.and_then(crate::metrics::finite)
}

/// An interval whose bound or standard error is not finite becomes undefined with a note.
fn finite_interval(iv: Interval) -> Interval {
    match iv {
        Ok((l, h, e)) if !(l.is_finite() && h.is_finite() && e.is_finite()) => {
            Err(INTERVAL_NOT_REPRESENTABLE)
        }
        other => other,
    }
}

/// What a report's columns are: its metrics, whether they have intervals, and whether the rows
/// are weighted (a `weight_sum` column).
pub struct ReportSchema<'a> {
    pub metrics: &'a [Metric],
    pub intervals: bool,
    pub weighted: bool,
}

pub fn build_report(
    feature_columns: &[String],
    spec: &ReportSchema,
    rows: Vec<ReportRow>,
) -> Result<Report> {
    let metric_names: Vec<String> = spec.metrics.iter().map(|m| m.name()).collect();
    let interval_names: Vec<String> = if spec.intervals {
        metric_names
            .iter()
            .flat_map(|m| ["lo", "hi", "se"].map(|x| format!("{m}_{x}")))
            .collect()
    } else {
        Vec::new()
    };
    for c in feature_columns {
        if RESERVED.contains(&c.as_str()) || metric_names.contains(c) || interval_names.contains(c)
        {
            return Err(AssayError::InvalidArgument(format!(
                "slice column {c:?} has the name of a report column; rename it before evaluating"
            )));
        }
    }
    for (i, m) in metric_names.iter().enumerate() {
        if metric_names[..i].contains(m) {
            return Err(AssayError::InvalidArgument(format!(
                "metric {m:?} is requested twice"
            )));
        }
    }

    let mut fields = vec![Field::new("slice", DataType::Utf8, false)];
    let mut cols: Vec<ArrayRef> = Vec::new();
    let labels: Vec<String> = rows
        .iter()
        .map(|r| {
            r.slice
                .as_ref()
                .map_or_else(|| "overall".to_string(), |d| d.label.clone())
        })
        .collect();
    cols.push(Arc::new(arrow_array::StringArray::from(labels.clone())));

    for c in feature_columns {
        let mut b = StringBuilder::new();
        for r in &rows {
            let v = r
                .slice
                .as_ref()
                .and_then(|d| d.values.iter().find(|(col, _)| col == c))
                .and_then(|(_, v)| v.as_deref());
            b.append_option(v);
        }
        fields.push(Field::new(c, DataType::Utf8, true));
        cols.push(Arc::new(b.finish()));
    }

    let mut n = UInt64Builder::new();
    rows.iter().for_each(|r| n.append_value(r.counts.n));
    fields.push(Field::new("n", DataType::UInt64, false));
    cols.push(Arc::new(n.finish()));
    let (mut note_slice, mut note_metric, mut note_text, mut note_bound) = (
        StringBuilder::new(),
        StringBuilder::new(),
        StringBuilder::new(),
        Float64Builder::new(),
    );
    if spec.weighted {
        // `counts.w` is the true (unscaled) sum: infinite when it exceeds the float64 range,
        // 0 when it is below it.
        let mut w = Float64Builder::new();
        for (r, label) in rows.iter().zip(&labels) {
            let v = r.counts.w;
            if v.is_finite() && (v > 0.0 || r.counts.n == 0) {
                w.append_value(v);
            } else {
                w.append_null();
                note_slice.append_value(label);
                note_metric.append_value("weight_sum");
                note_text.append_value(WEIGHT_SUM_NOT_REPRESENTABLE);
                note_bound.append_null();
            }
        }
        fields.push(Field::new("weight_sum", DataType::Float64, true));
        cols.push(Arc::new(w.finish()));
    }
    for (k, name) in metric_names.iter().enumerate() {
        let mut b = Float64Builder::new();
        for (r, label) in rows.iter().zip(&labels) {
            match finite_value(r.values[k]) {
                Ok(v) => b.append_value(v),
                Err(why) => {
                    b.append_null();
                    note_slice.append_value(label);
                    note_metric.append_value(name);
                    note_text.append_value(why);
                    note_bound.append_null();
                }
            }
        }
        let bound_of = |r: &ReportRow| r.bounds.get(k).copied().flatten();
        fields.push(Field::new(name, DataType::Float64, true));
        cols.push(Arc::new(b.finish()));
        if !spec.intervals {
            for (r, label) in rows.iter().zip(&labels) {
                if let (Ok(_), Some(bound)) = (finite_value(r.values[k]), bound_of(r)) {
                    note_slice.append_value(label);
                    note_metric.append_value(name);
                    note_text.append_value(bound_note(bound));
                    note_bound.append_value(bound);
                }
            }
            continue;
        }
        let (mut lo, mut hi, mut se) = (
            Float64Builder::new(),
            Float64Builder::new(),
            Float64Builder::new(),
        );
        for (r, label) in rows.iter().zip(&labels) {
            let iv = r.intervals.as_ref().map(|v| finite_interval(v[k]));
            match (finite_value(r.values[k]), iv) {
                (Ok(_), Some(Ok((l, h, e)))) => {
                    lo.append_value(l);
                    hi.append_value(h);
                    se.append_value(e);
                    if let Some(bound) = bound_of(r) {
                        note_slice.append_value(label);
                        note_metric.append_value(name);
                        note_text.append_value(bound_note(bound));
                        note_bound.append_value(bound);
                    }
                }
                (value, iv) => {
                    lo.append_null();
                    hi.append_null();
                    se.append_null();
                    if let (Ok(_), Some(Err(why))) = (value, iv) {
                        note_slice.append_value(label);
                        note_metric.append_value(name);
                        match bound_of(r) {
                            Some(bound) => {
                                note_text.append_value(format!("{}; {why}", bound_note(bound)));
                                note_bound.append_value(bound);
                            }
                            None => {
                                note_text.append_value(why);
                                note_bound.append_null();
                            }
                        }
                    }
                }
            }
        }
        for (suffix, b) in [("lo", lo), ("hi", hi), ("se", se)] {
            let mut b = b;
            fields.push(Field::new(
                format!("{name}_{suffix}"),
                DataType::Float64,
                true,
            ));
            cols.push(Arc::new(b.finish()));
        }
    }
    let table = RecordBatch::try_new(Arc::new(Schema::new(fields)), cols)?;
    let notes = RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("slice", DataType::Utf8, false),
            Field::new("metric", DataType::Utf8, false),
            Field::new("note", DataType::Utf8, false),
            Field::new("error_bound", DataType::Float64, true),
        ])),
        vec![
            Arc::new(note_slice.finish()),
            Arc::new(note_metric.finish()),
            Arc::new(note_text.finish()),
            Arc::new(note_bound.finish()),
        ],
    )?;
    Ok(Report {
        table,
        notes,
        rows: None,
    })
}

/// The paired differences of a comparison job, one row per (slice, metric, compared model).
#[derive(Default)]
pub struct ComparisonRows {
    slice: Vec<String>,
    metric: Vec<String>,
    /// Value of each model (reference first), per row.
    values: Vec<Vec<Value>>,
    model: Vec<String>,
    delta: Vec<crate::intervals::Delta>,
    direction: Vec<Option<bool>>,
    /// The bootstrap replicate differences of each row (None where the delta is undefined):
    /// what corrections across many rows (simultaneous bands, Holm, BH) are computed from.
    reps: Vec<Option<Vec<f64>>>,
    /// The number of bootstrap replicates.
    replicates: usize,
}

impl ComparisonRows {
    pub fn push(
        &mut self,
        slice: &str,
        metric: crate::metrics::Metric,
        values: Vec<Value>,
        model: &str,
        delta: crate::intervals::Delta,
        reps: &[f64],
    ) {
        if delta.is_ok() {
            self.replicates = self.replicates.max(reps.len());
        }
        self.reps.push(delta.is_ok().then(|| reps.to_vec()));
        self.slice.push(slice.to_string());
        self.metric.push(metric.name());
        self.values.push(values);
        self.model.push(model.to_string());
        self.delta.push(delta);
        self.direction.push(metric.higher_is_better());
    }

    /// The comparison table: `slice`, `metric`, one value column per model, `model` (the one
    /// compared with the reference), `delta`, `delta_lo`, `delta_hi`, `delta_se`, `p_value`,
    /// `verdict`, `note`, and `_delta_replicates` (the bootstrap replicate differences of each
    /// row, a fixed-size list; null where the delta is; the facade takes it out of the table).
    pub fn finish(
        self,
        models: &[&str],
        _metrics: &[crate::metrics::Metric],
    ) -> Result<RecordBatch> {
        const FIXED: [&str; 16] = [
            "slice",
            "metric",
            "model",
            "delta",
            "delta_lo",
            "delta_hi",
            "delta_se",
            "p_value",
            "verdict",
            "note",
            "reference",
            "p_adjusted",
            "simultaneous_lo",
            "simultaneous_hi",
            "verdict_adjusted",
            "_delta_replicates",
        ];
        let names: Vec<String> = models.iter().map(|m| m.to_string()).collect();
        for n in &names {
            if FIXED.contains(&n.as_str()) {
                return Err(AssayError::InvalidArgument(format!(
                    "model name {n:?} is also a column of the comparison table; rename it"
                )));
            }
        }
        let mut fields = vec![
            Field::new("slice", DataType::Utf8, false),
            Field::new("metric", DataType::Utf8, false),
        ];
        let mut cols: Vec<ArrayRef> = vec![
            Arc::new(arrow_array::StringArray::from(self.slice.clone())),
            Arc::new(arrow_array::StringArray::from(self.metric.clone())),
        ];
        for (m, n) in names.iter().enumerate() {
            let mut b = Float64Builder::new();
            for v in &self.values {
                b.append_option(finite_value(v[m]).ok());
            }
            fields.push(Field::new(n, DataType::Float64, true));
            cols.push(Arc::new(b.finish()));
        }
        fields.push(Field::new("model", DataType::Utf8, false));
        cols.push(Arc::new(arrow_array::StringArray::from(self.model.clone())));
        let mut nums: Vec<Float64Builder> = (0..5).map(|_| Float64Builder::new()).collect();
        let (mut verdict, mut note) = (StringBuilder::new(), StringBuilder::new());
        let mut defined = Vec::with_capacity(self.delta.len());
        for (d, dir) in self.delta.iter().zip(&self.direction) {
            let d = &match d {
                Ok(x) if ![x.0, x.1, x.2, x.3, x.4].iter().all(|v| v.is_finite()) => {
                    Err(crate::metrics::NOT_REPRESENTABLE)
                }
                other => *other,
            };
            defined.push(d.is_ok());
            match d {
                Ok((delta, lo, hi, se, p)) => {
                    for (b, v) in nums.iter_mut().zip([delta, lo, hi, se, p]) {
                        b.append_value(*v);
                    }
                    let (up, down) = match dir {
                        Some(true) => ("better", "worse"),
                        Some(false) => ("worse", "better"),
                        None => ("higher", "lower"),
                    };
                    verdict.append_value(if *lo > 0.0 {
                        up
                    } else if *hi < 0.0 {
                        down
                    } else {
                        "no significant difference"
                    });
                    note.append_null();
                }
                Err(why) => {
                    nums.iter_mut().for_each(|b| b.append_null());
                    verdict.append_null();
                    note.append_value(why);
                }
            }
        }
        for (name, mut b) in ["delta", "delta_lo", "delta_hi", "delta_se", "p_value"]
            .into_iter()
            .zip(nums)
        {
            fields.push(Field::new(name, DataType::Float64, true));
            cols.push(Arc::new(b.finish()));
        }
        fields.push(Field::new("verdict", DataType::Utf8, true));
        cols.push(Arc::new(verdict.finish()));
        fields.push(Field::new("note", DataType::Utf8, true));
        cols.push(Arc::new(note.finish()));
        let width = i32::try_from(self.replicates)
            .map_err(|_| AssayError::InvalidArgument("too many bootstrap replicates".into()))?;
        let mut reps = arrow_array::builder::FixedSizeListBuilder::with_capacity(
            Float64Builder::with_capacity(self.reps.len() * self.replicates),
            width,
            self.reps.len(),
        );
        for (r, ok) in self.reps.iter().zip(&defined) {
            match r {
                Some(v) if *ok && v.len() == self.replicates => {
                    reps.values().append_slice(v);
                    reps.append(true);
                }
                _ => {
                    reps.values().append_nulls(self.replicates);
                    reps.append(false);
                }
            }
        }
        let reps = reps.finish();
        fields.push(Field::new(
            "_delta_replicates",
            arrow_array::Array::data_type(&reps).clone(),
            true,
        ));
        cols.push(Arc::new(reps));
        Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), cols)?)
    }
}
