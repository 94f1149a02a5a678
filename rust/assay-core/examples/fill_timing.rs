use assay_core::bootstrap::Resampler;
use std::time::Instant;
fn main() {
    let r = Resampler::new(0, 1000);
    let mut kw = vec![0.0; 64];
    let mut acc = 0.0;
    let t = Instant::now();
    for row in 0..1_000_000u64 {
        let rk = r.row_key(row);
        for b in 0..16 {
            r.fill(rk, 1.0, b * 64, &mut kw[..if b == 15 { 60 } else { 64 }]);
            acc += kw[3];
        }
    }
    println!("fill 1.02e9: {:?} {acc}", t.elapsed());
}
