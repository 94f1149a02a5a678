//! Partial states: merging shards equals one pass; the byte format round-trips and refuses
//! anything that is not a state (truncated, corrupted, foreign, newer), never panicking.

use arrow_array::{Float64Array, RecordBatch};
use assay_core::engine::{accumulate, evaluate, finalize, merge, AucMode, EvalSpec, NanPolicy};
use assay_core::state::codec::{checksum, STATE_FORMAT_VERSION};
use assay_core::state::col::StableBytes;
use assay_core::{AssayError, CiMethod, Feature, IntervalSpec, Metric, PartialState};
use std::sync::Arc;

mod common;
use common::{lcg, table};

fn spec(bootstrap: bool) -> EvalSpec {
    EvalSpec {
        family: assay_core::metrics::Family::Binary,
        label: "y".into(),
        score: "p".into(),
        weight: Some("w".into()),
        task: assay_core::spec::TaskOptions::None,
        threshold: 0.5,
        slices: vec![vec![Feature::Column("country".into())]],
        slice_only: Vec::new(),
        rows_hint: None,
        metrics: [
            "accuracy",
            "roc_auc",
            "average_precision",
            "log_loss",
            "ece",
            "ace",
        ]
        .iter()
        .map(|m| Metric::parse(m).unwrap())
        .collect(),
        min_slice_size: 0,
        nan_policy: NanPolicy::Raise,
        auc: AucMode::Exact,
        n_threads: Some(2),
        interval: bootstrap.then_some(IntervalSpec {
            replicates: 50,
            level: 0.9,
            method: CiMethod::Percentile,
            seed: 7,
            row_id: None,
        }),
        compare: None,
        calibration: Default::default(),
        reliability: None,
        max_slices: None,
        fingerprint: None,
    }
}

fn never() -> bool {
    false
}

fn shard(t: &RecordBatch, lo: usize, hi: usize, spec: &EvalSpec) -> PartialState {
    let part = t.slice(lo, hi - lo);
    let mut st = accumulate(
        part.schema(),
        std::iter::once(Ok(part)),
        spec,
        lo as u64,
        &never,
    )
    .unwrap();
    st.spec_json = "spec".into();
    st
}

fn floats(b: &RecordBatch) -> Vec<Option<f64>> {
    use arrow_array::Array;
    let mut out = Vec::new();
    for c in b.columns() {
        if let Some(f) = c.as_any().downcast_ref::<Float64Array>() {
            out.extend((0..f.len()).map(|i| f.is_valid(i).then(|| f.value(i))));
        }
    }
    out
}

#[test]
fn shards_merge_into_one_pass_in_any_order() {
    let t = table(3000, 1);
    for boot in [false, true] {
        let sp = spec(boot);
        let one = evaluate(t.schema(), std::iter::once(Ok(t.clone())), &sp, &never).unwrap();
        let parts = [
            shard(&t, 0, 1000, &sp),
            shard(&t, 1000, 1001, &sp),
            shard(&t, 1001, 3000, &sp),
        ];
        let fwd = merge(&[&parts[0], &parts[1], &parts[2]]).unwrap();
        let back = merge(&[&parts[2], &parts[0], &parts[1]]).unwrap();
        let a = finalize(&fwd, &sp, &never).unwrap();
        let b = finalize(&back, &sp, &never).unwrap();
        assert_eq!(
            a.report.table, b.report.table,
            "bits depend on the merge call order"
        );
        let (x, y) = (floats(&a.report.table), floats(&one.report.table));
        assert_eq!(x.len(), y.len());
        for (u, v) in x.iter().zip(&y) {
            match (u, v) {
                (Some(u), Some(v)) => assert!((u - v).abs() <= 1e-12 * u.abs().max(1.0), "{u} {v}"),
                (u, v) => assert_eq!(u.is_some(), v.is_some()),
            }
        }
        // A state finalized twice (and after serialization) gives the same report.
        let again = PartialState::from_bytes(&fwd.to_bytes()).unwrap();
        assert_eq!(again.to_bytes(), fwd.to_bytes());
        assert_eq!(
            finalize(&again, &sp, &never).unwrap().report.table,
            a.report.table
        );
    }
}

/// Bytes a state may read in place, starting `skip` bytes into a buffer (1: misaligned).
struct Offset(Vec<u8>, usize);

