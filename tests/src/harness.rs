//! The scenario harness the `harness = false` test binaries share
//! (`fixtures`, `uptime`, …): libtest-like filtering, one line per
//! scenario, and the `<area>: N passed, M failed` summary.
//!
//! `cargo test --test AREA -- SUBSTRING...` runs the scenarios whose name
//! contains any substring (`--exact`: equals one); `--list` lists them.
//! Other libtest flags are accepted and ignored.

use std::{
    panic::{AssertUnwindSafe, catch_unwind},
    process::ExitCode,
    time::Instant,
};

use anyhow::Result;

pub struct Args {
    pub filters: Vec<String>,
    pub exact: bool,
    pub list: bool,
}

impl Args {
    pub fn from_env() -> Self {
        let mut a = Self {
            filters: vec![],
            exact: false,
            list: false,
        };
        for arg in std::env::args().skip(1) {
            match arg.as_str() {
                "--exact" => a.exact = true,
                "--list" => a.list = true,
                s if s.starts_with('-') => {}
                s => a.filters.push(s.to_string()),
            }
        }
        a
    }

    pub fn selects(&self, label: &str) -> bool {
        self.filters.is_empty()
            || self.filters.iter().any(|f| {
                if self.exact {
                    label == f
                } else {
                    label.contains(f.as_str())
                }
            })
    }
}

/// A named scenario over a shared environment `E`.
pub struct Scenario<E> {
    /// What it proves, as a sentence in snake case.
    pub name: &'static str,
    pub run: fn(&mut E) -> Result<()>,
}

/// Runs the selected scenarios in order over one environment, built only
/// if any is selected; a panic fails its scenario, not the run. Prints
/// one line per scenario and the `<area>:` summary.
pub fn run<E>(area: &str, scenarios: &[Scenario<E>], env: impl FnOnce() -> Result<E>) -> ExitCode {
    let args = Args::from_env();
    let chosen: Vec<&Scenario<E>> = scenarios.iter().filter(|s| args.selects(s.name)).collect();
    if args.list {
        for s in &chosen {
            println!("{}: test", s.name);
        }
        return ExitCode::SUCCESS;
    }
    let (mut passed, mut failed) = (0, 0);
    if !chosen.is_empty() {
        let mut env = match env() {
            Ok(e) => e,
            Err(e) => {
                println!("{area}: setup failed: {e:#}");
                return ExitCode::FAILURE;
            }
        };
        for s in chosen {
            let t0 = Instant::now();
            let outcome = catch_unwind(AssertUnwindSafe(|| (s.run)(&mut env)));
            let took = t0.elapsed().as_secs_f64();
            match outcome {
                Ok(Ok(())) => {
                    println!("ok   {} ({took:.1}s)", s.name);
                    passed += 1;
                }
                Ok(Err(e)) => {
                    println!("FAIL {} ({took:.1}s): {e:#}", s.name);
                    failed += 1;
                }
                Err(_) => {
                    println!("FAIL {} ({took:.1}s): panicked", s.name);
                    failed += 1;
                }
            }
        }
    }
    println!("{area}: {passed} passed, {failed} failed");
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
