//! Hardening of the engine against hostile inputs and arguments: batches that disagree with
//! their schema, duplicate column names, sizes a user controls, interrupts inside long stages.

use std::sync::Arc;

use arrow_array::{ArrayRef, Float32Array, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef};
use assay_core::discovery::{discover_slices, DiscoverySpec, ErrorKind, Method};
use assay_core::engine::{evaluate, AucMode, EvalSpec, Evaluation, NanPolicy};
use assay_core::input::{c_data_buffers, check_batch, column_index};
use assay_core::runtime::{max_threads, Interrupt};
use assay_core::{bin_edges, AssayError, BinStrategy, CiMethod, Feature, IntervalSpec, Metric};

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("y", DataType::Int64, false),
        Field::new("p", DataType::Float64, false),
        Field::new("c", DataType::Utf8, true),
    ]))
}

fn batch(n: usize) -> RecordBatch {
    let y: Vec<i64> = (0..n).map(|i| ((i * 7919) % 3 == 0) as i64).collect();
    let p: Vec<f64> = (0..n)
        .map(|i| ((i * 104729) % 1000) as f64 / 1000.0)
        .collect();
    let c: Vec<&str> = (0..n).map(|i| ["a", "b", "c"][i % 3]).collect();
    let cols: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(y)),
        Arc::new(Float64Array::from(p)),
        Arc::new(StringArray::from(c)),
    ];
    RecordBatch::try_new(schema(), cols).unwrap()
}

fn spec() -> EvalSpec {
    EvalSpec {
        family: assay_core::metrics::Family::Binary,
        label: "y".into(),
        score: "p".into(),
        weight: None,
        task: assay_core::spec::TaskOptions::None,
        threshold: 0.5,
        slices: vec![vec![Feature::Column("c".into())]],
        metrics: vec![Metric::RocAuc, Metric::AveragePrecision, Metric::Accuracy],
        min_slice_size: 0,
        interval: None,
        compare: None,
        calibration: Default::default(),
        slice_only: Vec::new(),
        rows_hint: None,
        reliability: None,
        max_slices: None,
        fingerprint: None,
        nan_policy: NanPolicy::Raise,
        auc: AucMode::Exact,
        n_threads: Some(2),
    }
}

fn run(
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
    spec: &EvalSpec,
) -> Result<Evaluation, AssayError> {
    evaluate(
        schema,
        batches.into_iter().map(Ok::<_, ArrowError>),
        spec,
        &|| false,
    )
}

#[test]
fn duplicate_column_names_are_a_schema_error() {
    let s = Schema::new(vec![
        Field::new("y", DataType::Int64, false),
        Field::new("p", DataType::Float64, false),
        Field::new("p", DataType::Float64, false),
    ]);
    let e = column_index(&s, "p").err().unwrap();
    assert!(matches!(e, AssayError::Schema { .. }), "{e:?}");
    assert!(e.to_string().contains("appears 2 times"), "{e}");
    assert_eq!(column_index(&s, "y"), Ok(0));
    let e = column_index(&s, "q").err().unwrap();
    assert!(matches!(e, AssayError::ColumnNotFound { .. }));
    let empty = Schema::empty();
    assert!(column_index(&empty, "q")
        .unwrap_err()
        .to_string()
        .contains("no columns"));
}

#[test]
fn batches_that_disagree_with_the_schema_are_refused() {
    let good = batch(10);
    assert!(check_batch(&schema(), &good, 0).is_ok());
    // float32 data where float64 is declared: the same layout would be read as garbage.
    let s32 = Arc::new(Schema::new(vec![
        Field::new("y", DataType::Int64, false),
        Field::new("p", DataType::Float32, false),
        Field::new("c", DataType::Utf8, true),
    ]));
    let cols: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(vec![0, 1])),
        Arc::new(Float32Array::from(vec![0.1, 0.9])),
        Arc::new(StringArray::from(vec!["a", "b"])),
    ];
    let bad = RecordBatch::try_new(s32, cols).unwrap();
    let e = check_batch(&schema(), &bad, 3).err().unwrap();
    assert!(
        matches!(e, AssayError::Schema { ref column, .. } if column == "p"),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(
        msg.contains("batch 3") && msg.contains("Float32") && msg.contains("Float64"),
        "{msg}"
    );
    // Through the engine: the first good batch, then the bad one.
    let e = run(schema(), vec![good.clone(), bad], &spec())
        .err()
        .unwrap();
    assert!(e.to_string().contains("batch 1"), "{e}");
    // An extra column, a renamed column.
    let extra = Arc::new(Schema::new(vec![
        Field::new("y", DataType::Int64, false),
        Field::new("p", DataType::Float64, false),
        Field::new("c", DataType::Utf8, true),
        Field::new("z", DataType::Int64, false),
    ]));
    let mut cols = good.columns().to_vec();
    cols.push(Arc::new(Int64Array::from(vec![0; 10])));
    let e = check_batch(&schema(), &RecordBatch::try_new(extra, cols).unwrap(), 0)
        .err()
        .unwrap();
    assert!(e.to_string().contains("4 columns"), "{e}");
    let renamed = Arc::new(Schema::new(vec![
        Field::new("y", DataType::Int64, false),
        Field::new("q", DataType::Float64, false),
        Field::new("c", DataType::Utf8, true),
    ]));
    let b = RecordBatch::try_new(renamed, good.columns().to_vec()).unwrap();
    assert!(check_batch(&schema(), &b, 0).is_err());
}

