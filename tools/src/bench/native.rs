//! The `sha256` and `fib` examples compiled natively from the same C source
//! (`bench/native.c`), for the wasm-versus-native comparison.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::Context;

pub struct Native {
    pub compiler: String,
    pub sha256: Duration,
    pub fib: Duration,
}

/// The native harness, built.
pub struct Harness {
    pub compiler: String,
    exe: PathBuf,
}

/// Builds the native harness in `scratch`. `None` when no C compiler is installed.
pub fn build(repo: &Path, scratch: &Path) -> anyhow::Result<Option<Harness>> {
    let Some(compiler) = ["clang-16", "clang", "cc"]
        .into_iter()
        .find(|c| Command::new(c).arg("--version").output().is_ok_and(|o| o.status.success()))
    else {
        return Ok(None);
    };
    let exe = scratch.join("native-bench");
    let status = Command::new(compiler)
        .args(["-O2", "-o"])
        .arg(&exe)
        .arg(repo.join("bench/native.c"))
        .status()
        .with_context(|| format!("running {compiler}"))?;
    anyhow::ensure!(status.success(), "{compiler} could not build bench/native.c");
    Ok(Some(Harness { compiler: compiler.to_string(), exe }))
}

impl Harness {
    /// One timed run each of sha256 over `sha_bytes` and of fib(`fib_n`), like one round of
    /// the wasm calls.
    pub fn measure(&self, sha_bytes: usize, fib_n: u32) -> anyhow::Result<Native> {
        let out = Command::new(&self.exe).args([sha_bytes.to_string(), fib_n.to_string(), "1".into()]).output()?;
        anyhow::ensure!(out.status.success(), "the native benchmark failed");
        let text = String::from_utf8_lossy(&out.stdout);
        let field = |name: &str| -> anyhow::Result<Duration> {
            let ns = text
                .lines()
                .find_map(|l| l.strip_prefix(name)?.trim().parse::<u64>().ok())
                .with_context(|| format!("no {name} in the native benchmark's output"))?;
            Ok(Duration::from_nanos(ns))
        };
        Ok(Native { compiler: self.compiler.clone(), sha256: field("sha256_ns")?, fib: field("fib_ns")? })
    }
}
