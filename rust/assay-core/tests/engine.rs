//! End-to-end tests of the engine on in-memory record batches (no Python involved).

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::Float64Type;
use arrow_array::{Array, ArrayRef, Float64Array, RecordBatch};
use arrow_schema::{ArrowError, SchemaRef};
use assay_core::engine::{evaluate, AucMode, EvalSpec, Evaluation, NanPolicy};
use assay_core::{AssayError, Feature, Metric};

mod common;
use common::table;

fn spec(weighted: bool, threads: usize) -> EvalSpec {
    EvalSpec {
        family: assay_core::metrics::Family::Binary,
        label: "y".into(),
        score: "p".into(),
        weight: weighted.then(|| "w".to_string()),
        task: assay_core::spec::TaskOptions::None,
        threshold: 0.5,
        slices: vec![
            vec![Feature::Column("country".into())],
            vec![
                Feature::Column("country".into()),
                Feature::Bins {
                    column: "age".into(),
                    edges: vec![18.0, 40.0, 78.0],
                },
            ],
        ],
        metrics: assay_core::metrics::default_metrics()
            .iter()
            .map(|m| Metric::parse(m).unwrap())
            .collect(),
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
        n_threads: Some(threads),
    }
}

fn run(
    batches: Vec<RecordBatch>,
    schema: SchemaRef,
    spec: &EvalSpec,
) -> Result<Evaluation, AssayError> {
    let it = batches.into_iter().map(Ok::<_, ArrowError>);
    evaluate(schema, it, spec, &|| false)
}

fn split(b: &RecordBatch, size: usize) -> Vec<RecordBatch> {
    (0..b.num_rows())
        .step_by(size)
        .map(|o| b.slice(o, size.min(b.num_rows() - o)))
        .collect()
}

fn metric(ev: &Evaluation, name: &str) -> Vec<Option<f64>> {
    let col = ev
        .report
        .table
        .column_by_name(name)
        .unwrap()
        .as_primitive::<Float64Type>();
    (0..col.len())
        .map(|i| (!col.is_null(i)).then(|| col.value(i)))
        .collect()
}

#[test]
fn thread_count_does_not_change_a_bit() {
    let b = table(200_000, 1);
    for weighted in [false, true] {
        let one = run(vec![b.clone()], b.schema(), &spec(weighted, 1)).unwrap();
        let two = run(vec![b.clone()], b.schema(), &spec(weighted, 2)).unwrap();
        let three = run(vec![b.clone()], b.schema(), &spec(weighted, 3)).unwrap();
        assert_eq!(one.report.table, two.report.table);
        assert_eq!(one.report.table, three.report.table);
    }
}

#[test]
fn batch_boundaries_do_not_change_a_bit() {
    let b = table(150_000, 2);
    let whole = run(vec![b.clone()], b.schema(), &spec(true, 2)).unwrap();
    for size in [1_000, 65_536, 70_001] {
        let parts = run(split(&b, size), b.schema(), &spec(true, 2)).unwrap();
        assert_eq!(whole.report.table, parts.report.table, "batch size {size}");
    }
}

#[test]
fn overall_row_matches_a_direct_computation() {
    let b = table(5_000, 3);
    let ev = run(vec![b.clone()], b.schema(), &spec(false, 2)).unwrap();
    let y = b.column(0).as_primitive::<arrow_array::types::Int8Type>();
    let p = b.column(1).as_primitive::<Float64Type>();
    let (mut correct, mut pairs, mut good) = (0.0, 0.0, 0.0);
    for i in 0..b.num_rows() {
        correct += ((p.value(i) >= 0.5) == (y.value(i) == 1)) as u8 as f64;
        for j in 0..b.num_rows() {
            if y.value(i) == 1 && y.value(j) == 0 {
                pairs += 1.0;
                good += if p.value(i) > p.value(j) {
                    1.0
                } else if p.value(i) == p.value(j) {
                    0.5
                } else {
                    0.0
                };
            }
        }
    }
    assert!((metric(&ev, "accuracy")[0].unwrap() - correct / 5000.0).abs() < 1e-12);
    assert!((metric(&ev, "roc_auc")[0].unwrap() - good / pairs).abs() < 1e-12);
}

#[test]
fn slices_are_ordered_with_null_last() {
    let b = table(10_000, 4);
    let ev = run(vec![b.clone()], b.schema(), &spec(false, 2)).unwrap();
    let slices = ev
        .report
        .table
        .column_by_name("slice")
        .unwrap()
        .as_string::<i32>();
    let labels: Vec<&str> = (0..5).map(|i| slices.value(i)).collect();
    assert_eq!(
        labels,
        [
            "overall",
            "country=BR",
            "country=DE",
            "country=US",
            "country=null"
        ]
    );
    assert_eq!(slices.value(5), "country=BR & age=[18, 40)");
}

#[test]
fn bad_values_name_column_and_row() {
    let b = table(100, 5);
    let mut p: Vec<f64> = b.column(1).as_primitive::<Float64Type>().values().to_vec();
    p[42] = f64::NAN;
    let cols: Vec<ArrayRef> = vec![
        b.column(0).clone(),
        Arc::new(Float64Array::from(p)),
        b.column(2).clone(),
        b.column(3).clone(),
        b.column(4).clone(),
    ];
    let bad = RecordBatch::try_new(b.schema(), cols).unwrap();
    match run(split(&bad, 7), b.schema(), &spec(false, 2)) {
        Err(AssayError::InvalidInput { column, message }) => {
            assert_eq!(column, "p");
            assert!(message.contains("row 42"), "{message}");
        }
        other => panic!("expected an InvalidInput error, got {:?}", other.err()),
    }
    let mut s = spec(false, 2);
    s.nan_policy = NanPolicy::Drop;
    assert_eq!(run(vec![bad], b.schema(), &s).unwrap().dropped, 1);
}

#[test]
fn missing_columns_and_float_slices_are_typed_errors() {
    let b = table(10, 6);
    let mut s = spec(false, 1);
    s.label = "nope".into();
    assert!(matches!(
        run(vec![b.clone()], b.schema(), &s),
        Err(AssayError::ColumnNotFound { .. })
    ));
    let mut s = spec(false, 1);
    s.slices = vec![vec![Feature::Column("age".into())]];
    match run(vec![b.clone()], b.schema(), &s) {
        Err(AssayError::Schema { column, message }) => {
            assert_eq!(column, "age");
            assert!(message.contains("assay.bins"));
        }
        other => panic!("expected a Schema error, got {:?}", other.err()),
    }
    assert!(matches!(
        run(vec![], b.schema(), &spec(false, 1)),
        Err(AssayError::EmptyInput(_))
    ));
}

#[test]
fn binned_auc_is_close_to_exact() {
    let b = table(50_000, 7);
    let exact = run(vec![b.clone()], b.schema(), &spec(false, 2)).unwrap();
    let mut s = spec(false, 2);
    s.auc = AucMode::Binned(4096);
    let binned = run(vec![b.clone()], b.schema(), &s).unwrap();
    // Scores are rounded to 2 decimals, so every tie group falls in one bin: binned is exact.
    for (e, b) in metric(&exact, "roc_auc")
        .iter()
        .zip(metric(&binned, "roc_auc"))
    {
        assert!((e.unwrap() - b.unwrap()).abs() < 1e-12);
    }
}
