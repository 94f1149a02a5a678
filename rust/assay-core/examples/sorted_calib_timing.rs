//! Times the calibration walk over sorted rows (development aid:
//! `cargo run --release --example sorted_calib_timing`).
use assay_core::reliability::{sorted_run_calibration, uniform_edges, SortedWant};
use assay_core::sorted::{Rec, Unweighted};

fn main() {
    let n = 10_000_000usize;
    let mut x = 1u64;
    let mut recs: Vec<Unweighted> = (0..n)
        .map(|i| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let s = (x >> 11) as f64 / (1u64 << 53) as f64;
            Unweighted::new(
                !(s.to_bits() | (1 << 63)),
                (i as u64) << 1 | (x >> 7) & 1,
                1.0,
            )
        })
        .collect();
    recs.sort_by_key(|r| r.order());
    let wants = [
        (
            "uniform",
            SortedWant {
                uniform_edges: uniform_edges(15),
                ..Default::default()
            },
        ),
        (
            "quantile",
            SortedWant {
                quantile_bins: 15,
                ..Default::default()
            },
        ),
        (
            "grid",
            SortedWant {
                grid: true,
                ..Default::default()
            },
        ),
        (
            "logit",
            SortedWant {
                logit: true,
                ..Default::default()
            },
        ),
    ];
    for threads in [1, 2] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        for (name, want) in &wants {
            let t = std::time::Instant::now();
            let c = pool.install(|| sorted_run_calibration(&recs, want));
            println!(
                "{threads} threads {name:10} {:?} {}",
                t.elapsed(),
                c.bins.len() + c.grid.len()
            );
        }
    }
}
