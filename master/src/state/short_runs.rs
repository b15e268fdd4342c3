//! Which modules run short: the prediction that lets placement queue a module's tasks at an
//! executor beyond its free slots, so a slot does not sit idle while its last result commits
//! and the next assignment travels (with a few slots and tiny tasks, that wait, not the
//! work, set the pace).
//!
//! A module is short once its last [`STREAK`] runs were each reported at [`SHORT_MS`] or
//! less; one longer run ends the streak. The streaks change only by applying reports, so
//! every replica predicts the same and placement stays deterministic; they are stored with
//! every sync and travel in snapshots.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use wasmgrid_common::Digest;

/// Longest run, as reported, that counts as short.
pub const SHORT_MS: u64 = 5;
/// Short runs in a row that make a module short.
pub const STREAK: u32 = 8;

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ShortRuns {
    streaks: BTreeMap<Digest, u32>,
}

impl ShortRuns {
    /// Counts one run of `module` that took `duration_ms`.
    pub fn record(&mut self, module: &Digest, duration_ms: u64) {
        if duration_ms <= SHORT_MS {
            let streak = self.streaks.entry(*module).or_default();
            *streak = streak.saturating_add(1).min(STREAK);
        } else {
            self.streaks.remove(module);
        }
    }

    /// Counts a run of `module` that never reported (it ran past its timeout).
    pub fn end_streak(&mut self, module: &Digest) {
        self.streaks.remove(module);
    }

    pub fn is_short(&self, module: &Digest) -> bool {
        self.streaks.get(module).is_some_and(|s| *s >= STREAK)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_module_is_short_after_a_streak_of_short_runs_and_not_after_one_long_run() {
        let (m, other) = (Digest::of(b"m"), Digest::of(b"other"));
        let mut runs = ShortRuns::default();
        for _ in 0..STREAK - 1 {
            runs.record(&m, SHORT_MS);
        }
        assert!(!runs.is_short(&m));
        runs.record(&m, 0);
        assert!(runs.is_short(&m) && !runs.is_short(&other));
        runs.record(&m, SHORT_MS + 1);
        assert!(!runs.is_short(&m));
        for _ in 0..STREAK {
            runs.record(&m, 1);
        }
        assert!(runs.is_short(&m));
    }
}
