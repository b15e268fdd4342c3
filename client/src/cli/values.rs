//! Parsers for flag values clap does not know: a malformed value is a usage error (exit 2,
//! with the usage text), like any other.

use std::fmt::Display;
use std::str::FromStr;

use wasmgrid_common::Dur;
use wasmgrid_proto as pb;

/// A limit given on the command line: 0 is refused, since leaving the flag out already
/// means the master's or executor's default.
pub fn more_than_zero<T>(s: &str) -> Result<T, String>
where
    T: FromStr + Default + PartialEq,
    T::Err: Display,
{
    match s.parse::<T>() {
        Ok(v) if v == T::default() => Err("must be more than 0 (leave the flag out for the default)".into()),
        Ok(v) => Ok(v),
        Err(e) => Err(e.to_string()),
    }
}

/// A timeout: the master keeps whole milliseconds, so less than one is refused too.
pub fn timeout(s: &str) -> Result<Dur, String> {
    let d: Dur = more_than_zero(s)?;
    if d.as_millis() == 0 {
        return Err("must be at least 1ms (leave the flag out for the default)".into());
    }
    Ok(d)
}

/// `KEY=VALUE`, split at the first `=` (the value may hold more).
pub fn env_var(s: &str) -> Result<pb::EnvVar, String> {
    match s.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok(pb::EnvVar { key: key.into(), value: value.into() }),
        _ => Err(format!("`{s}` is not KEY=VALUE")),
    }
}

#[cfg(test)]
mod tests {
    use wasmgrid_common::Size;

    use super::*;

    #[test]
    fn zero_limits_are_refused_and_others_parsed() {
        assert!(more_than_zero::<u64>("0").is_err());
        assert!(more_than_zero::<Size>("0MiB").is_err());
        assert!(more_than_zero::<Dur>("0s").is_err());
        assert_eq!(more_than_zero::<u64>("7"), Ok(7));
        assert_eq!(more_than_zero::<Size>("1KiB"), Ok(Size(1024)));
        assert!(more_than_zero::<u32>("x").is_err());
        assert!(timeout("500us").is_err() && timeout("1ns").is_err());
        assert_eq!(timeout("1ms").map(|d| d.as_millis()), Ok(1));
    }

    #[test]
    fn env_vars_split_at_the_first_equals_sign() {
        assert_eq!(env_var("A=b=c").map(|e| (e.key, e.value)), Ok(("A".into(), "b=c".into())));
        assert_eq!(env_var("A=").map(|e| e.value), Ok(String::new()));
        assert!(env_var("NOEQUALS").is_err());
        assert!(env_var("=x").is_err());
    }
}
