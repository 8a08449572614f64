//! Percentiles within a run, and min/median/max across runs.

use std::fmt::Write as _;
use std::time::Duration;

/// Latencies measured in one run.
#[derive(Debug, Default)]
pub(crate) struct Samples(Vec<Duration>);

impl Samples {
    pub(crate) fn push(&mut self, d: Duration) {
        self.0.push(d);
    }

    pub(crate) fn extend(&mut self, other: Self) {
        self.0.extend(other.0);
    }

    /// The `q` quantile (0..=1), nearest rank, in microseconds.
    pub(crate) fn quantile_us(&mut self, q: f64) -> f64 {
        if self.0.is_empty() {
            return f64::NAN;
        }
        self.0.sort_unstable();
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        let rank = ((q * self.0.len() as f64).ceil() as usize).clamp(1, self.0.len());
        self.0[rank - 1].as_secs_f64() * 1e6
    }
}

/// One figure over several runs.
#[derive(Debug, Clone)]
pub(crate) struct Figure {
    pub(crate) name: String,
    pub(crate) unit: &'static str,
    pub(crate) values: Vec<f64>,
    /// The goal, in words (`< 100`), and whether the median meets it.
    pub(crate) goal: Option<(String, bool)>,
}

impl Figure {
    pub(crate) fn new(name: impl Into<String>, unit: &'static str) -> Self {
        Self {
            name: name.into(),
            unit,
            values: Vec::new(),
            goal: None,
        }
    }

    /// The goal is that the median stays below `limit`.
    pub(crate) fn at_most(mut self, limit: f64) -> Self {
        let met = self.median() <= limit;
        self.goal = Some((format!("≤ {}", number(limit)), met));
        self
    }

    /// The goal is that the median reaches `limit`.
    pub(crate) fn at_least(mut self, limit: f64) -> Self {
        let met = self.median() >= limit;
        self.goal = Some((format!("≥ {}", number(limit)), met));
        self
    }

    pub(crate) fn median(&self) -> f64 {
        let mut sorted = self.values.clone();
        sorted.sort_by(f64::total_cmp);
        match sorted.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => sorted[n / 2],
            n => f64::midpoint(sorted[n / 2 - 1], sorted[n / 2]),
        }
    }

    fn min(&self) -> f64 {
        self.values.iter().copied().fold(f64::INFINITY, f64::min)
    }

    fn max(&self) -> f64 {
        self.values
            .iter()
            .copied()
            .fold(f64::NEG_INFINITY, f64::max)
    }
}

/// A titled table of figures.
#[derive(Debug)]
pub(crate) struct Section {
    pub(crate) title: String,
    pub(crate) figures: Vec<Figure>,
    pub(crate) notes: Vec<String>,
}

impl Section {
    pub(crate) fn new(title: impl Into<String>) -> Self {
        Self {
            title: title.into(),
            figures: Vec::new(),
            notes: Vec::new(),
        }
    }

    pub(crate) fn markdown(&self, runs: usize) -> String {
        let mut out = format!("### {}\n\n", self.title);
        let _ = writeln!(
            out,
            "| figure | unit | min | median | max | goal | met |\n|---|---|---:|---:|---:|---|---|"
        );
        for f in &self.figures {
            let (goal, met) = f.goal.as_ref().map_or(("", ""), |(g, met)| {
                (g.as_str(), if *met { "yes" } else { "**no**" })
            });
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {goal} | {met} |",
                f.name,
                f.unit,
                number(f.min()),
                number(f.median()),
                number(f.max()),
            );
        }
        let _ = writeln!(out, "\n{runs} run(s) per figure.");
        for note in &self.notes {
            let _ = writeln!(out, "{note}");
        }
        out.push('\n');
        out
    }
}

/// A number with sensible precision.
pub(crate) fn number(x: f64) -> String {
    if !x.is_finite() {
        return "n/a".to_string();
    }
    let a = x.abs();
    if a >= 1000.0 {
        format!("{x:.0}")
    } else if a >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}
