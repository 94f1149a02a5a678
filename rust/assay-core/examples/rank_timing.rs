//! Times the exact rank sums (sort and walk) of 10M generated rows, overall and with 100
//! slices, with one thread and with all cores. Development aid:
//! `cargo run --release --example rank_timing`. `ROWS=n` sets the row count; `ONE=1` runs
//! the one-thread timings only.
use assay_core::rank::rank_sums;
use assay_core::state::RankRows;

fn main() {
    let n: usize = std::env::var("ROWS").map_or(10_000_000, |v| v.parse().unwrap());
    let mut x = 7u64;
    let mut next = || {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        x >> 11
    };
    let mut rows = RankRows::with_specs(1);
    for _ in 0..n {
        let u = next() as f64 / (1u64 << 53) as f64;
        rows.scores.push(u);
        rows.labels
            .push(((next() as f64 / (1u64 << 53) as f64) < u) as u8);
        rows.ids[0].push((next() % 100) as u32);
    }
    let overall = RankRows {
        ids: Vec::new(),
        ..rows.clone()
    };
    let only_one = std::env::var("ONE").is_ok();
    for threads in [1, 0] {
        if only_one && threads == 0 {
            break;
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        for (name, r, n_ids) in [
            ("overall", &overall, vec![1]),
            ("100 slices", &rows, vec![1, 100]),
        ] {
            let mut t = Vec::new();
            for _ in 0..7 {
                let s = std::time::Instant::now();
                std::hint::black_box(pool.install(|| rank_sums(r, &n_ids)));
                t.push(s.elapsed().as_secs_f64());
            }
            t.sort_by(f64::total_cmp);
            println!(
                "{name:12} threads {:2}: min {:.4}s median {:.4}s",
                pool.current_num_threads(),
                t[0],
                t[3]
            );
        }
    }
}
