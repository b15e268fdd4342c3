//! A bounded in-memory pipe for a guest's stdout and stderr. Unlike wasmtime's
//! `MemoryOutputPipe` it never traps the guest: past its limit it drops bytes and remembers
//! that it did, and the caller decides (stderr is kept truncated; a command's stdout beyond
//! the output limit ends the run, at its next call into the host, as `output_too_large`).

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

#[derive(Clone)]
pub struct Capture {
    limit: usize,
    bytes: Arc<Mutex<Vec<u8>>>,
    /// Checked on every call into the host, so it is read without the lock.
    overflowed: Arc<AtomicBool>,
}

impl Capture {
    pub fn new(limit: usize) -> Self {
        Self { limit, bytes: Arc::default(), overflowed: Arc::default() }
    }

    fn push(&self, data: &[u8]) {
        let mut bytes = self.bytes.lock().unwrap_or_else(|p| p.into_inner());
        let room = self.limit.saturating_sub(bytes.len());
        if data.len() > room {
            self.overflowed.store(true, Ordering::Relaxed);
        }
        let n = data.len().min(room);
        bytes.extend_from_slice(&data[..n]);
    }

    /// Whether more was written than kept.
    pub fn overflowed(&self) -> bool {
        self.overflowed.load(Ordering::Relaxed)
    }

    /// The captured bytes, and whether more were written than kept.
    pub fn take(&self) -> (Vec<u8>, bool) {
        let bytes = std::mem::take(&mut *self.bytes.lock().unwrap_or_else(|p| p.into_inner()));
        (bytes, self.overflowed())
    }
}

impl IsTerminal for Capture {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for Capture {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for Capture {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for Capture {
    async fn ready(&mut self) {}
}

impl AsyncWrite for Capture {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_up_to_the_limit_and_remembers_the_rest() {
        let c = Capture::new(5);
        c.push(b"abc");
        c.push(b"def");
        assert!(c.overflowed());
        assert_eq!(c.take(), (b"abcde".to_vec(), true));
        let c = Capture::new(5);
        c.push(b"abcde");
        assert!(!c.overflowed());
        assert_eq!(c.take(), (b"abcde".to_vec(), false));
    }
}
