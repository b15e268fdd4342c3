//! Module records: what was uploaded, by digest.

use serde::{Deserialize, Serialize};
use wasmgrid_common::Digest;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ModuleKind {
    /// A component exporting the task world's `run`.
    Component,
    /// A WASI command program (preview1 `_start` module or `wasi:cli/run` component).
    Command,
}

impl ModuleKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Component => "component",
            Self::Command => "command",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModuleMeta {
    pub digest: Digest,
    pub size: u64,
    pub kind: ModuleKind,
    pub created_at_ms: i64,
}
