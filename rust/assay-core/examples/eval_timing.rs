//! Times `evaluate` on 10M generated rows for the metric lists given as arguments
//! (comma-separated; `defaults` and `calibration` expand). Development aid:
//! `cargo run --release --example eval_timing -- defaults defaults,calibration`.
//! Environment: `SLICES=k` adds a slice column of k values, `BINS=n` and `STRATEGY=quantile`
//! set the calibration bins, `REL=1` asks for the reliability table, `BATCH=k` splits the rows
//! into batches of k, `HINT=1` passes the row count as a hint.
use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, Int32Array, Int8Array, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use assay_core::engine::{evaluate, AucMode, EvalSpec, NanPolicy};
use assay_core::metrics::{calibration_metrics, default_metrics};
use assay_core::Metric;

fn main() {
    let n = 10_000_000usize;
    let mut x = 1u64;
    let env = |k: &str| std::env::var(k).ok();
    let n_slices: i32 = env("SLICES").map_or(0, |v| v.parse().unwrap());
    let (mut p, mut y) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let mut g = Vec::with_capacity(n);
    for _ in 0..n {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let u = (x >> 11) as f64 / (1u64 << 53) as f64;
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        p.push(u);
        g.push(((x >> 40) % n_slices.max(1) as u64) as i32);
        y.push((((x >> 11) as f64 / (1u64 << 53) as f64) < u) as i8);
    }
    let schema = Arc::new(Schema::new(vec![
        Field::new("y", DataType::Int8, false),
        Field::new("p", DataType::Float64, false),
        Field::new("g", DataType::Int32, false),
    ]));
    let cols: Vec<ArrayRef> = vec![
        Arc::new(Int8Array::from(y)),
        Arc::new(Float64Array::from(p)),
        Arc::new(Int32Array::from(g)),
    ];
    let batch = RecordBatch::try_new(schema.clone(), cols).unwrap();
    // BATCH=k feeds the rows in batches of k (as the Python layer does, 1 << 20).
    let step = env("BATCH").map_or(n, |v| v.parse().unwrap());
    let batches: Vec<RecordBatch> = (0..n)
        .step_by(step)
        .map(|a| batch.slice(a, step.min(n - a)))
        .collect();
    for arg in std::env::args().skip(1) {
        let mut metrics = Vec::new();
        for name in arg.split(',') {
            match name {
                "defaults" => {
                    metrics.extend(default_metrics().iter().map(|m| Metric::parse(m).unwrap()))
                }
                "calibration" => metrics.extend(
                    calibration_metrics()
                        .iter()
                        .map(|m| Metric::parse(m).unwrap()),
                ),
                m => metrics.push(Metric::parse(m).unwrap()),
            }
        }
        let spec = EvalSpec {
            family: assay_core::metrics::Family::Binary,
            label: "y".into(),
            score: "p".into(),
            weight: None,
            task: assay_core::spec::TaskOptions::None,
            threshold: 0.5,
            slices: if n_slices > 0 {
                vec![vec![assay_core::Feature::Column("g".into())]]
            } else {
                vec![]
            },
            metrics,
            min_slice_size: 0,
            nan_policy: NanPolicy::Raise,
            auc: AucMode::Exact,
            n_threads: None,
            interval: None,
            compare: None,
            calibration: assay_core::reliability::CalibSpec {
                bins: env("BINS").map_or(15, |v| v.parse().unwrap()),
                rule: assay_core::reliability::BinRule::parse(
                    env("STRATEGY").as_deref().unwrap_or("uniform"),
                )
                .unwrap(),
            },
            reliability: env("REL").map(|_| 0.95),
            max_slices: None,
            fingerprint: None,
            slice_only: Vec::new(),
            rows_hint: env("HINT").map(|_| n as u64),
        };
        let mut times = Vec::new();
        for _ in 0..7 {
            let t = std::time::Instant::now();
            evaluate(
                schema.clone(),
                batches.clone().into_iter().map(Ok),
                &spec,
                &|| false,
            )
            .unwrap();
            times.push(t.elapsed().as_secs_f64());
        }
        times.sort_by(f64::total_cmp);
        println!("{arg:40} min {:.4}s median {:.4}s", times[0], times[3]);
    }
}