// SAFETY: the vector is never written or moved once inside an `Arc`.
unsafe impl StableBytes for Offset {
    fn stable_bytes(&self) -> &[u8] {
        &self.0[self.1..]
    }
}

#[test]
fn a_state_read_in_place_equals_a_copied_one_and_outlives_its_reader() {
    let t = table(3000, 1);
    for boot in [false, true] {
        let sp = spec(boot);
        let parts = [shard(&t, 0, 1000, &sp), shard(&t, 1000, 3000, &sp)];
        let blobs: Vec<Vec<u8>> = parts.iter().map(|p| p.to_bytes()).collect();
        let copied: Vec<PartialState> = blobs
            .iter()
            .map(|b| PartialState::from_bytes(b).unwrap())
            .collect();
        for skip in [0, 1] {
            let shared: Vec<PartialState> = blobs
                .iter()
                .map(|b| {
                    let mut v = vec![0u8; skip];
                    v.extend_from_slice(b);
                    PartialState::from_shared_bytes(Arc::new(Offset(v, skip))).unwrap()
                })
                .collect();
            for (s, c) in shared.iter().zip(&copied) {
                assert_eq!(s.to_bytes(), c.to_bytes());
                // Kept rows are borrowed when the bytes are aligned for them (a vector's
                // memory is, so 0 bytes in), and copied otherwise (1 byte in).
                let borrowed = s.rank.iter().any(|r| r.scores.is_shared());
                assert_eq!(borrowed, skip == 0 && !s.rank[0].scores.is_empty());
            }
            let a = finalize(&merge(&[&shared[0], &shared[1]]).unwrap(), &sp, &never).unwrap();
            let b = finalize(&merge(&[&copied[0], &copied[1]]).unwrap(), &sp, &never).unwrap();
            assert_eq!(a.report.table, b.report.table);
            // A clone of a column reads the same bytes, which it keeps alive.
            let kept = shared[1].rank[0].scores.clone();
            assert_eq!(kept.is_shared(), skip == 0);
            drop(shared);
            assert_eq!(kept, copied[1].rank[0].scores);
        }
    }
}

#[test]
fn overlapping_positions_of_a_resampled_job_are_refused() {
    let t = table(500, 2);
    let sp = spec(true);
    let a = shard(&t, 0, 300, &sp);
    let b = shard(&t, 200, 500, &sp);
    assert!(matches!(
        merge(&[&a, &b]),
        Err(AssayError::StateMismatch(_))
    ));
    let plain = spec(false);
    let (c, d) = (shard(&t, 0, 300, &plain), shard(&t, 200, 500, &plain));
    assert!(
        merge(&[&c, &d]).is_ok(),
        "without resampling, positions do not matter"
    );
    let mut e = shard(&t, 300, 500, &sp);
    e.spec_json = "another".into();
    assert!(matches!(
        merge(&[&a, &e]),
        Err(AssayError::StateMismatch(_))
    ));
    assert!(matches!(
        finalize(&a, &plain, &never),
        Err(AssayError::StateMismatch(_))
    ));
}

fn reseal(bytes: &mut [u8]) {
    let sum = checksum(&bytes[32..]);
    bytes[24..32].copy_from_slice(&sum.to_le_bytes());
}

#[test]
fn bytes_that_are_not_a_state_are_refused() {
    let t = table(60, 3);
    let sp = spec(true);
    let st = merge(&[&shard(&t, 0, 30, &sp), &shard(&t, 30, 60, &sp)]).unwrap();
    let good = st.to_bytes();
    // Every truncation, every flipped byte.
    for n in 0..good.len() {
        assert!(matches!(
            PartialState::from_bytes(&good[..n]),
            Err(AssayError::StateFormat(_))
        ));
        let mut bad = good.clone();
        bad[n] ^= 0x5a;
        assert!(
            matches!(
                PartialState::from_bytes(&bad),
                Err(AssayError::StateFormat(_))
            ),
            "byte {n}"
        );
    }
    // Mutations behind a valid checksum: a typed error or a state that finalizes (or refuses)
    // without a panic.
    let mut seed = 11u64;
    for n in 32..good.len() {
        for _ in 0..3 {
            let mut bad = good.clone();
            bad[n] = (lcg(&mut seed) * 256.0) as u8;
            reseal(&mut bad);
            if let Ok(s) = PartialState::from_bytes(&bad) {
                // (Debug builds assert that metric values lie in range, which a forged state
                // need not respect; release builds report such a value as null with a note.)
                if !cfg!(debug_assertions) {
                    let _ = finalize(&s, &sp, &never);
                }
            }
        }
    }
    let mut newer = good.clone();
    newer[8..12].copy_from_slice(&(STATE_FORMAT_VERSION + 1).to_le_bytes());
    match PartialState::from_bytes(&newer) {
        Err(AssayError::StateFormat(m)) => assert!(m.contains("newer"), "{m}"),
        other => panic!("{:?}", other.err()),
    }
    for foreign in [&b""[..], b"PAR1\x00\x00", &[0u8; 64]] {
        assert!(matches!(
            PartialState::from_bytes(foreign),
            Err(AssayError::StateFormat(_))
        ));
    }
}

