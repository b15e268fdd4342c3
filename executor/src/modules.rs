//! The module cache: each module is fetched once by digest (and checked against it), kept
//! under `modules/`, compiled once and kept under `compiled/` keyed by the engine's
//! compatibility hash, so a restart loads it without recompiling. Linked programs stay in
//! memory; concurrent requests for the same module share one load. A module that cannot
//! run here (it does not compile or link with this engine) is remembered as such, so a
//! resubmit fails at once instead of compiling it again. At most [`MAX_COMPILES`] modules
//! compile at once.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{OnceCell, Semaphore};
use wasmgrid_common::Digest;
use wasmtime::component::Component;
use wasmtime::Module;

use crate::masters::Masters;
use crate::sandbox::{Compiled, Kind, Program, Sandbox};

/// Why a module could not be made ready to run.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ModuleError {
    /// Could not get the bytes: the run may succeed on another executor.
    #[error("cannot fetch module {0}: {1}")]
    Fetch(String, String),
    #[error("module {0} cannot run here: {1}")]
    Invalid(String, String),
}

/// What loading a module came to: a program, or the engine's reason for refusing it (which
/// does not change, so it is kept like a program). A failed fetch is not kept.
pub type Loaded = Result<Arc<dyn Program>, ModuleError>;
type Slot = Arc<OnceCell<Loaded>>;

/// Refusals remembered, at most; past that they are all forgotten.
const MAX_REFUSED: usize = 10_000;

/// Compilations at once, at most. Compiling one module can take seconds and gigabytes
/// (Cranelift on a huge function), and each already spreads over every core: more at once
/// would add memory, not speed.
const MAX_COMPILES: usize = 2;

#[derive(Default)]
struct Slots {
    map: HashMap<(Digest, Kind), Slot>,
    /// How many slots hold a refusal.
    refused: usize,
}

pub struct ModuleCache {
    sandbox: Arc<Sandbox>,
    sources: PathBuf,
    compiled: PathBuf,
    engine_tag: String,
    slots: Mutex<Slots>,
    /// Compilations this process started (modules not loaded from the on-disk cache).
    compiled_count: AtomicU64,
    compiles: Arc<Semaphore>,
    /// Compilations running now, and the most there have been at once.
    compiling: Arc<Gauge>,
}

