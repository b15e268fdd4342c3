//! Ray on the same machine and the same trivial task, through `bench/ray_bench.sh` (which
//! installs ray into a virtual environment of its own).

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::Context;

#[derive(Debug, serde::Deserialize)]
pub struct RayFigures {
    pub version: String,
    pub throughput: f64,
    pub sync_p50_ms: f64,
    pub sync_p99_ms: f64,
}

/// `Ok(None)` when ray cannot be installed here (the script says why on stderr).
pub fn run(repo: &Path, tasks: usize, sync_tasks: usize) -> anyhow::Result<Option<RayFigures>> {
    let out = Command::new("bash")
        .arg(repo.join("bench/ray_bench.sh"))
        .args(["--tasks", &tasks.to_string(), "--sync-tasks", &sync_tasks.to_string()])
        .stderr(Stdio::inherit())
        .output()
        .context("running bench/ray_bench.sh")?;
    if out.status.code() == Some(3) {
        return Ok(None);
    }
    anyhow::ensure!(out.status.success(), "bench/ray_bench.sh failed ({})", out.status);
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().rev().find(|l| l.starts_with('{')).context("no result line from ray_bench.py")?;
    Ok(Some(serde_json::from_str(line).context("reading ray_bench.py's result")?))
}
