//! What a guest's store holds: its WASI context (closed by default), its memory cap, and
//! what ends it early (its deadline, cancellation, and a command's output past its limit).

use std::time::Instant;

use tokio_util::sync::CancellationToken;
use wasmgrid_common::Size;
use wasmtime::ResourceLimiter;
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::{WasiCtxView, WasiView};

use super::capture::Capture;

/// The data of one run's `Store`.
pub struct Host {
    pub wasi: WasiP1Ctx,
    pub limits: MemoryCap,
    /// None when the timeout is too far away to name.
    pub deadline: Option<Instant>,
    pub cancel: CancellationToken,
    /// A command's stdout, which ends the run once it holds more than it may.
    pub output: Option<Capture>,
}

/// Why a run was stopped before its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Interrupted {
    #[error("the task ran past its timeout")]
    Timeout,
    #[error("the task was cancelled")]
    Cancelled,
    #[error("the task wrote more output than it may")]
    OutputTooLarge,
}

impl Host {
    /// An error if the run is past its deadline, is cancelled or wrote too much output.
    pub fn check(&self) -> Result<(), Interrupted> {
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(Interrupted::Timeout);
        }
        if self.cancel.is_cancelled() {
            return Err(Interrupted::Cancelled);
        }
        if self.output.as_ref().is_some_and(Capture::overflowed) {
            return Err(Interrupted::OutputTooLarge);
        }
        Ok(())
    }
}

impl WasiView for Host {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        self.wasi.ctx()
    }
}

/// What a table element is counted as against the memory cap.
const TABLE_ELEMENT_BYTES: u64 = 8;

/// Caps the total linear memory of a run (all its memories together) and its tables, and
/// remembers a refusal so the run is reported as `memory_limit` even if the guest then traps.
pub struct MemoryCap {
    cap: u64,
    used: u64,
    /// The bytes the memory and the table growth last allowed added to `used`, to take
    /// them back should wasmtime then fail the growth.
    last_grow: Option<u64>,
    last_table_grow: Option<u64>,
    max_table_elements: usize,
    pub refused: Option<String>,
}

