//! The one wasmtime `Engine` of an executor.
//!
//! Running guests are bounded by fuel alone: every call, branch and instruction that does
//! work costs fuel, bulk memory and table operations cost it per byte or element (wasmtime
//! 46 and later), and a run yields every
//! [`FUEL_YIELD_INTERVAL`](super::FUEL_YIELD_INTERVAL) units, where its timeout and
//! cancellation take effect; calls into the host check them too (see `Sandbox::run`).
//! Epoch interruption, the other way to bound time, is only built for the benchmark that
//! measures what fuel costs against it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use wasmgrid_common::guest::{MAX_MEMORIES, MAX_TABLES};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, OptLevel, PoolingAllocationConfig};

/// How often guests of an epoch-only engine are interrupted to yield.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Largest wasm call stack of a guest; deeper recursion traps with a stack overflow.
const MAX_WASM_STACK: usize = 1024 * 1024;

/// Most core instances one component may instantiate (a composed component can have a few
/// dozen); its memories and tables are bounded by `wasmgrid_common::guest`.
const MAX_CORE_INSTANCES: u32 = 32;
/// Memories the pool holds per run: each takes 4GiB of address space, so not
/// `MAX_MEMORIES` (with 4,096 slots that would pass the 128TiB a process has).
const MEMORIES_PER_RUN: u32 = 4;

/// How a running guest is made to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metering {
    /// Fuel: the executor's engine.
    Fuel,
    /// Epoch interruption only, no fuel: the benchmark's baseline.
    EpochOnly,
}

/// Builds an engine: the given metering, components, and a pooling allocator sized for
/// `slots` concurrent runs (instances come from pre-reserved slots, so instantiation costs
/// microseconds, not mmap calls).
pub fn build(slots: u32, metering: Metering) -> wasmtime::Result<Engine> {
    let mut config = Config::new();
    config
        .consume_fuel(metering == Metering::Fuel)
        .epoch_interruption(metering == Metering::EpochOnly)
        .wasm_component_model(true)
        .max_wasm_stack(MAX_WASM_STACK)
        .async_stack_size(MAX_WASM_STACK + 1024 * 1024)
        .cranelift_opt_level(OptLevel::Speed)
        .parallel_compilation(true);
    let runs = slots.max(1) + 4;
    let mut pool = PoolingAllocationConfig::default();
    // A C task linked through the preview1 adapter instantiates several core instances,
    // memories and tables per run; leave room for that. Core instances and tables are cheap
    // to hold: `slots` runs of the largest component allowed fit at once. Memories are not
    // (see `MEMORIES_PER_RUN`): runs of components with more than 4 memories each can use up
    // the pool, and a run that finds none free fails as `executor_lost`, to run again.
    pool.total_component_instances(runs * 2)
        .total_core_instances(runs * MAX_CORE_INSTANCES)
        .total_memories(runs * MEMORIES_PER_RUN)
        .total_tables(runs * MAX_TABLES)
        .total_stacks(runs * 2)
        .max_core_instances_per_component(MAX_CORE_INSTANCES)
        .max_memories_per_component(MAX_MEMORIES)
        .max_tables_per_component(MAX_TABLES)
        // A core module may have several too (WebAssembly 2.0 tables, multi-memory).
        .max_memories_per_module(MAX_MEMORIES)
        .max_tables_per_module(MAX_TABLES)
        .max_memory_size(1 << 32)
        .table_elements(wasmgrid_common::guest::MAX_TABLE_ELEMENTS as usize)
        // Reset small memories, tables and stacks in place instead of returning them to the
        // kernel: page faults and TLB shootdowns were a large share of a tiny task's cost.
        // Kept small: every warm slot holds this much resident.
        .linear_memory_keep_resident(128 << 10)
        .table_keep_resident(1 << 16)
        .async_stack_keep_resident(1 << 16);
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    Engine::new(&config)
}

/// Increments the engine's epoch every [`EPOCH_TICK`] until dropped.
pub struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    pub fn start(engine: Engine) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new().name("epoch-ticker".into()).spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                std::thread::sleep(EPOCH_TICK);
                engine.increment_epoch();
            }
        })?;
        Ok(Self { stop, thread: Some(thread) })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
