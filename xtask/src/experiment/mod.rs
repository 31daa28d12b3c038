//! The study's experiment (`make demo`, `make bench`): a target VM running
//! the bench suite beside 0..N dummy VMs, under every grouping policy.
//!
//! An experiment file (`qemu-test/experiments/*.toml`) is expanded into
//! scenario files (one per policy, dummy kind, dummy count and repetition;
//! the solo run, 0 dummies, is shared by the dummy kinds), which run several
//! per boot. Invalid results (Documentation/vmfair/contract.rst) are kept beside the others
//! as `<name>.invalid-<k>.json` and run again a bounded number of times. The
//! outputs go to `results/<name>/`: the JSON of every run, `summary.json`,
//! `report.md` (every point with the mean and spread of its repetitions, the
//! target's CPU, run-queue wait and preemptions, the dummies' CPU) and
//! `figure.svg` (target index relative to its solo run against the number of
//! dummies, one line per policy, error bars from the repetitions).
//!
//! The module is split by concern: `spec` (the experiment file, its
//! checks and the scenarios it expands into), `figures` (what the report
//! takes from one result file), `points` (repetitions grouped into the
//! points of the sweep), `report` (`report.md` and the console tables),
//! `svg` (`figure.svg`) and `run` (the boots, the reruns of invalid
//! results and the outputs).

mod bars;
mod budget;
mod figures;
#[cfg(test)]
mod panel_tests;
mod panels;
mod points;
mod report;
mod rst;
mod run;
mod spec;
mod summary;
mod svg;
#[cfg(test)]
mod tests;

use crate::util::Ctx;
use anyhow::{bail, Result};
use std::path::PathBuf;

pub use run::{report_only, results_doc, run};

/// `cargo xtask bench [--generate | --report] [FILE]` (default: the full
/// sweep, `qemu-test/experiments/bench.toml`).
pub fn cmd(ctx: &Ctx, args: &[String]) -> Result<()> {
    let mut generate = false;
    let mut report = false;
    let mut file = ctx.root.join("qemu-test/experiments/bench.toml");
    for a in args {
        match a.as_str() {
            "--generate" => generate = true,
            "--report" => report = true,
            f if !f.starts_with('-') => file = PathBuf::from(f),
            other => bail!(
                "usage: cargo xtask bench [--generate | --report] [EXPERIMENT.toml] ({other}?)"
            ),
        }
    }
    if report {
        report_only(ctx, &file)?;
    } else {
        run(ctx, &file, generate)?;
    }
    Ok(())
}
