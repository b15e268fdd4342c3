//! How the binaries print an error that ends them: the error and its causes, each once.

use std::error::Error;

/// `error: cause: cause`, leaving out a cause whose message the text before already ends
/// with (an error type that prints its source, given context, would say it twice).
pub fn describe(e: &(dyn Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let message = c.to_string();
        if !out.ends_with(&message) {
            out.push_str(": ");
            out.push_str(&message);
        }
        cause = c.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("storage: {0}")]
    struct Storage(#[from] std::io::Error);

    #[derive(Debug, thiserror::Error)]
    #[error("cannot open the data dir")]
    struct Open(#[source] Storage);

    #[test]
    fn each_cause_is_said_once() {
        let io = std::io::Error::other("database already open");
        let e = Open(Storage(io));
        assert_eq!(describe(&e), "cannot open the data dir: storage: database already open");
    }
}
