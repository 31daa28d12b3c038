//! The study's experiment (`make demo`, `make bench`): a target VM running
//! the bench suite beside 0..N dummy VMs, under every grouping policy, and
//! beside it panels, fixed sets of VMs (different sizes, weights or
//! reservations) whose CPU is held against their entitlement.
//!
//! An experiment file (`qemu-test/experiments/*.toml`) is expanded into
//! scenario files (the sweep: one per policy, dummy kind, dummy count and
//! repetition, the solo run, 0 dummies, shared by the dummy kinds; the
//! panels: one per panel, policy and repetition), which run several per
//! boot within the file's time budget. Invalid results
//! (Documentation/vmfair/contract.rst) are kept beside the others as
//! `<name>.invalid-<k>.json` and run again a bounded number of times. The
//! outputs go to `results/<name>/`: the JSON of every run, `summary.json`,
//! `report.md` (a summary; every point with the mean and spread of its
//! repetitions, the target's CPU, run-queue wait and preemptions, the
//! dummies' CPU; every panel's CPU per VM against its entitlement),
//! `figure.svg` (target index relative to its solo run, and its CPU,
//! against the number of dummies, one line per policy and dummy kind),
//! `sweep.svg` (the index of the first dummy kind only) and one
//! `panel-<name>.svg` per panel. `cargo xtask report` turns such a
//! directory into `Documentation/vmfair/results.rst`.
//!
//! The module is split by concern: `spec` (the experiment file, its
//! checks and the scenarios it expands into), `panels` (the panels'
//! scenarios, figures and tables), `figures` (what the report takes from
//! one sweep result file), `points` (repetitions grouped into the points
//! of the sweep), `summary` (the lines at the top of the report), `report`
//! (`report.md` and the console tables), `svg` (`figure.svg`), `bars`
//! (`sweep.svg` and the panels' figures), `rst` (`results.rst`), `budget`
//! (how many scenarios a boot can take), `attempts` (what becomes of an
//! attempt: kept, or run again) and `run` (the boots and the outputs).

mod attempts;
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
