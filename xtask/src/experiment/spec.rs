//! The experiment file, its checks, and the scenarios it expands into.

use super::panels::PanelDef;
use crate::util;
use anyhow::{anyhow, bail, Result};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use vmfair_scenario::{Periodic, DEFAULT_TICK, DESKTOP_IO, DESKTOP_REFRESH};

/// An experiment file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Experiment {
    /// Name; also the output directory `results/<name>/` and the prefix of
    /// every scenario name.
    pub name: String,
    #[serde(default = "default_cpus")]
    pub guest_cpus: u32,
    pub duration_s: f64,
    #[serde(default = "default_warmup")]
    pub warmup_s: f64,
    pub repetitions: u32,
    /// Dummy counts; 0 is the solo run.
    pub dummies: Vec<u32>,
    /// Keys of `[dummy.*]` to sweep.
    pub dummy_kinds: Vec<String>,
    #[serde(default = "default_reruns")]
    pub max_reruns: u32,
    #[serde(default = "default_per_boot")]
    pub per_boot: usize,
    /// Time budget after the build: a boot starts only with the scenarios
    /// expected to end within it (first attempts before reruns; `budget.rs`).
    #[serde(default)]
    pub max_minutes: Option<f64>,
    /// QEMU's TCG mode: `multi` (one host thread per guest CPU, so a busy
    /// guest CPU runs at full speed whatever the others do) or `single`
    /// (one host thread shared by all guest CPUs); default: the pipeline's
    /// choice for `guest_cpus` (Documentation/vmfair/contract.rst). `VMFAIR_TCG` overrides.
    #[serde(default)]
    pub tcg: Option<String>,
    /// Sysctls written in every scenario (e.g. `"kernel.sched_schedstats"
    /// = 1` to collect wake-up placement counters).
    #[serde(default)]
    pub sysctl: BTreeMap<String, toml::Value>,
    pub target: VmDef,
    pub dummy: BTreeMap<String, VmDef>,
    pub policy: Vec<PolicyDef>,
    /// Fixed sets of VMs beside the sweep (`[[panel]]`, see `panels.rs`).
    #[serde(default)]
    pub panel: Vec<PanelDef>,
}

/// A VM of the experiment (the target, or one dummy instance).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmDef {
    #[serde(default = "one")]
    pub vcpus: u32,
    pub load: String,
    #[serde(default)]
    pub tick_hz: Option<u32>,
    #[serde(default)]
    pub burst_us: Option<u32>,
    /// `load = "desktop"`: the VMM's I/O and display-refresh threads
    /// (Documentation/vmfair/contract.rst).
    #[serde(default)]
    pub io_hz: Option<u32>,
    #[serde(default)]
    pub io_us: Option<u32>,
    #[serde(default)]
    pub refresh_hz: Option<u32>,
    #[serde(default)]
    pub refresh_us: Option<u32>,
}

impl VmDef {
    /// The vCPU's tick of a ticking load (`idle`, `bursty`, `desktop`), the
    /// scenario crate's default for what the file leaves out; None for the
    /// others.
    pub fn tick(&self) -> Option<Periodic> {
        matches!(self.load.as_str(), "idle" | "bursty" | "desktop").then(|| Periodic {
            hz: self.tick_hz.unwrap_or(DEFAULT_TICK.hz),
            us: self.burst_us.unwrap_or(DEFAULT_TICK.us),
        })
    }

    /// A desktop VM's I/O and display-refresh threads, the scenario
    /// crate's defaults for what the file leaves out; None for other loads.
    pub fn desktop(&self) -> Option<(Periodic, Periodic)> {
        (self.load == "desktop").then(|| {
            (
                Periodic {
                    hz: self.io_hz.unwrap_or(DESKTOP_IO.hz),
                    us: self.io_us.unwrap_or(DESKTOP_IO.us),
                },
                Periodic {
                    hz: self.refresh_hz.unwrap_or(DESKTOP_REFRESH.hz),
                    us: self.refresh_us.unwrap_or(DESKTOP_REFRESH.us),
                },
            )
        })
    }
}

/// A line of the figure: a grouping policy and the target's weight/nice.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyDef {
    /// Label (also part of scenario names).
    pub name: String,
    /// `stock | autogroup | cgroup | vmfair`; defaults to `name`.
    #[serde(default)]
    pub policy: Option<String>,
    #[serde(default)]
    pub target_weight: Option<u32>,
    #[serde(default)]
    pub target_nice: Option<i32>,
}

fn default_cpus() -> u32 {
    2
}
fn default_warmup() -> f64 {
    3.0
}
fn default_reruns() -> u32 {
    2
}
fn default_per_boot() -> usize {
    8
}
fn one() -> u32 {
    1
}

impl Experiment {
    /// The TCG mode the boots use (what qemu::Mode::for_cpus will pick).
    pub fn tcg_mode(&self) -> &'static str {
        let want = std::env::var("VMFAIR_TCG")
            .ok()
            .or_else(|| self.tcg.clone());
        match want.as_deref() {
            Some("multi") => "multi",
            Some("single") => "single",
            _ if self.guest_cpus <= 1 => "multi",
            _ => "single",
        }
    }
}

impl PolicyDef {
    fn policy(&self) -> &str {
        self.policy.as_deref().unwrap_or(&self.name)
    }
}

