//! `module upload FILE` and `module list`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};
use wasmgrid_proto as pb;

use super::files::{self, Contents};
use super::render::{module_json, module_kind, print_json};
use super::Output;
use crate::Client;

#[derive(Debug, Subcommand)]
pub enum ModuleCommand {
    /// Upload a .wasm module; prints its digest.
    Upload { file: PathBuf },
    /// List uploaded modules.
    List,
}

pub async fn run(client: &Client, cmd: ModuleCommand, output: Output) -> anyhow::Result<i32> {
    match cmd {
        ModuleCommand::Upload { file } => {
            let m = upload(client, &file).await?;
            match output {
                Output::Json => print_json(&module_json(&m)),
                Output::Text => out!("{}", m.digest),
            }
        }
        ModuleCommand::List => {
            let modules = client.list_modules().await?;
            match output {
                Output::Json => print_json(&modules.iter().map(module_json).collect()),
                Output::Text => {
                    out!("{:<71}  {:>10}  KIND", "DIGEST", "SIZE");
                    for m in &modules {
                        out!("{:<71}  {:>10}  {}", m.digest, m.size, module_kind(m.kind()));
                    }
                }
            }
        }
    }
    Ok(0)
}

/// Uploads `path`, with a progress bar for large files on a terminal.
pub async fn upload(client: &Client, path: &Path) -> anyhow::Result<pb::Module> {
    let bytes = files::read(client, path, Contents::Module).await?;
    let bar = ProgressBar::new(bytes.len() as u64);
    if bytes.len() > 4 * 1024 * 1024 {
        bar.set_style(
            ProgressStyle::with_template("uploading {bar:30} {bytes}/{total_bytes} {bytes_per_sec}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
    } else {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let shown = bar.clone();
    let result = client.upload_module(&bytes, std::sync::Arc::new(move |sent| shown.set_position(sent))).await;
    bar.finish_and_clear();
    result.with_context(|| format!("upload of {} refused", path.display()))
}
