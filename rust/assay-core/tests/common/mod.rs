//! Data shared by the integration tests.

use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, Int8Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};

/// A linear congruential generator: uniform in [0, 1).
pub fn lcg(seed: &mut u64) -> f64 {
    *seed = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (*seed >> 11) as f64 / (1u64 << 53) as f64
}

/// `n` rows: 0/1 labels `y`, scores `p` (rounded: ties), weights `w`, a nullable string
/// `country` and a float `age`.
pub fn table(n: usize, seed: u64) -> RecordBatch {
    let mut s = seed;
    let y: Vec<i8> = (0..n).map(|_| (lcg(&mut s) < 0.3) as i8).collect();
    let p: Vec<f64> = y
        .iter()
        .map(|y| ((0.4 * *y as f64 + 0.6 * lcg(&mut s)) * 100.0).round() / 100.0)
        .collect();
    let w: Vec<f64> = (0..n).map(|_| 0.5 + lcg(&mut s)).collect();
    let c: Vec<Option<&str>> = (0..n)
        .map(|_| match (lcg(&mut s) * 4.0) as u32 {
            0 => Some("BR"),
            1 => Some("DE"),
            2 => Some("US"),
            _ => None,
        })
        .collect();
    let age: Vec<f64> = (0..n)
        .map(|_| (18.0 + 60.0 * lcg(&mut s)).round())
        .collect();
    let schema = Arc::new(Schema::new(vec![
        Field::new("y", DataType::Int8, false),
        Field::new("p", DataType::Float64, false),
        Field::new("w", DataType::Float64, false),
        Field::new("country", DataType::Utf8, true),
        Field::new("age", DataType::Float64, false),
    ]));
    let cols: Vec<ArrayRef> = vec![
        Arc::new(Int8Array::from(y)),
        Arc::new(Float64Array::from(p)),
        Arc::new(Float64Array::from(w)),
        Arc::new(StringArray::from(c)),
        Arc::new(Float64Array::from(age)),
    ];
    RecordBatch::try_new(schema, cols).unwrap()
}
