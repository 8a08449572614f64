//! Percentiles within a run, min/median/max across runs, and the Markdown
//! they are reported in: a table of figures (each with its goal, if any)
//! and compact matrices of medians (setups by measures).

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

    pub(crate) fn len(&self) -> usize {
        self.0.len()
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
    /// The goal, in words (`< 100`), and whether the median meets it
    /// (`None`: it could not be measured).
    pub(crate) goal: Option<(String, Option<bool>)>,
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
        self.goal = Some((format!("≤ {}", number(limit)), Some(met)));
        self
    }

    /// The goal is that the median reaches `limit`.
    pub(crate) fn at_least(mut self, limit: f64) -> Self {
        let met = self.median() >= limit;
        self.goal = Some((format!("≥ {}", number(limit)), Some(met)));
        self
    }

    /// The goal is that the median stays below `limit`, described as `goal`.
    pub(crate) fn at_most_said(mut self, limit: f64, goal: impl Into<String>) -> Self {
        let met = self.median() <= limit;
        self.goal = Some((goal.into(), Some(met)));
        self
    }

    /// The goal is that the median reaches `limit`, described as `goal`.
    pub(crate) fn at_least_said(mut self, limit: f64, goal: impl Into<String>) -> Self {
        let met = self.median() >= limit;
        self.goal = Some((goal.into(), Some(met)));
        self
    }

    /// A figure that could not be measured, for the reason `why`.
    pub(crate) fn unmeasured(mut self, why: impl Into<String>) -> Self {
        self.values.clear();
        self.goal = Some((why.into(), None));
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

/// A compact table of medians: one row per setup, one column per measure.
#[derive(Debug)]
pub(crate) struct Matrix {
    /// The first column's heading, then each measure's (with its unit).
    pub(crate) columns: Vec<String>,
    /// Each row: its name, then one cell per measure.
    pub(crate) rows: Vec<(String, Vec<Cell>)>,
}

/// One cell of a [`Matrix`].
#[derive(Debug, Clone)]
pub(crate) enum Cell {
    /// Nothing to show.
    Empty,
    /// The median of these values.
    Median(Vec<f64>),
    /// Words instead of a number.
    Text(String),
}

impl Cell {
    fn markdown(&self) -> String {
        match self {
            Self::Empty => String::new(),
            Self::Median(values) => {
                let figure = Figure {
                    values: values.clone(),
                    ..Figure::new("", "")
                };
                number(figure.median())
            }
            Self::Text(text) => text.clone(),
        }
    }
}

impl Matrix {
    pub(crate) fn new(columns: &[&str]) -> Self {
        Self {
            columns: columns.iter().map(ToString::to_string).collect(),
            rows: Vec::new(),
        }
    }

    pub(crate) fn row(&mut self, name: impl Into<String>, cells: Vec<Cell>) {
        self.rows.push((name.into(), cells));
    }

    fn markdown(&self) -> String {
        let mut out = format!("| {} |\n|---|", self.columns.join(" | "));
        for _ in 1..self.columns.len() {
            out.push_str("---:|");
        }
        out.push('\n');
        for (name, cells) in &self.rows {
            let cells: Vec<String> = cells.iter().map(Cell::markdown).collect();
            let _ = writeln!(out, "| {name} | {} |", cells.join(" | "));
        }
        out
    }
}

/// A titled table of figures, and matrices of details.
#[derive(Debug)]
pub(crate) struct Section {
    pub(crate) title: String,
    pub(crate) figures: Vec<Figure>,
    pub(crate) matrices: Vec<Matrix>,
    pub(crate) notes: Vec<String>,
}

impl Section {
    pub(crate) fn new(title: impl Into<String>) -> Self {
        Self {
            title: title.into(),
            figures: Vec::new(),
            matrices: Vec::new(),
            notes: Vec::new(),
        }
    }

    pub(crate) fn markdown(&self, runs: usize) -> String {
        let mut out = format!("### {}\n\n", self.title);
        if !self.figures.is_empty() {
            let _ = writeln!(
                out,
                "| figure | unit | min | median | max | goal | met |\n|---|---|---:|---:|---:|---|---|"
            );
        }
        for f in &self.figures {
            let (goal, met) = f.goal.as_ref().map_or(("", ""), |(g, met)| {
                let met = match met {
                    Some(true) => "yes",
                    Some(false) => "**no**",
                    None => "n/a",
                };
                (g.as_str(), met)
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
        let judged: Vec<Option<bool>> = self
            .figures
            .iter()
            .filter_map(|f| f.goal.as_ref().map(|g| g.1))
            .collect();
        if judged.len() > 1 {
            let met = judged.iter().filter(|m| **m == Some(true)).count();
            let unknown = judged.iter().filter(|m| m.is_none()).count();
            let _ = write!(out, "\nGoals met: {met} of {}", judged.len());
            if unknown > 0 {
                let _ = write!(out, " ({unknown} could not be measured)");
            }
            out.push_str(".\n");
        }
        for matrix in &self.matrices {
            out.push('\n');
            out.push_str(&matrix.markdown());
        }
        if self.matrices.is_empty() {
            let _ = writeln!(out, "\n{runs} run(s) per figure.");
        } else {
            let _ = writeln!(
                out,
                "\n{runs} run(s) per figure; the tables of setups give the medians over the runs."
            );
        }
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
