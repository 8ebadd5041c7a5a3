//! The figures of BENCHMARKS.md, each a ratio to its floor measured in one run.
//!
//! `cargo bench --bench figures -- [SCENARIO...]` runs the named scenarios at full size (all
//! of them without a name); `cargo test` runs every scenario cut down to a smoke size, so the
//! harness itself is tested on every CI run and cannot rot. Results are printed and written as
//! JSON to `target/benchmarks/`.

mod support;

use support::report::{Report, machine};

/// A scenario: given whether this is a smoke run, its report.
type Scenario = fn(bool) -> Report;

const SCENARIOS: &[(&str, Scenario)] = &[
    ("pipeline", support::inprocess::pipeline),
    ("read_path", support::inprocess::read_path),
    ("quota", support::e2e::quota),
    ("full_sync", support::e2e::full_sync),
    ("many_mailboxes", support::e2e::many),
    ("shared_first_sync", support::e2e::shared_first_sync),
    ("idle", support::e2e::idle),
    ("shared_idle", support::e2e::shared_idle),
    ("latency", support::e2e::latency),
    ("push_latency", support::e2e::push_latency),
    ("push_drops", support::e2e::push_drops),
    ("push_idle", support::e2e::push_idle),
    ("failover", support::e2e::failover),
];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `cargo bench` passes `--bench`; `cargo test` does not.
    let smoke = !args.iter().any(|arg| arg == "--bench");
    let wanted: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|arg| !arg.starts_with('-'))
        .collect();
    for name in &wanted {
        if !SCENARIOS.iter().any(|(known, _)| known == name) {
            let names: Vec<&str> = SCENARIOS.iter().map(|(name, _)| *name).collect();
            eprintln!("unknown scenario {name:?}; known: {}", names.join(", "));
            std::process::exit(2);
        }
    }
    println!("machine: {}", machine());
    for (name, scenario) in SCENARIOS {
        if wanted.is_empty() || wanted.contains(name) {
            scenario(smoke).publish();
        }
    }
}
