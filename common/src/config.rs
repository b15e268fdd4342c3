//! Config files and flags: every flag can also come from a TOML file, with the same name in
//! kebab-case; a flag given on the command line wins over the file.
//!
//! The binaries describe their options once, as one struct of `Option`s that derives both
//! `clap::Args` and `serde`. Loading turns the flags into a TOML table (unset flags vanish),
//! lays it over the file's table, and deserializes the result: unknown keys and malformed
//! values are refused by the same code, with the key named.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}")]
    Read { path: String, source: std::io::Error },
    #[error("invalid config file {path}: {message}")]
    Parse { path: String, message: String },
    #[error("invalid option: {0}")]
    Flags(String),
}

/// Merges `flags` over the TOML file at `path` (if any) into one `T`.
pub fn load<T: Serialize + DeserializeOwned>(flags: &T, path: Option<&Path>) -> Result<T, ConfigError> {
    let mut table = match path {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|source| ConfigError::Read { path: path.display().to_string(), source })?;
            // Deserializing the file alone first gives errors that point at the file's lines.
            let parse_err = |e: toml::de::Error| ConfigError::Parse {
                path: path.display().to_string(),
                message: locate(&text, &e),
            };
            let _: T = toml::from_str(&text).map_err(parse_err)?;
            toml::from_str::<toml::Table>(&text).map_err(parse_err)?
        }
        None => toml::Table::new(),
    };
    let overrides = toml::Table::try_from(flags).map_err(|e| ConfigError::Flags(e.to_string()))?;
    table.extend(overrides);
    T::deserialize(table).map_err(|e| ConfigError::Flags(e.to_string()))
}

/// One line: `line N, key K: what is wrong`.
fn locate(text: &str, e: &toml::de::Error) -> String {
    let message = e.message().trim().replace('\n', " ");
    let Some(span) = e.span() else { return message };
    let start = span.start.min(text.len());
    let line_no = text[..start].matches('\n').count() + 1;
    let line = text.lines().nth(line_no - 1).unwrap_or_default();
    match line.split_once('=') {
        Some((key, _)) if !message.contains(key.trim()) => format!("line {line_no}, key `{}`: {message}", key.trim()),
        _ => format!("line {line_no}: {message}"),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use serde::Deserialize;

    use super::*;
    use crate::Size;

    #[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
    #[serde(rename_all = "kebab-case", deny_unknown_fields)]
    struct Opts {
        name: Option<String>,
        max_module_size: Option<Size>,
        slots: Option<u32>,
    }

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f
    }

    #[test]
    fn flags_win_over_the_file() {
        let f = file("name = \"from-file\"\nmax-module-size = \"8MiB\"\n");
        let flags = Opts { name: Some("from-flag".into()), ..Default::default() };
        let merged = load(&flags, Some(f.path())).unwrap();
        assert_eq!(merged.name.as_deref(), Some("from-flag"));
        assert_eq!(merged.max_module_size, Some(Size::mib(8)));
        assert_eq!(merged.slots, None);
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_key() {
        let f = file("nmae = \"typo\"\n");
        let err = load(&Opts::default(), Some(f.path())).unwrap_err().to_string();
        assert!(err.contains("nmae"), "{err}");
        let f = file("max-module-size = \"lots\"\n");
        let err = load(&Opts::default(), Some(f.path())).unwrap_err().to_string();
        assert!(err.contains("max-module-size") && err.contains("lots"), "{err}");
        let f = file("slots = \"two\"\n");
        let err = load(&Opts::default(), Some(f.path())).unwrap_err().to_string();
        assert!(err.contains("slots"), "{err}");
    }

    #[test]
    fn missing_file_is_an_error() {
        let err = load(&Opts::default(), Some(Path::new("/nonexistent/x.toml"))).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/x.toml"));
    }
}
