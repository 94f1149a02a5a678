//! Times sorting and compacting one shard's kept rows, and the k-way merge of 16 shards.
//! `cargo run --release -p assay-core --example runs_timing`
use assay_core::state::runs::merge_sorted;
use assay_core::state::RankRows;
use std::time::Instant;

fn main() {
    let (shards, per) = (16usize, 625_000usize);
    let mut seed = 7u64;
    let mut next = || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut parts: Vec<RankRows> = (0..shards)
        .map(|_| {
            let mut r = RankRows::with_specs(1);
            for _ in 0..per {
                r.scores.push(next());
                r.labels.push((next() < 0.3) as u8);
                r.ids[0].push((next() * 100.0) as u32);
            }
            r
        })
        .collect();
    let pool = rayon::ThreadPoolBuilder::new().build().unwrap();
    let t = Instant::now();
    pool.install(|| {
        for p in parts.iter_mut() {
            p.sort_compact(true);
        }
    });
    println!(
        "sort_compact {shards} x {per}: {:.3}s",
        t.elapsed().as_secs_f64()
    );
    let refs: Vec<&RankRows> = parts.iter().collect();
    let none: Vec<Vec<u32>> = Vec::new();
    let maps: Vec<&[Vec<u32>]> = vec![&none; shards];
    for _ in 0..3 {
        let t = Instant::now();
        let m = pool.install(|| merge_sorted(&refs, &maps));
        println!(
            "merge: {:.3}s ({} entries)",
            t.elapsed().as_secs_f64(),
            m.len()
        );
    }
}
