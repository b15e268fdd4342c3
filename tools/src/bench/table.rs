//! The results table: one row per figure, with the target it is held against.

use std::fmt::Write as _;
use std::time::Duration;

pub struct Row {
    pub what: String,
    pub value: String,
    pub target: String,
    /// `Some(true)` met, `Some(false)` missed, `None` for figures without a target.
    pub met: Option<bool>,
}

#[derive(Default)]
pub struct Table {
    pub rows: Vec<Row>,
}

impl Table {
    pub fn add(&mut self, what: impl Into<String>, value: impl Into<String>) {
        self.rows.push(Row { what: what.into(), value: value.into(), target: String::new(), met: None });
    }

    pub fn check(&mut self, what: impl Into<String>, value: impl Into<String>, target: impl Into<String>, met: bool) {
        self.rows.push(Row { what: what.into(), value: value.into(), target: target.into(), met: Some(met) });
    }

    fn verdict(met: Option<bool>) -> &'static str {
        match met {
            Some(true) => "met",
            Some(false) => "MISSED",
            None => "",
        }
    }

    /// Aligned plain text, for the terminal.
    pub fn text(&self) -> String {
        let w0 = self.rows.iter().map(|r| r.what.len()).max().unwrap_or(0).max(6);
        let w1 = self.rows.iter().map(|r| r.value.len()).max().unwrap_or(0).max(5);
        let w2 = self.rows.iter().map(|r| r.target.len()).max().unwrap_or(0).max(6);
        let mut out = format!("{:<w0$}  {:>w1$}  {:<w2$}  RESULT\n", "FIGURE", "VALUE", "TARGET");
        for r in &self.rows {
            let _ = writeln!(out, "{:<w0$}  {:>w1$}  {:<w2$}  {}", r.what, r.value, r.target, Self::verdict(r.met));
        }
        out
    }

    /// A Markdown table, for bench/RESULTS.md.
    pub fn markdown(&self) -> String {
        let mut out = String::from("| figure | value | target | result |\n|---|---:|---|---|\n");
        for r in &self.rows {
            let _ = writeln!(out, "| {} | {} | {} | {} |", r.what, r.value, r.target, Self::verdict(r.met));
        }
        out
    }
}

/// The `p` quantile (0..=1) of `samples`, sorting them.
pub fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    samples.sort_unstable();
    let i = ((samples.len() as f64 * p).ceil() as usize).clamp(1, samples.len()) - 1;
    samples[i]
}

pub fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

pub fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

pub fn rate(per_second: f64) -> String {
    format!("{per_second:.0}/s")
}