#[test]
fn sketch_states_bound_their_error() {
    let t = table(4000, 4);
    let mut sp = spec(false);
    sp.auc = AucMode::Sketch(16);
    sp.metrics = vec![Metric::RocAuc];
    let exact = {
        let mut e = sp.clone();
        e.auc = AucMode::Exact;
        evaluate(t.schema(), std::iter::once(Ok(t.clone())), &e, &never).unwrap()
    };
    let st = merge(&[&shard(&t, 0, 1500, &sp), &shard(&t, 1500, 4000, &sp)]).unwrap();
    let st = PartialState::from_bytes(&st.to_bytes()).unwrap();
    let got = finalize(&st, &sp, &never).unwrap();
    let bounds = got.report.notes.column_by_name("error_bound").unwrap();
    let bounds = bounds.as_any().downcast_ref::<Float64Array>().unwrap();
    let auc = |b: &RecordBatch| {
        let c = b.column_by_name("roc_auc").unwrap();
        let c = c.as_any().downcast_ref::<Float64Array>().unwrap();
        c.iter().collect::<Vec<_>>()
    };
    let (x, y) = (auc(&got.report.table), auc(&exact.report.table));
    assert_eq!(x.len(), bounds.len());
    for (i, (u, v)) in x.iter().zip(&y).enumerate() {
        let (u, v) = (u.unwrap(), v.unwrap());
        assert!(
            (u - v).abs() <= bounds.value(i) + 1e-12,
            "{u} {v} {}",
            bounds.value(i)
        );
    }
}

#[test]
fn kept_row_flags_that_no_accumulate_writes_are_refused() {
    let t = table(400, 3);
    let sp = spec(true);
    let good = shard(&t, 0, 400, &sp);
    assert!(!good.rank[0].row_keys.is_empty() && !good.rank[0].sorted);
    good.check_consistent(false).unwrap();
    // Rows with resampling keys are never sorted (so never merged k-way).
    let mut keyed_sorted = good.detached_clone();
    keyed_sorted.rank[0].sorted = true;
    assert!(keyed_sorted.check_consistent(false).is_err());
    // Counts must be whole, and add up to at most the rows read.
    let mut plain = spec(false);
    plain.weight = None;
    plain.metrics = vec![Metric::RocAuc];
    let mut t2 = table(400, 3);
    // Few distinct scores: the shard compacts into counted entries.
    let p: Float64Array = (0..400).map(|i| (i % 4) as f64 / 4.0).collect();
    let at = t2.schema().index_of("p").unwrap();
    let mut cols = t2.columns().to_vec();
    cols[at] = std::sync::Arc::new(p);
    t2 = RecordBatch::try_new(t2.schema(), cols).unwrap();
    let counted = shard(&t2, 0, 400, &plain);
    assert!(counted.rank[0].counted && counted.rank[0].sorted);
    counted.check_consistent(false).unwrap();
    let mut too_many = counted.detached_clone();
    too_many.rank[0].weights[0] += 1000.0;
    assert!(too_many.check_consistent(false).is_err());
    let mut fraction = counted.detached_clone();
    fraction.rank[0].weights[0] += 0.5;
    assert!(fraction.check_consistent(false).is_err());
    let mut unsorted = counted.detached_clone();
    unsorted.rank[0].scores.reverse();
    assert!(unsorted.check_consistent(false).is_err());
}
