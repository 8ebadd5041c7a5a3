//! How a benchmark reports: each figure with its unit and, where the issue sets one, its
//! target; printed as a table and written as JSON under `target/benchmarks/`, so
//! BENCHMARKS.md can be checked against a run.

use std::path::PathBuf;

#[derive(Debug, Clone, Copy, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    AtMost(f64),
    AtLeast(f64),
}

impl Target {
    fn met(self, value: f64) -> bool {
        match self {
            Target::AtMost(limit) => value <= limit,
            Target::AtLeast(limit) => value >= limit,
        }
    }

    fn describe(self) -> String {
        match self {
            Target::AtMost(limit) => format!("≤ {}", trim(limit)),
            Target::AtLeast(limit) => format!("≥ {}", trim(limit)),
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Figure {
    pub name: String,
    pub value: f64,
    pub unit: String,
    pub target: Option<Target>,
    pub met: Option<bool>,
}

/// The figures of one scenario, with the facts needed to read them.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Report {
    pub scenario: String,
    pub smoke: bool,
    pub figures: Vec<Figure>,
    /// What was measured on: sizes, counts, settings.
    pub facts: Vec<(String, String)>,
}

impl Report {
    pub fn new(scenario: &str, smoke: bool) -> Report {
        Report {
            scenario: scenario.to_string(),
            smoke,
            ..Report::default()
        }
    }

    /// A figure and its target; a smoke run's figures say nothing about a target, so they
    /// are reported without one.
    pub fn figure(&mut self, name: &str, value: f64, unit: &str, target: Option<Target>) {
        let target = target.filter(|_| !self.smoke);
        self.figures.push(Figure {
            name: name.to_string(),
            value,
            unit: unit.to_string(),
            target,
            met: target.map(|target| target.met(value)),
        });
    }

    pub fn fact(&mut self, name: &str, value: impl ToString) {
        self.facts.push((name.to_string(), value.to_string()));
    }

    pub fn value(&self, name: &str) -> f64 {
        self.figures
            .iter()
            .find(|figure| figure.name == name)
            .unwrap_or_else(|| panic!("no figure {name}"))
            .value
    }

    /// Prints the table and writes `target/benchmarks/<scenario>.json`.
    pub fn publish(&self) {
        println!(
            "\n== {}{}",
            self.scenario,
            if self.smoke {
                " (smoke run: sizes cut down, figures not meaningful)"
            } else {
                ""
            }
        );
        for (name, value) in &self.facts {
            println!("   {name}: {value}");
        }
        for figure in &self.figures {
            let verdict = match (figure.target, figure.met) {
                (Some(target), Some(true)) => format!("target {} met", target.describe()),
                (Some(target), _) => format!("target {} NOT MET", target.describe()),
                (None, _) => String::new(),
            };
            println!(
                "   {:<48} {:>12} {:<10} {verdict}",
                figure.name,
                trim(figure.value),
                figure.unit
            );
        }
        let dir = results_dir();
        if std::fs::create_dir_all(&dir).is_ok() {
            let name = if self.smoke {
                format!("{}.smoke.json", self.scenario)
            } else {
                format!("{}.json", self.scenario)
            };
            let _ = std::fs::write(
                dir.join(name),
                serde_json::to_vec_pretty(self).expect("a report serializes"),
            );
        }
    }
}

pub fn results_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("benchmarks")
}

/// A number with as many digits as it deserves.
pub fn trim(value: f64) -> String {
    if value == 0.0 {
        "0".to_string()
    } else if value.abs() >= 100.0 {
        format!("{value:.0}")
    } else if value.abs() >= 10.0 {
        format!("{value:.1}")
    } else if value.abs() >= 1.0 {
        format!("{value:.2}")
    } else {
        format!("{value:.3}")
    }
}

/// The `q`-quantile (0..=1) of `samples`, nearest rank.
pub fn quantile(samples: &mut [f64], q: f64) -> f64 {
    samples.sort_by(f64::total_cmp);
    let rank = ((samples.len() as f64) * q).ceil() as usize;
    samples[rank.clamp(1, samples.len()) - 1]
}

/// The machine the figures come from, for BENCHMARKS.md.
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|line| line.strip_prefix("model name"))
        .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_else(|| "unknown cpu".to_string());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))
        .and_then(|rest| rest.trim().trim_end_matches(" kB").parse::<u64>().ok())
        .map_or("?".to_string(), |kb| format!("{} GiB", kb / 1024 / 1024));
    format!("{model}, {cores} cores, {memory}")
}