impl MemoryCap {
    pub fn new(cap: u64) -> Self {
        let max_table_elements = usize::try_from(wasmgrid_common::guest::MAX_TABLE_ELEMENTS).unwrap_or(usize::MAX);
        Self { cap, used: 0, last_grow: None, last_table_grow: None, max_table_elements, refused: None }
    }
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        self.last_grow = None;
        if maximum.is_some_and(|m| desired > m) {
            // Past the memory's own maximum: wasmtime refuses it anyway, and it is the
            // guest's business (its `memory.grow` returns -1), not the cap's.
            return Ok(false);
        }
        let next = self.used.saturating_sub(current as u64).saturating_add(desired as u64);
        if next > self.cap {
            self.refused = Some(format!(
                "memory limit of {} reached: the task tried to grow its memory to {}",
                Size(self.cap).human(),
                Size(next).human_past(Size(self.cap))
            ));
            return Ok(false);
        }
        self.used = next;
        self.last_grow = Some((desired as u64).saturating_sub(current as u64));
        Ok(true)
    }

    /// A growth within the cap (and the memory's own maximum, see `memory_growing`) that
    /// wasmtime could not make: past the instance pool's 4GiB a memory (a 64-bit memory
    /// under a cap above that). It does not count, and it explains the run's failure as the
    /// memory limit it is.
    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        if let Some(added) = self.last_grow.take() {
            self.used = self.used.saturating_sub(added);
            self.refused = Some(format!("the task's memory could not grow: {error}"));
        }
        Ok(())
    }

    fn table_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        if let Some(added) = self.last_table_grow.take() {
            self.used = self.used.saturating_sub(added);
        }
        Ok(())
    }

    /// Tables count against the same cap, at a pointer an element: a guest's eight tables of
    /// a million elements each would otherwise hold 64MiB beside its `--memory`.
    fn table_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        self.last_table_grow = None;
        // The table's own maximum is the guest's business; wasmtime also passes the pool's
        // element limit as the maximum, and that one is the cap's (the pool is sized to
        // `MAX_TABLE_ELEMENTS` in `engine.rs`; a table that declares exactly that maximum
        // cannot be told apart, and is refused as the cap).
        if maximum.is_some_and(|m| desired > m && m < self.max_table_elements) {
            return Ok(false);
        }
        if desired > self.max_table_elements {
            self.refused = Some(format!(
                "table limit of {} elements reached: the task tried to grow a table to {desired}",
                self.max_table_elements
            ));
            return Ok(false);
        }
        let added = (desired.saturating_sub(current) as u64).saturating_mul(TABLE_ELEMENT_BYTES);
        let next = self.used.saturating_add(added);
        if next > self.cap {
            self.refused = Some(format!(
                "memory limit of {} reached: the task tried to grow a table to {desired} elements",
                Size(self.cap).human()
            ));
            return Ok(false);
        }
        self.used = next;
        self.last_table_grow = Some(added);
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_all_memories_together() {
        let mut cap = MemoryCap::new(100);
        assert!(cap.memory_growing(0, 60, None).unwrap());
        assert!(!cap.memory_growing(0, 60, None).unwrap(), "a second memory shares the cap");
        assert!(cap.refused.is_some());
        assert!(cap.memory_growing(60, 100, None).unwrap());
    }

    #[test]
    fn tables_count_against_the_cap() {
        let mut cap = MemoryCap::new(100);
        assert!(cap.table_growing(0, 10, None).unwrap(), "80 bytes");
        assert!(!cap.memory_growing(0, 30, None).unwrap(), "110 bytes in all");
        assert!(!cap.table_growing(10, 13, None).unwrap(), "104 bytes in all");
        assert!(cap.refused.as_deref().is_some_and(|r| r.contains("13 elements")));
        assert!(cap.memory_growing(0, 20, None).unwrap());
    }

    #[test]
    fn a_refusal_one_page_past_the_cap_does_not_read_as_the_cap() {
        let mut cap = MemoryCap::new(1 << 30);
        assert!(cap.memory_growing(0, 1 << 30, None).unwrap());
        assert!(!cap.memory_growing(1 << 30, (1 << 30) + (64 << 10), None).unwrap());
        let said = cap.refused.unwrap();
        assert_eq!(said, "memory limit of 1GiB reached: the task tried to grow its memory to 1048640KiB");
    }

    #[test]
    fn a_growth_wasmtime_fails_does_not_count_and_is_a_refusal() {
        let mut cap = MemoryCap::new(100);
        assert!(cap.memory_growing(0, 60, None).unwrap());
        cap.memory_grow_failed(wasmtime::Error::msg("past the pool's maximum")).unwrap();
        assert!(cap.refused.as_deref().is_some_and(|r| r.contains("past the pool's maximum")));
        assert!(cap.memory_growing(0, 100, None).unwrap(), "the failed growth was taken back");

        // Past the memory's own maximum: not counted, and the guest's business.
        let mut cap = MemoryCap::new(100);
        assert!(!cap.memory_growing(0, 60, Some(50)).unwrap());
        cap.memory_grow_failed(wasmtime::Error::msg("maximum size exceeded")).unwrap();
        assert!(cap.refused.is_none());
        // A failure with no growth before it takes nothing back.
        cap.memory_grow_failed(wasmtime::Error::msg("again")).unwrap();
        assert!(cap.memory_growing(0, 100, None).unwrap());
    }

    #[test]
    fn a_table_growth_wasmtime_fails_does_not_count() {
        let mut cap = MemoryCap::new(100);
        assert!(!cap.table_growing(0, 10, Some(5)).unwrap(), "past its own maximum");
        assert!(cap.table_growing(0, 10, None).unwrap());
        cap.table_grow_failed(wasmtime::Error::msg("the pool has no room")).unwrap();
        assert!(cap.memory_growing(0, 100, None).unwrap(), "the failed table growth was taken back");
    }
}
