//! Times the exact quantile bins of 10M rows (development aid: `cargo run --release --example qbins_timing`).
fn main() {
    let n = 10_000_000usize;
    let mut x = 1u64;
    let mut rows = assay_core::state::RankRows::with_specs(0);
    for _ in 0..n {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        rows.scores.push((x >> 11) as f64 / (1u64 << 53) as f64);
        rows.labels.push(((x >> 3) & 1) as u8);
    }
    for th in [1usize, 2] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(th)
            .build()
            .unwrap();
        let mut best = (1e9f64, 1e9f64);
        for _ in 0..5 {
            let t = std::time::Instant::now();
            let e =
                pool.install(|| assay_core::reliability::quantile_edges(&rows.scores, None, 15));
            let t1 = t.elapsed().as_secs_f64();
            let q = pool
                .install(|| assay_core::reliability::quantile_bin_states(&rows, &[1], 15, None));
            let t2 = t.elapsed().as_secs_f64() - t1;
            assert_eq!(q[0][0].0, e);
            best = (best.0.min(t1), best.1.min(t2));
        }
        println!(
            "threads={th} edges {:.4}s  edges+bins {:.4}s",
            best.0, best.1
        );
    }
}
