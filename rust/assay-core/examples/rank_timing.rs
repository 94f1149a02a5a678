//! Times the exact-rank path on synthetic data: `cargo run --release --example rank_timing`.
use assay_core::bootstrap::Resampler;
use assay_core::rank::{rank_sums, replicate_rank_sums};
use assay_core::state::RankRows;
use std::time::Instant;

fn main() {
    let n = 10_000_000usize;
    let mut x: u64 = 88172645463325252;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x >> 11) as f64 / (1u64 << 53) as f64
    };
    let scores: Vec<f64> = (0..n).map(|_| next()).collect();
    let labels: Vec<u8> = (0..n).map(|_| (next() < 0.1) as u8).collect();
    let ids: Vec<u32> = (0..n).map(|_| (next() * 100.0) as u32).collect();
    let rows = RankRows {
        scores,
        labels,
        weights: vec![],
        ids: vec![ids],
        row_keys: vec![],
        ..Default::default()
    };
    for threads in [1, 2] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let t = Instant::now();
            let r = rank_sums(&rows, &[1]);
            println!(
                "{threads} threads: overall {:?} auc={}",
                t.elapsed(),
                r[0][0].auc_pairs / (r[0][0].pos * r[0][0].neg)
            );
            let t = Instant::now();
            let r = rank_sums(&rows, &[1, 100]);
            println!(
                "{threads} threads: overall + 100 slices {:?} auc0={}",
                t.elapsed(),
                r[1][0].auc_pairs / (r[1][0].pos * r[1][0].neg)
            );
        });
    }

    // Bootstrap: 1M rows, B = 1000 replicates, overall ROC-AUC only.
    let m = 1_000_000;
    let r = Resampler::new(0, 1000);
    let small = RankRows {
        scores: rows.scores[..m].to_vec(),
        labels: rows.labels[..m].to_vec(),
        weights: vec![],
        ids: vec![],
        row_keys: (0..m as u64).map(|i| r.row_key(i)).collect(),
        ..Default::default()
    };
    for threads in [1, 2] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let t = Instant::now();
            let reps = replicate_rank_sums(&small, &[1], &r, 1000, false);
            let el = t.elapsed();
            println!(
                "{threads} threads: 1M rows x {} slots {:?} ({:.2e} row-replicates/s) auc_0={}",
                1000,
                el,
                (m * 1000) as f64 / el.as_secs_f64(),
                reps[0][0][0].auc_pairs / (reps[0][0][0].pos * reps[0][0][0].neg)
            );
        });
    }
}