impl ModuleCache {
    pub fn open(sandbox: Arc<Sandbox>, data_dir: &Path) -> std::io::Result<Self> {
        let sources = data_dir.join("modules");
        let compiled = data_dir.join("compiled");
        std::fs::create_dir_all(&sources)?;
        std::fs::create_dir_all(&compiled)?;
        let mut h = std::collections::hash_map::DefaultHasher::new();
        sandbox.engine().precompile_compatibility_hash().hash(&mut h);
        let engine_tag = format!("{:016x}", h.finish());
        Ok(Self {
            sandbox,
            sources,
            compiled,
            engine_tag,
            slots: Mutex::new(Slots::default()),
            compiled_count: AtomicU64::new(0),
            compiles: Arc::new(Semaphore::new(MAX_COMPILES)),
            compiling: Arc::default(),
        })
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, Slots> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn len(&self) -> usize {
        self.slots().map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many compilations this process started (the other modules came from the disk
    /// cache, or were known not to compile).
    pub fn compiled_count(&self) -> u64 {
        self.compiled_count.load(Ordering::Relaxed)
    }

    /// The most compilations that have run at once.
    pub fn compiling_peak(&self) -> usize {
        self.compiling.peak.load(Ordering::Relaxed)
    }

    /// The program for `digest` if it is loaded (or known not to load) already.
    pub fn ready(&self, digest: &str, kind: Kind) -> Option<Loaded> {
        let parsed: Digest = digest.parse().ok()?;
        self.slots().map.get(&(parsed, kind)).and_then(|slot| slot.get().cloned())
    }

    /// The program for `digest`, fetching and compiling it the first time. Concurrent
    /// requests wait for one load; a refusal is kept like a program, while a failed fetch
    /// leaves the slot empty for the next request to try again.
    pub async fn get(&self, digest: &str, kind: Kind, masters: &Masters) -> Loaded {
        let parsed: Digest = digest.parse().map_err(|e| ModuleError::Invalid(digest.to_string(), format!("{e}")))?;
        let key = (parsed, kind);
        let slot = self.slots().map.entry(key).or_default().clone();
        let loaded = slot
            .get_or_try_init(|| async {
                match self.load(parsed, kind, masters).await {
                    Err(fetch @ ModuleError::Fetch(..)) => Err(fetch),
                    loaded => {
                        if loaded.is_err() {
                            self.count_refusal();
                        }
                        Ok(loaded)
                    }
                }
            })
            .await;
        match loaded {
            Ok(loaded) => loaded.clone(),
            Err(fetch) => {
                let mut slots = self.slots();
                if slots.map.get(&key).is_some_and(|s| Arc::ptr_eq(s, &slot) && !s.initialized()) {
                    slots.map.remove(&key);
                }
                Err(fetch)
            }
        }
    }

    /// Notes one more refused module, forgetting every refusal once there are too many.
    fn count_refusal(&self) {
        let mut slots = self.slots();
        slots.refused += 1;
        if slots.refused > MAX_REFUSED {
            slots.map.retain(|_, s| !matches!(s.get(), Some(Err(_))));
            slots.refused = 1;
        }
    }

    async fn load(&self, digest: Digest, kind: Kind, masters: &Masters) -> Result<Arc<dyn Program>, ModuleError> {
        let name = digest.to_string();
        let invalid = |e: String| ModuleError::Invalid(name.clone(), e);
        if let Some(compiled) = self.load_compiled(&digest).await {
            return self.sandbox.link(kind, &compiled).map_err(|e| invalid(format!("{e:#}")));
        }
        let source = self.sources.join(format!("{}.wasm", digest.hex()));
        let bytes = match tokio::fs::read(&source).await {
            Ok(b) if Digest::of(&b) == digest => b,
            _ => {
                let bytes = masters.fetch_module(&name).await.map_err(|e| ModuleError::Fetch(name.clone(), e))?;
                if Digest::of(&bytes) != digest {
                    return Err(ModuleError::Fetch(name.clone(), "the bytes received do not match the digest".into()));
                }
                if let Err(e) = write_atomically(&source, &bytes).await {
                    tracing::warn!(module = %name, error = %e, "cannot cache module");
                }
                bytes
            }
        };
        let permit =
            self.compiles.clone().acquire_owned().await.map_err(|e| ModuleError::Fetch(name.clone(), e.to_string()))?;
        let sandbox = self.sandbox.clone();
        let started = std::time::Instant::now();
        self.compiled_count.fetch_add(1, Ordering::Relaxed);
        let gauge = self.compiling.clone();
        // The permit and the count go with the compilation, even if this wait is dropped.
        let compiled = tokio::task::spawn_blocking(move || {
            gauge.enter();
            let compiled = sandbox.compile(&bytes);
            gauge.leave();
            drop(permit);
            compiled
        })
        .await;
        let compiled = compiled.map_err(|e| invalid(e.to_string()))?.map_err(|e| invalid(format!("{e:#}")))?;
        tracing::info!(module = %name, ms = started.elapsed().as_millis(), "compiled module");
        let serialized = match &compiled {
            Compiled::Component(c) => c.serialize(),
            Compiled::Module(m) => m.serialize(),
        };
        match serialized {
            Ok(bytes) => {
                if let Err(e) = write_atomically(&self.compiled_path(&digest, &compiled), &bytes).await {
                    tracing::warn!(module = %name, error = %e, "cannot cache compiled module");
                }
            }
            Err(e) => {
                tracing::warn!(module = %name, error = %e, "cannot serialize compiled module")
            }
        }
        self.sandbox.link(kind, &compiled).map_err(|e| invalid(format!("{e:#}")))
    }

    fn compiled_path(&self, digest: &Digest, compiled: &Compiled) -> PathBuf {
        let form = match compiled {
            Compiled::Component(_) => "component",
            Compiled::Module(_) => "module",
        };
        self.compiled.join(format!("{}.{}.{form}.cwasm", digest.hex(), self.engine_tag))
    }

    /// A previously compiled artefact of this engine, if one is on disk and loads.
    async fn load_compiled(&self, digest: &Digest) -> Option<Compiled> {
        let base = format!("{}.{}", digest.hex(), self.engine_tag);
        for form in ["component", "module"] {
            let path = self.compiled.join(format!("{base}.{form}.cwasm"));
            if !path.is_file() {
                continue;
            }
            let engine = self.sandbox.engine().clone();
            let loaded = tokio::task::spawn_blocking(move || deserialize(&engine, &path, form)).await.ok()?;
            match loaded {
                Ok(c) => return Some(c),
                Err(e) => {
                    tracing::warn!(module = %digest, error = %e, "ignoring unusable compiled artefact")
                }
            }
        }
        None
    }
}

/// How many compilations run now, and the most that have at once.
#[derive(Default)]
struct Gauge {
    now: AtomicUsize,
    peak: AtomicUsize,
}

impl Gauge {
    fn enter(&self) {
        let now = self.now.fetch_add(1, Ordering::Relaxed) + 1;
        self.peak.fetch_max(now, Ordering::Relaxed);
    }

    fn leave(&self) {
        self.now.fetch_sub(1, Ordering::Relaxed);
    }
}

#[allow(unsafe_code)]
fn deserialize(engine: &wasmtime::Engine, path: &Path, form: &str) -> wasmtime::Result<Compiled> {
    // SAFETY: these files are written only by `ModuleCache::load` from `serialize()` of this
    // engine's own compilation, into the executor's private data dir, and their names carry
    // the engine's compatibility hash; wasmtime also checks the artefact's header.
    unsafe {
        if form == "component" {
            Component::deserialize_file(engine, path).map(Compiled::Component)
        } else {
            Module::deserialize_file(engine, path).map(Compiled::Module)
        }
    }
}

async fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    tokio::fs::write(&tmp, bytes).await?;
    tokio::fs::rename(&tmp, path).await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::sandbox::Settings;

    /// A command module whose one function takes a while to compile; `n` makes it unique.
    fn slow_to_compile(n: u32) -> Vec<u8> {
        let body = "local.get 0 i32.const 7 i32.mul local.get 1 i32.add local.set 1\n".repeat(20_000);
        wat::parse_str(format!(
            r#"(module (memory (export "memory") 1)
                 (func (export "_start") (local i32 i32) {body} (drop (i32.const {n}))))"#
        ))
        .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn no_more_than_max_compiles_compile_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let settings = Settings { default_fuel: 1_000_000, max_output: 1024, max_stderr: 1024 };
        let sandbox = Arc::new(Sandbox::new(8, settings).unwrap());
        let cache = Arc::new(ModuleCache::open(sandbox, dir.path()).unwrap());
        // The sources are on disk already: nothing is fetched from a master.
        let masters = Arc::new(Masters::new(vec![], Default::default()));
        let mut digests = Vec::new();
        for n in 0..6 {
            let bytes = slow_to_compile(n);
            let digest = Digest::of(&bytes);
            std::fs::write(dir.path().join("modules").join(format!("{}.wasm", digest.hex())), &bytes).unwrap();
            digests.push(digest.to_string());
        }
        let runs: Vec<_> = digests
            .into_iter()
            .map(|d| {
                let (cache, masters) = (cache.clone(), masters.clone());
                tokio::spawn(async move { cache.get(&d, Kind::Command, &masters).await.map(|_| ()) })
            })
            .collect();
        for r in runs {
            r.await.unwrap().unwrap();
        }
        assert_eq!(cache.compiled_count(), 6);
        assert_eq!(cache.compiling_peak(), MAX_COMPILES, "six modules at once, compiled two at a time");
    }
}
