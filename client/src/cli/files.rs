//! Reading a module or a task's input that the user names (a file, `-` for stdin, a pipe, a
//! device) without holding more than the masters take: `--input-file /dev/zero` is an
//! error naming the limit, not the client killed for want of memory.

use std::path::Path;

use anyhow::{bail, Context};
use tokio::io::{AsyncRead, AsyncReadExt};
use wasmgrid_common::Size;

use crate::Client;

/// What is read, and so which of the masters' limits bounds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contents {
    Module,
    Input,
}

impl Contents {
    /// The masters' default limit: a regular file this small is read without asking them.
    fn default_limit(self) -> u64 {
        match self {
            Self::Module => Size::mib(64).bytes(),
            Self::Input => Size::mib(16).bytes(),
        }
    }

    fn key(self) -> &'static str {
        match self {
            Self::Module => "max-module-size",
            Self::Input => "max-input-size",
        }
    }

    /// The limit of the masters that answer, or the most any master could take.
    async fn limit(self, client: &Client) -> anyhow::Result<u64> {
        let status = client.cluster_status().await?;
        let said = match self {
            Self::Module => status.max_module_size,
            Self::Input => status.max_input_size,
        };
        // Masters that do not say: no master takes more than half its largest message as
        // input; for modules, a bound that still fits in a client's memory.
        Ok(match (said, self) {
            (0, Self::Input) => (wasmgrid_proto::MAX_MESSAGE_SIZE / 2) as u64,
            (0, Self::Module) => 1 << 30,
            (n, _) => n,
        })
    }
}

/// The bytes of `path` (`-`: stdin), refused with the masters' limit named as soon as they
/// pass it.
pub async fn read(client: &Client, path: &Path, contents: Contents) -> anyhow::Result<Vec<u8>> {
    let name = if path == Path::new("-") { "stdin".to_string() } else { path.display().to_string() };
    let too_large =
        |limit: u64| anyhow::anyhow!("{name} is larger than the masters' {} ({})", contents.key(), Size(limit).human());
    if path == Path::new("-") {
        let limit = contents.limit(client).await?;
        return read_at_most(tokio::io::stdin(), limit)
            .await
            .context("cannot read stdin")?
            .ok_or_else(|| too_large(limit));
    }
    let file = tokio::fs::File::open(path).await.with_context(|| format!("cannot read {name}"))?;
    let meta = file.metadata().await.with_context(|| format!("cannot read {name}"))?;
    if meta.is_dir() {
        bail!("cannot read {name}: it is a directory");
    }
    // A regular file says its size: within the default limit it is read at once, beyond the
    // masters' limit it is refused before it is read. Pipes and devices are read up to it.
    let small = meta.is_file() && meta.len() <= contents.default_limit();
    let limit = if small { contents.default_limit() } else { contents.limit(client).await? };
    if meta.is_file() && meta.len() > limit {
        return Err(too_large(limit));
    }
    match read_at_most(file, limit).await.with_context(|| format!("cannot read {name}"))? {
        Some(bytes) => Ok(bytes),
        None if small => bail!("{name} grew past {} while it was read", Size(limit).human()),
        None => Err(too_large(limit)),
    }
}

/// All of `reader` if it holds at most `limit` bytes; `None` if it holds more.
async fn read_at_most(reader: impl AsyncRead + Unpin, limit: u64) -> std::io::Result<Option<Vec<u8>>> {
    let mut bytes = Vec::new();
    reader.take(limit.saturating_add(1)).read_to_end(&mut bytes).await?;
    Ok((bytes.len() as u64 <= limit).then_some(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_up_to_the_limit_and_no_further() {
        let data = [7u8; 100];
        assert_eq!(read_at_most(&data[..], 100).await.unwrap().unwrap().len(), 100);
        assert_eq!(read_at_most(&data[..], 99).await.unwrap(), None);
        assert_eq!(read_at_most(&data[..0], 0).await.unwrap().unwrap().len(), 0);
        // An endless source stops one byte past the limit.
        let endless = tokio::io::repeat(0);
        assert_eq!(read_at_most(endless, 1 << 20).await.unwrap(), None);
    }
}