/// One generated scenario.
#[derive(Clone, Debug)]
pub struct Job {
    pub name: String,
    pub policy: String,
    /// Dummy kind, `solo` for 0 dummies.
    pub kind: String,
    pub dummies: u32,
    pub rep: u32,
    pub toml: String,
}

impl Experiment {
    pub fn load(path: &Path) -> Result<Experiment> {
        let text = util::read(path)?;
        let e: Experiment =
            toml::from_str(&text).map_err(|e| anyhow!("{}: {e}", path.display()))?;
        e.check()
            .map_err(|err| anyhow!("{}: {err}", path.display()))?;
        Ok(e)
    }

    pub(super) fn check(&self) -> Result<()> {
        if self.repetitions == 0 || self.dummies.is_empty() || self.policy.is_empty() {
            bail!("repetitions, dummies and policy must not be empty");
        }
        if self.per_boot == 0 {
            bail!("per_boot must be at least 1");
        }
        if let Some(t) = self
            .tcg
            .as_deref()
            .filter(|t| !matches!(*t, "multi" | "single"))
        {
            bail!("tcg = {t:?} must be \"multi\" or \"single\"");
        }
        for k in &self.dummy_kinds {
            if !self.dummy.contains_key(k) {
                bail!("dummy kind {k:?} has no [dummy.{k}] table");
            }
            if k == "solo" {
                bail!("dummy kind name \"solo\" is reserved for the 0-dummy run");
            }
        }
        if self.dummy_kinds.is_empty() && self.dummies.iter().any(|&d| d > 0) {
            bail!("dummies > 0 need at least one entry in dummy_kinds");
        }
        let mut seen = Vec::new();
        for p in &self.policy {
            if seen.contains(&&p.name) {
                bail!("policy {:?} listed twice", p.name);
            }
            seen.push(&p.name);
        }
        // Every generated scenario must pass the scenario schema (names,
        // ranges, unknown keys).
        let jobs = self.jobs();
        for j in &jobs {
            vmfair_scenario::Scenario::from_toml_str(&j.toml)
                .map_err(|e| anyhow!("generated scenario {}: {e}", j.name))?;
        }
        let names: Vec<String> = jobs.into_iter().map(|j| j.name).collect();
        self.check_panels(&names)
    }

    /// Every scenario of the sweep, repetitions outermost so that a sweep
    /// cut short still has every point once.
    pub fn jobs(&self) -> Vec<Job> {
        let mut out = Vec::new();
        for rep in 1..=self.repetitions {
            for &d in &self.dummies {
                let kinds: Vec<&str> = if d == 0 {
                    vec!["solo"]
                } else {
                    self.dummy_kinds.iter().map(String::as_str).collect()
                };
                for kind in kinds {
                    for p in &self.policy {
                        let name = if d == 0 {
                            format!("{}-{}-solo-r{rep}", self.name, p.name)
                        } else {
                            format!("{}-{}-{kind}-{d}-r{rep}", self.name, p.name)
                        };
                        let toml = self.scenario_toml(&name, p, kind, d);
                        out.push(Job {
                            name,
                            policy: p.name.clone(),
                            kind: kind.to_string(),
                            dummies: d,
                            rep,
                            toml,
                        });
                    }
                }
            }
        }
        out
    }

    fn scenario_toml(&self, name: &str, p: &PolicyDef, kind: &str, dummies: u32) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "# Generated from experiment {:?}; do not edit.",
            self.name
        );
        let _ = writeln!(s, "name = {name:?}");
        let _ = writeln!(s, "guest_cpus = {}", self.guest_cpus);
        let _ = writeln!(s, "duration_s = {}", toml_f64(self.duration_s));
        let _ = writeln!(s, "warmup_s = {}", toml_f64(self.warmup_s));
        let _ = writeln!(s, "policy = {:?}", p.policy());
        if !self.sysctl.is_empty() {
            let _ = writeln!(s, "\n[sysctl]");
            for (k, v) in &self.sysctl {
                let _ = writeln!(s, "{k:?} = {v}");
            }
        }
        let vm =
            |s: &mut String, name: &str, count: u32, v: &VmDef, w: Option<u32>, n: Option<i32>| {
                let _ = writeln!(s, "\n[[vm]]\nname = {name:?}\ncount = {count}");
                let _ = writeln!(s, "vcpus = {}\nload = {:?}", v.vcpus, v.load);
                if let Some(w) = w {
                    let _ = writeln!(s, "weight = {w}");
                }
                if let Some(n) = n {
                    let _ = writeln!(s, "nice = {n}");
                }
                if let Some(t) = v.tick_hz {
                    let _ = writeln!(s, "tick_hz = {t}");
                }
                if let Some(b) = v.burst_us {
                    let _ = writeln!(s, "burst_us = {b}");
                }
                for (k, x) in [
                    ("io_hz", v.io_hz),
                    ("io_us", v.io_us),
                    ("refresh_hz", v.refresh_hz),
                    ("refresh_us", v.refresh_us),
                ] {
                    if let Some(x) = x {
                        let _ = writeln!(s, "{k} = {x}");
                    }
                }
            };
        vm(
            &mut s,
            "target",
            1,
            &self.target,
            p.target_weight,
            p.target_nice,
        );
        if dummies > 0 {
            vm(&mut s, "dummy", dummies, &self.dummy[kind], None, None);
        }
        s
    }
}

fn toml_f64(v: f64) -> String {
    let s = format!("{v}");
    if s.contains('.') || s.contains('e') {
        s
    } else {
        format!("{s}.0")
    }
}
