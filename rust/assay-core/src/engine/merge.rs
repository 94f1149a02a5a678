//! Merging partial states of the shards of one job, by slice value, in a canonical order.
//!
//! Floating-point sums depend on the order they are added in, so the states are merged in an
//! order that does not depend on how the caller listed them: by the first global row position
//! each covers, then by a checksum of its bytes. Merging the same shards therefore gives the
//! same bits whatever the order of the list; a different merge tree gives the same counts and
//! values equal to rounding (about 1e-15 relative).

use crate::error::{AssayError, Result};
use crate::state::codec::checksum;
use crate::state::partial::PartialState;
use crate::state::runs::{append_mapped, merge_sorted};
use crate::state::RankRows;

/// The sort key of a state in the canonical merge order: its first row position and row count,
/// then (only where those tie) a checksum of its bytes.
fn order_keys(states: &[&PartialState]) -> Vec<(u64, u64, u64)> {
    let mut keys: Vec<(u64, u64, u64)> = states
        .iter()
        .map(|s| (s.ranges.first().map_or(u64::MAX, |r| r.0), s.rows, 0))
        .collect();
    for i in 0..keys.len() {
        let tied = keys
            .iter()
            .enumerate()
            .any(|(j, k)| j != i && (k.0, k.1) == (keys[i].0, keys[i].1));
        if tied {
            keys[i].2 = checksum(&states[i].to_bytes());
        }
    }
    keys
}

/// Checks that states whose replicate weights follow the row position cover disjoint rows.
fn check_disjoint(states: &[&PartialState]) -> Result<()> {
    if !states.first().is_some_and(|s| s.position_keys) {
        return Ok(());
    }
    let mut all: Vec<(u64, u64)> = states
        .iter()
        .flat_map(|s| s.ranges.iter().copied())
        .collect();
    all.sort_unstable();
    for w in all.windows(2) {
        if w[1].0 < w[0].1 {
            return Err(AssayError::StateMismatch(format!(
                "the states cover overlapping rows ([{}, {}) and [{}, {})): bootstrap replicate \
                 weights follow the row position, so two shards at the same positions would \
                 share them; accumulate each shard with row_offset= its first row's global \
                 position, or give the spec a row_id column",
                w[0].0, w[0].1, w[1].0, w[1].1
            )));
        }
    }
    Ok(())
}

/// The state of all the rows of `states` (none of which changes).
pub fn merge(states: &[&PartialState]) -> Result<PartialState> {
    let Some(first) = states.first() else {
        return Err(AssayError::InvalidArgument(
            "merge needs at least one partial state".into(),
        ));
    };
    for s in states {
        if s.spec_json != first.spec_json {
            return Err(AssayError::StateMismatch(
                "the partial states were accumulated for different specs; only states of one \
                 spec merge"
                    .into(),
            ));
        }
    }
    check_disjoint(states)?;
    let mut keyed: Vec<((u64, u64, u64), &PartialState)> = order_keys(states)
        .into_iter()
        .zip(states.iter().copied())
        .collect();
    keyed.sort_by_key(|(k, _)| *k);
    // A pool of this call's own (the global rayon pool does not survive `fork()`).
    crate::runtime::job_pool(None)?.install(|| {
        let mut out = keyed[0].1.clone_without_rows();
        let mut maps: Vec<Vec<Vec<u32>>> = vec![Vec::new()];
        for (_, s) in &keyed[1..] {
            crate::runtime::check()?;
            maps.push(out.absorb(s)?);
        }
        // The kept rows: one k-way merge of every state's sorted entries, or (when some state
        // kept its rows unsorted: scores mostly distinct, see `state::runs`) the rows one
        // state after the other, sorted once at the finalization.
        let (shape, runs) = (out.shape, out.sketch_runs);
        crate::state::partial::compress_sketches(&mut out.sketches, &shape, runs);
        let maps: Vec<&[Vec<u32>]> = maps.iter().map(Vec::as_slice).collect();
        for m in 0..out.rank.len() {
            let inputs: Vec<&RankRows> = keyed.iter().map(|(_, s)| &s.rank[m]).collect();
            out.rank[m] = if inputs.iter().all(|r| r.sorted || r.is_empty()) {
                merge_sorted(&inputs, &maps)
            } else {
                append_mapped(&inputs, &maps)
            };
            crate::runtime::check()?;
        }
        Ok(out)
    })
}