#[test]
fn c_data_buffer_counts_follow_the_specification() {
    assert_eq!(c_data_buffers(&DataType::Int64), Some((2, false)));
    assert_eq!(c_data_buffers(&DataType::Utf8), Some((3, false)));
    assert_eq!(c_data_buffers(&DataType::Utf8View), Some((3, true)));
    assert_eq!(c_data_buffers(&DataType::Null), Some((0, false)));
    let dict = DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
    assert_eq!(c_data_buffers(&dict), Some((2, false)));
}

#[test]
fn thread_counts_above_the_limit_are_refused_with_the_limit() {
    let mut s = spec();
    s.n_threads = Some(max_threads() + 1);
    let e = run(schema(), vec![batch(10)], &s).err().unwrap();
    assert!(matches!(e, AssayError::InvalidArgument(_)));
    assert!(e.to_string().contains(&max_threads().to_string()), "{e}");
    s.n_threads = Some(max_threads());
    assert!(run(schema(), vec![batch(10)], &s).is_ok());
}

#[test]
fn bin_counts_are_bounded_before_allocating() {
    let v: Vec<f64> = (0..3000).map(|i| i as f64).collect();
    let e = bin_edges(&v, 1_000_000_000, BinStrategy::Quantile, "p")
        .err()
        .unwrap();
    assert!(e.to_string().contains("at most"), "{e}");
    // More quantile bins than values are interpolated quantiles (as numpy's): only memory
    // bounds the count.
    assert_eq!(
        bin_edges(&v, 3001, BinStrategy::Quantile, "p")
            .unwrap()
            .len(),
        3002
    );
    let e = bin_edges(&v, usize::MAX, BinStrategy::Uniform, "p")
        .err()
        .unwrap();
    assert!(e.to_string().contains("1000000"), "{e}");
    assert_eq!(
        bin_edges(&v, 5000, BinStrategy::Uniform, "p")
            .unwrap()
            .len(),
        5001
    );
}

#[test]
fn auc_bins_and_replicates_are_bounded() {
    let mut s = spec();
    s.auc = AucMode::Binned(usize::MAX);
    assert!(run(schema(), vec![batch(10)], &s).is_err());
    let mut s = spec();
    s.interval = Some(IntervalSpec {
        replicates: usize::MAX,
        level: 0.95,
        method: CiMethod::Percentile,
        seed: 0,
        row_id: None,
    });
    let e = run(schema(), vec![batch(10)], &s).err().unwrap();
    assert!(e.to_string().contains("at most"), "{e}");
}

fn discovery(k: usize, method: Method) -> DiscoverySpec {
    DiscoverySpec {
        fingerprint: None,
        features: vec![Feature::Column("c".into())],
        error: ErrorKind::ZeroOne(0.5),
        label: Some("y".into()),
        score: Some("p".into()),
        k,
        max_level: usize::MAX,
        min_support: 1,
        alpha: 0.95,
        method,
        max_values: 100,
        dedupe: true,
        fdr: 0.1,
        nan_policy: NanPolicy::Raise,
        n_threads: Some(2),
        paired: None,
    }
}

#[test]
fn discovery_sizes_are_bounded() {
    let go = |spec: &DiscoverySpec| {
        discover_slices(schema(), std::iter::once(Ok(batch(300))), spec, &|| false)
    };
    // usize::MAX levels is the same as "all features".
    assert!(go(&discovery(5, Method::SliceLine)).is_ok());
    // k x 4 (dedupe) would overflow.
    let e = go(&discovery(usize::MAX, Method::SliceLine)).err().unwrap();
    assert!(e.to_string().contains("k must be at most"), "{e}");
    let e = go(&discovery(5, Method::Beam(usize::MAX))).err().unwrap();
    assert!(e.to_string().contains("beam_width must be at most"), "{e}");
}

#[test]
fn an_interrupted_job_stops_inside_its_stages() {
    let mut s = spec();
    s.interval = Some(IntervalSpec {
        replicates: 200,
        level: 0.95,
        method: CiMethod::Percentile,
        seed: 0,
        row_id: None,
    });
    // The flag is set when the stream ends: the pass is over, every later stage (sorts,
    // rank and replicate walks, finalization) runs with it set and the job must not report.
    let flag = Interrupt::new();
    let trigger = flag.clone();
    let batches = vec![batch(5000)]
        .into_iter()
        .map(Ok::<_, ArrowError>)
        .chain(std::iter::from_fn(move || {
            trigger.trigger();
            None
        }));
    let e = flag
        .enter(|| evaluate(schema(), batches, &s, &|| false))
        .err()
        .unwrap();
    assert_eq!(e, AssayError::Interrupted);
    // The same job without the flag runs.
    assert!(run(schema(), vec![batch(5000)], &s).is_ok());
}
