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

use crate::scenario::{self, Meta};
use crate::util::{self, info, phase, Ctx};
use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

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
    /// No new boot after this many minutes (reruns are given up first).
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

    fn check(&self) -> Result<()> {
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
        for j in self.jobs() {
            vmfair_scenario::Scenario::from_toml_str(&j.toml)
                .map_err(|e| anyhow!("generated scenario {}: {e}", j.name))?;
        }
        Ok(())
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

/// The figures of one run that the report uses.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunFigures {
    pub scenario: String,
    pub valid: bool,
    pub window_s: f64,
    pub target_index: Option<f64>,
    /// Target CPU time / window (CPUs).
    pub target_cpu: f64,
    /// Target run-queue wait / window.
    pub target_wait: f64,
    /// Target preemptions (involuntary switches) per second.
    pub target_preempt_per_s: Option<f64>,
    /// Dummies' CPU (their processes plus their kvm-pit threads) / window.
    pub dummies_cpu: f64,
    /// Dummies' halt-polling time / window (part of dummies_cpu).
    pub dummies_halt_poll: Option<f64>,
    /// Dummies' sleeps (voluntary switches) per second.
    pub dummies_sleeps_per_s: Option<f64>,
    /// Idle CPU / window.
    pub idle_cpu: Option<f64>,
    pub problems: Vec<String>,
    /// Boot the run was in (runs of one boot share the host's conditions).
    pub boot: usize,
    /// Guest CPUs online.
    pub cpus: f64,
    /// Target's wake-up/migration counters per second (with schedstats).
    pub target_sched: BTreeMap<String, f64>,
    /// Dummies' wake-up/migration counters per second, summed.
    pub dummies_sched: BTreeMap<String, f64>,
}

/// Extracts the report's figures from a result JSON.
pub fn figures(v: &Value) -> Result<RunFigures> {
    let window_s = v["duration_s"]
        .as_f64()
        .filter(|w| *w > 0.0)
        .ok_or_else(|| anyhow!("result without a window"))?;
    let groups = v["groups"].as_array().cloned().unwrap_or_default();
    let target = groups
        .iter()
        .find(|g| g["name"] == "target")
        .ok_or_else(|| anyhow!("result without the target VM"))?;
    let dummies: Vec<&Value> = groups.iter().filter(|g| g["name"] == "dummy").collect();
    let f = |g: &Value, k: &str| g[k].as_f64().unwrap_or(0.0);
    let sum_opt =
        |k: &str| -> Option<f64> { dummies.iter().map(|g| g[k].as_f64()).sum::<Option<f64>>() };
    Ok(RunFigures {
        scenario: v["scenario"].as_str().unwrap_or("?").to_string(),
        valid: v["valid"].as_bool().unwrap_or(true),
        window_s,
        target_index: target["index"].as_f64(),
        target_cpu: f(target, "cpu_s") / window_s,
        target_wait: f(target, "wait_s") / window_s,
        target_preempt_per_s: target["involuntary_switches"]
            .as_f64()
            .map(|n| n / window_s),
        dummies_cpu: dummies
            .iter()
            .map(|g| f(g, "cpu_s") + f(g, "kthread_cpu_s"))
            .fold(0.0, |a, b| a + b)
            / window_s,
        dummies_halt_poll: if dummies.is_empty() {
            None
        } else {
            sum_opt("halt_poll_s").map(|x| x / window_s)
        },
        dummies_sleeps_per_s: if dummies.is_empty() {
            None
        } else {
            sum_opt("voluntary_switches").map(|x| x / window_s)
        },
        idle_cpu: v["accounting"]["idle_s"].as_f64().map(|i| i / window_s),
        problems: v["problems"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p.as_str().map(String::from))
            .collect(),
        boot: 0,
        cpus: v["guest_cpus"].as_f64().unwrap_or(0.0),
        target_sched: sched_rates(std::iter::once(target), window_s),
        dummies_sched: sched_rates(dummies.iter().copied(), window_s),
    })
}

/// Sums the `sched` counters of result groups, per second of window.
fn sched_rates<'a>(
    groups: impl Iterator<Item = &'a Value>,
    window_s: f64,
) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for g in groups {
        for (k, v) in g["sched"].as_object().into_iter().flatten() {
            *out.entry(k.clone()).or_insert(0.0) += v.as_f64().unwrap_or(0.0) / window_s;
        }
    }
    out
}

/// Mean, minimum and maximum.
#[derive(Clone, Copy, Debug, Serialize, PartialEq)]
pub struct Stat {
    pub n: usize,
    pub mean: f64,
    pub min: f64,
    pub max: f64,
}

impl Stat {
    pub fn of(xs: &[f64]) -> Option<Stat> {
        if xs.is_empty() {
            return None;
        }
        Some(Stat {
            n: xs.len(),
            mean: xs.iter().sum::<f64>() / xs.len() as f64,
            min: xs.iter().copied().fold(f64::INFINITY, f64::min),
            max: xs.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        })
    }
}

/// One point of the sweep: all valid repetitions of (policy, kind, dummies).
#[derive(Clone, Debug, Serialize)]
pub struct Point {
    pub policy: String,
    pub kind: String,
    pub dummies: u32,
    pub runs: usize,
    pub valid: usize,
    pub index: Option<Stat>,
    /// Index relative to the mean solo index of the same boot (see
    /// `points`).
    pub relative: Option<Stat>,
    /// Index per CPU-second of the target (index / target CPU).
    pub index_per_cpu: Option<Stat>,
    /// `index_per_cpu` relative to the solo runs' (same boot): how fast the target's
    /// CPU time itself ran. Below 1 the emulated CPU was slower (both guest
    /// CPUs share one host thread under single-threaded TCG), which is not
    /// the scheduler's doing.
    pub speed: Option<Stat>,
    /// What `speed` should be if single-threaded TCG splits one host
    /// thread evenly over the busy guest CPU time: busy CPUs of the solo
    /// runs over busy CPUs of this run, `(cpus - idle_solo) / (cpus - idle)`.
    pub tcg_model: Option<Stat>,
    pub target_cpu: Option<Stat>,
    pub target_wait: Option<Stat>,
    pub target_preempt_per_s: Option<Stat>,
    pub dummies_cpu: Option<Stat>,
    pub dummies_halt_poll: Option<Stat>,
    pub dummies_sleeps_per_s: Option<Stat>,
    pub idle_cpu: Option<Stat>,
}

/// Groups runs into points (in the order of the jobs). A run's index is
/// taken relative to the mean solo index (all policy lines) of the runs in
/// the same boot, so that the host's speed, which varies between boots
/// (the emulation shares the host with other work), cancels out; without a
/// valid solo run in its boot, to the mean of all solo runs.
pub fn points(jobs: &[Job], runs: &BTreeMap<String, RunFigures>) -> Vec<Point> {
    let ok = |r: &&RunFigures| r.valid && r.target_index.is_some();
    let per_cpu = |r: &RunFigures| {
        r.target_index
            .filter(|_| r.target_cpu > 0.0)
            .map(|i| i / r.target_cpu)
    };
    // Solo runs: (boot, index, index per CPU, busy CPUs).
    type Solo = (usize, f64, Option<f64>, Option<f64>);
    let solos: Vec<Solo> = jobs
        .iter()
        .filter(|j| j.dummies == 0)
        .filter_map(|j| runs.get(&j.name))
        .filter(ok)
        .map(|r| {
            (
                r.boot,
                r.target_index.unwrap_or(0.0),
                per_cpu(r),
                r.idle_cpu.map(|i| r.cpus - i),
            )
        })
        .collect();
    let mean = |xs: Vec<f64>| Stat::of(&xs).map(|s| s.mean).filter(|m| *m > 0.0);
    let solo_busy = |boot: usize| {
        let same: Vec<&Solo> = solos.iter().filter(|s| s.0 == boot).collect();
        let pick = if same.is_empty() {
            solos.iter().collect()
        } else {
            same
        };
        mean(pick.iter().filter_map(|s| s.3).collect())
    };
    let solo_of = |boot: usize| -> (Option<f64>, Option<f64>) {
        let same: Vec<_> = solos.iter().filter(|s| s.0 == boot).collect();
        let pick = if same.is_empty() {
            solos.iter().collect()
        } else {
            same
        };
        (
            mean(pick.iter().map(|s| s.1).collect()),
            mean(pick.iter().filter_map(|s| s.2).collect()),
        )
    };
    let mut keys: Vec<(String, String, u32)> = Vec::new();
    for j in jobs {
        let k = (j.policy.clone(), j.kind.clone(), j.dummies);
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    keys.into_iter()
        .map(|(policy, kind, dummies)| {
            let all: Vec<&RunFigures> = jobs
                .iter()
                .filter(|j| j.policy == policy && j.kind == kind && j.dummies == dummies)
                .filter_map(|j| runs.get(&j.name))
                .collect();
            let good: Vec<&RunFigures> = all.iter().copied().filter(ok).collect();
            let st = |f: &dyn Fn(&RunFigures) -> Option<f64>| {
                Stat::of(&good.iter().filter_map(|r| f(r)).collect::<Vec<_>>())
            };
            Point {
                policy,
                kind,
                dummies,
                runs: all.len(),
                valid: good.len(),
                index: st(&|r| r.target_index),
                relative: st(&|r| Some(r.target_index? / solo_of(r.boot).0?)),
                index_per_cpu: st(&|r| per_cpu(r)),
                speed: st(&|r| Some(per_cpu(r)? / solo_of(r.boot).1?)),
                tcg_model: st(&|r| {
                    let busy = r.cpus - r.idle_cpu?;
                    Some(solo_busy(r.boot)? / busy).filter(|_| busy > 0.0)
                }),
                target_cpu: st(&|r| Some(r.target_cpu)),
                target_wait: st(&|r| Some(r.target_wait)),
                target_preempt_per_s: st(&|r| r.target_preempt_per_s),
                dummies_cpu: st(&|r| Some(r.dummies_cpu)),
                dummies_halt_poll: st(&|r| r.dummies_halt_poll),
                dummies_sleeps_per_s: st(&|r| r.dummies_sleeps_per_s),
                idle_cpu: st(&|r| r.idle_cpu),
            }
        })
        .collect()
}

/// The valid runs of a point (by scenario name prefix of the point's key).
fn jobs_runs<'a>(p: &Point, runs: &'a BTreeMap<String, RunFigures>) -> Vec<&'a RunFigures> {
    let tag = if p.dummies == 0 {
        format!("-{}-solo-r", p.policy)
    } else {
        format!("-{}-{}-{}-r", p.policy, p.kind, p.dummies)
    };
    runs.values()
        .filter(|r| r.valid && r.scenario.contains(&tag))
        .collect()
}

fn fmt_stat(s: Option<Stat>, prec: usize) -> String {
    match s {
        None => "–".into(),
        Some(s) if s.n == 1 => format!("{:.p$}", s.mean, p = prec),
        Some(s) => format!("{:.p$} ({:.p$}–{:.p$})", s.mean, s.min, s.max, p = prec),
    }
}

/// `report.md`.
pub fn report_md(
    exp: &Experiment,
    points: &[Point],
    runs: &BTreeMap<String, RunFigures>,
    invalid: &[(String, Vec<String>)],
    kernel: &str,
    missing: &[String],
) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# vmfair experiment `{}`\n", exp.name);
    let _ = writeln!(
        s,
        "Kernel `{kernel}`, {} guest CPUs (QEMU TCG, {}-threaded), window {} s after {} s \
         of warm-up, {} repetition(s) per point. Target: {} vCPU(s), load `{}`. Dummies: {}.\n",
        exp.guest_cpus,
        exp.tcg_mode(),
        exp.duration_s,
        exp.warmup_s,
        exp.repetitions,
        exp.target.vcpus,
        exp.target.load,
        exp.dummy_kinds
            .iter()
            .map(|k| {
                let d = &exp.dummy[k];
                match (d.tick_hz, d.burst_us) {
                    (Some(t), Some(b)) => format!(
                        "`{k}` = {} vCPU `{}` at {t} Hz with {b} µs per tick",
                        d.vcpus, d.load
                    ),
                    _ => format!("`{k}` = {} vCPU `{}`", d.vcpus, d.load),
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(
        s,
        "Cells give the mean over the valid repetitions and, with more than one, (min–max). \
         `rel` is the target's index over the mean solo index (all policies) of the same \
         boot, so that the host's speed, which varies between boots, cancels out. CPU \
         figures are in CPUs (CPU-seconds per second of window, out of {}); the dummies' \
         include their `kvm-pit` threads; halt-poll is part of it. `preempt/s` counts the \
         target's involuntary context switches. `speed` is the target's index per CPU-second \
         relative to solo: below 1, its CPU time itself ran slower, a loss the scheduler did \
         not cause; `rel` ≈ target CPU × speed. {}\n",
        exp.guest_cpus,
        if exp.tcg_mode() == "single" {
            "Under single-threaded TCG both guest CPUs share one host thread: `TCG model` is \
             the speed expected if that thread is split evenly over all busy guest CPU time \
             (busy CPUs of the solo runs over busy CPUs of this run)."
        } else {
            "Under multi-threaded TCG each guest CPU has a host thread of its own, so the \
             dummies' emulation no longer slows the target's CPU; what is left of a speed \
             below 1 comes from sharing one guest CPU with busy vCPUs (each switch between \
             nested guests costs emulated world switches and cold caches) and from the host's \
             own load. `TCG model` applies to single-threaded TCG only and is not given."
        }
    );
    let _ = writeln!(
        s,
        "| policy | dummies | valid/runs | index | rel | target CPU | speed | TCG model | target \
         wait | target preempt/s | dummies CPU | dummies halt-poll | dummies sleeps/s | idle CPU |"
    );
    let _ = writeln!(
        s,
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for p in points {
        let d = if p.dummies == 0 {
            "0".to_string()
        } else {
            format!("{} {}", p.dummies, p.kind)
        };
        let _ = writeln!(
            s,
            "| {} | {d} | {}/{} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            p.policy,
            p.valid,
            p.runs,
            fmt_stat(p.index, 1),
            fmt_stat(p.relative, 2),
            fmt_stat(p.target_cpu, 3),
            fmt_stat(p.speed, 2),
            if exp.tcg_mode() == "single" {
                fmt_stat(p.tcg_model, 2)
            } else {
                "–".to_string()
            },
            fmt_stat(p.target_wait, 2),
            fmt_stat(p.target_preempt_per_s, 0),
            fmt_stat(p.dummies_cpu, 2),
            fmt_stat(p.dummies_halt_poll, 3),
            fmt_stat(p.dummies_sleeps_per_s, 0),
            fmt_stat(p.idle_cpu, 2),
        );
    }
    entitlement_table(&mut s, exp, points);
    let placement: Vec<(&Point, f64, f64, f64, f64, f64)> = points
        .iter()
        .filter_map(|p| {
            let f = |k: &str| {
                let xs: Vec<f64> = jobs_runs(p, runs)
                    .iter()
                    .filter_map(|r| r.dummies_sched.get(k).copied())
                    .collect();
                Stat::of(&xs).map(|s| s.mean)
            };
            let t = |k: &str| {
                let xs: Vec<f64> = jobs_runs(p, runs)
                    .iter()
                    .filter_map(|r| r.target_sched.get(k).copied())
                    .collect();
                Stat::of(&xs).map(|s| s.mean)
            };
            let w = f("nr_wakeups").filter(|w| *w > 0.0)?;
            Some((
                p,
                w,
                f("nr_wakeups_local").unwrap_or(0.0) / w,
                f("nr_wakeups_migrate").unwrap_or(0.0) / w,
                f("nr_wakeups_affine").unwrap_or(0.0) / w,
                t("se.nr_migrations").unwrap_or(0.0),
            ))
        })
        .collect();
    if !placement.is_empty() {
        let _ = writeln!(
            s,
            "\nWake-up placement (`kernel.sched_schedstats` = 1): the dummies' wake-ups per \
             second, the fraction placed on the CPU that woke them (`local`), placed on \
             another CPU than they last ran on (`migrate`), or pulled to the waker's CPU by \
             wake-affine (`affine`); the target's migrations per second.\n"
        );
        let _ = writeln!(
            s,
            "| policy | dummies | dummy wake-ups/s | local | migrate | affine | target \
             migrations/s |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|---|---|");
        for (p, w, local, migrate, affine, tmig) in placement {
            let _ = writeln!(
                s,
                "| {} | {} {} | {w:.0} | {local:.2} | {migrate:.2} | {affine:.2} | {tmig:.1} |",
                p.policy, p.dummies, p.kind
            );
        }
    }
    let _ = writeln!(s, "\n![figure](figure.svg)\n");
    let n_valid = runs.values().filter(|r| r.valid).count();
    let _ = writeln!(
        s,
        "{} runs kept ({} valid); {} invalid attempts were run again or dropped.\n",
        runs.len(),
        n_valid,
        invalid.len()
    );
    if !invalid.is_empty() {
        let _ = writeln!(s, "## Invalid attempts\n");
        for (name, problems) in invalid {
            let _ = writeln!(s, "- `{name}`: {}", problems.join("; "));
        }
        let _ = writeln!(s);
    }
    if !missing.is_empty() {
        let _ = writeln!(
            s,
            "## Not run (still pending, or dropped for the time budget)\n"
        );
        for m in missing {
            let _ = writeln!(s, "- `{m}`");
        }
    }
    s
}

const COLORS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf",
];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// `sched_prio_to_weight[]` (kernel/sched/core.c), nice -20..=19.
const PRIO_TO_WEIGHT: [u32; 40] = [
    88761, 71755, 56483, 46273, 36291, 29154, 23254, 18705, 14949, 11916, 9548, 7620, 6100, 4904,
    3906, 3121, 2501, 1991, 1586, 1277, 1024, 820, 655, 526, 423, 335, 272, 215, 172, 137, 110, 87,
    70, 56, 45, 36, 29, 23, 18, 15,
];

/// The target's weight on the cpu.weight scale under a policy line: its
/// `target_weight`, or its `target_nice` converted as cgroup v2's
/// `cpu.weight.nice` does, or 100.
fn target_weight(p: &PolicyDef) -> f64 {
    if let Some(w) = p.target_weight {
        return f64::from(w);
    }
    let nice = p.target_nice.unwrap_or(0).clamp(-20, 19);
    f64::from(PRIO_TO_WEIGHT[(nice + 20) as usize]) * 100.0 / 1024.0
}

/// For dummies that are busy (every thread always runnable), what the target
/// is entitled to: weighted max-min fair shares of the guest's CPUs
/// (vmfair-policy's entitlement()), the target weighing its weight, each
/// 1-vCPU dummy 100. Per VM and per thread are the same here (all VMs have
/// one vCPU), so the same figure holds for stock, autogroup and cgroup.
fn entitlement_table(s: &mut String, exp: &Experiment, points: &[Point]) {
    use std::fmt::Write;
    let busy: Vec<&String> = exp
        .dummy_kinds
        .iter()
        .filter(|k| exp.dummy[*k].load == "busy" && exp.dummy[*k].vcpus == 1)
        .collect();
    let rows: Vec<&Point> = points
        .iter()
        .filter(|p| p.dummies > 0 && busy.contains(&&p.kind) && exp.target.vcpus == 1)
        .collect();
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(
        s,
        "\nThe target's CPU against its entitlement beside busy 1-vCPU dummies: weighted \
         max-min fair shares of the {} guest CPUs (`vmfair_policy::entitlement`), the target \
         weighing its weight (`nice -5` = cpu.weight 305, as cgroup v2 converts it), each \
         dummy 100. `deviation` compares the mean; `worst` the repetition farthest from it.\n",
        exp.guest_cpus
    );
    let _ = writeln!(
        s,
        "| policy | dummies | target weight | entitled CPU | target CPU | deviation | worst |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|");
    for p in rows {
        let Some(def) = exp.policy.iter().find(|d| d.name == p.policy) else {
            continue;
        };
        let w = target_weight(def);
        let mut vms = vec![(w.round() as u32, 1u32)];
        vms.extend(std::iter::repeat_n((100, 1), p.dummies as usize));
        let mut out = vec![0.0; vms.len()];
        vmfair_policy::entitlement(f64::from(exp.guest_cpus), &vms, &mut out);
        let want = out[0];
        let Some(cpu) = p.target_cpu else {
            continue;
        };
        let dev = |v: f64| (v - want) / want * 100.0;
        let worst = if dev(cpu.min).abs() > dev(cpu.max).abs() {
            dev(cpu.min)
        } else {
            dev(cpu.max)
        };
        let _ = writeln!(
            s,
            "| {} | {} {} | {w:.0} | {want:.3} | {} | {:+.1} % | {worst:+.1} % |",
            p.policy,
            p.dummies,
            p.kind,
            fmt_stat(Some(cpu), 3),
            dev(cpu.mean)
        );
    }
}

/// `figure.svg`: two panels against the number of dummies, one line per
/// (policy, dummy kind), solid for the first kind and dashed for others,
/// error bars from min to max of the repetitions. Top: the target's index
/// relative to its solo run (the study's figure). Bottom: the target's CPU
/// time per second of window, what the scheduler gave it.
pub fn figure_svg(exp: &Experiment, points: &[Point]) -> String {
    let (w, h) = (820.0, 760.0);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="13">"#
    );
    let _ = writeln!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    panel(
        &mut s,
        exp,
        points,
        40.0,
        300.0,
        &format!(
            "Target VM's bench index relative to its solo run ({} guest CPUs)",
            exp.guest_cpus
        ),
        "index / solo index",
        |p| p.relative,
        true,
    );
    if exp.tcg_mode() == "single" {
        model_line(&mut s, exp, points, 40.0, 300.0);
    }
    panel(
        &mut s,
        exp,
        points,
        420.0,
        280.0,
        "Target VM's CPU (CPU-seconds per second; it can use at most 1)",
        "target CPU",
        |p| p.target_cpu,
        false,
    );
    s.push_str("</svg>\n");
    s
}

/// The speed single-threaded TCG alone predicts (mean of the policy lines
/// for the first dummy kind), as a grey dashed line in the top panel: what
/// the index would show if the scheduler took nothing from the target.
fn model_line(s: &mut String, exp: &Experiment, points: &[Point], t: f64, ph: f64) {
    let (l, pw) = (70.0, 520.0);
    let xmax = exp.dummies.iter().copied().max().unwrap_or(1).max(1) as f64;
    let ytop = points
        .iter()
        .filter_map(|p| p.relative.map(|s| s.max))
        .fold(1.2f64, f64::max);
    let ytop = (ytop * 5.0).ceil() / 5.0;
    let Some(kind) = exp.dummy_kinds.first() else {
        return;
    };
    let mut pts = Vec::new();
    for &d in &exp.dummies {
        let xs: Vec<f64> = points
            .iter()
            .filter(|p| p.dummies == d && (d == 0 || &p.kind == kind))
            .filter_map(|p| p.tcg_model.map(|m| m.mean))
            .collect();
        if let Some(m) = Stat::of(&xs) {
            pts.push(format!(
                "{:.1},{:.1}",
                l + pw * d as f64 / xmax,
                t + ph * (1.0 - m.mean / ytop)
            ));
        }
    }
    if pts.len() < 2 {
        return;
    }
    let _ = writeln!(
        s,
        r##"<polyline points="{}" fill="none" stroke="#777" stroke-width="3" stroke-dasharray="8,5" opacity="0.7"/>"##,
        pts.join(" ")
    );
    let _ = writeln!(
        s,
        r##"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#777" stroke-width="3" stroke-dasharray="8,5" opacity="0.7"/><text x="{:.1}" y="{:.1}" font-size="11" fill="#555">emulation alone</text><text x="{:.1}" y="{:.1}" font-size="11" fill="#555">(TCG model, {kind})</text>"##,
        l + pw + 15.0,
        t + ph - 30.0,
        l + pw + 43.0,
        t + ph - 30.0,
        l + pw + 49.0,
        t + ph - 26.0,
        l + pw + 49.0,
        t + ph - 12.0
    );
}

#[allow(clippy::too_many_arguments)]
fn panel(
    s: &mut String,
    exp: &Experiment,
    points: &[Point],
    t: f64,
    ph: f64,
    title: &str,
    ylabel: &str,
    sel: fn(&Point) -> Option<Stat>,
    legend_on: bool,
) {
    let (l, pw) = (70.0, 520.0);
    let xmax = exp.dummies.iter().copied().max().unwrap_or(1).max(1) as f64;
    let ytop = points
        .iter()
        .filter_map(|p| sel(p).map(|s| s.max))
        .fold(1.2f64, f64::max);
    let ytop = (ytop * 5.0).ceil() / 5.0;
    let x = |d: f64| l + pw * d / xmax;
    let y = |v: f64| t + ph * (1.0 - v / ytop);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{:.1}" text-anchor="middle" font-size="15">{}</text>"#,
        l + pw / 2.0,
        t - 14.0,
        esc(title)
    );
    let mut v = 0.0;
    while v <= ytop + 1e-9 {
        let yy = y(v);
        let _ = writeln!(
            s,
            r##"<line x1="{l}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{v:.1}</text>"##,
            l + pw,
            l - 8.0,
            yy + 4.0
        );
        v += 0.2;
    }
    let _ = writeln!(
        s,
        r##"<line x1="{l}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#888" stroke-dasharray="2,3"/>"##,
        y(1.0),
        l + pw,
        y(1.0)
    );
    for &d in &exp.dummies {
        let xx = x(d as f64);
        let _ = writeln!(
            s,
            r##"<line x1="{xx:.1}" y1="{:.1}" x2="{xx:.1}" y2="{:.1}" stroke="#000"/><text x="{xx:.1}" y="{:.1}" text-anchor="middle">{d}</text>"##,
            t + ph,
            t + ph + 5.0,
            t + ph + 20.0
        );
    }
    let _ = writeln!(
        s,
        r##"<rect x="{l}" y="{t}" width="{pw}" height="{ph}" fill="none" stroke="#000"/>"##
    );
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">dummy VMs beside the target</text>"#,
        l + pw / 2.0,
        t + ph + 40.0
    );
    let _ = writeln!(
        s,
        r#"<text transform="translate(20,{:.1}) rotate(-90)" text-anchor="middle">{}</text>"#,
        t + ph / 2.0,
        esc(ylabel)
    );
    let mut legend = 0;
    for (pi, pol) in exp.policy.iter().enumerate() {
        let color = COLORS[pi % COLORS.len()];
        for (ki, kind) in exp.dummy_kinds.iter().enumerate() {
            let dash = if ki == 0 {
                ""
            } else if ki == 1 {
                r#" stroke-dasharray="6,4""#
            } else {
                r#" stroke-dasharray="2,3""#
            };
            let mut pts: Vec<(f64, Stat)> = points
                .iter()
                .filter(|p| p.policy == pol.name && (p.dummies == 0 || &p.kind == kind))
                .filter_map(|p| Some((p.dummies as f64, sel(p)?)))
                .collect();
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            if pts.is_empty() {
                continue;
            }
            // Spread the lines a little so their error bars do not hide
            // each other.
            let off = (legend as f64 - 2.0) * 2.5;
            let path: Vec<String> = pts
                .iter()
                .map(|(d, st)| format!("{:.1},{:.1}", x(*d) + off, y(st.mean)))
                .collect();
            let _ = writeln!(
                s,
                r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2"{dash}/>"#,
                path.join(" ")
            );
            for (d, st) in &pts {
                let xx = x(*d) + off;
                if st.n > 1 {
                    let _ = writeln!(
                        s,
                        r#"<path d="M{xx:.1},{:.1}V{:.1}M{:.1},{:.1}H{:.1}M{:.1},{:.1}H{:.1}" stroke="{color}" stroke-width="1.2"/>"#,
                        y(st.min),
                        y(st.max),
                        xx - 4.0,
                        y(st.min),
                        xx + 4.0,
                        xx - 4.0,
                        y(st.max),
                        xx + 4.0
                    );
                }
                let _ = writeln!(
                    s,
                    r#"<circle cx="{xx:.1}" cy="{:.1}" r="3.5" fill="{color}"/>"#,
                    y(st.mean)
                );
            }
            if legend_on {
                let ly = t + 10.0 + 20.0 * legend as f64;
                let lx = l + pw + 15.0;
                let label = if exp.dummy_kinds.len() > 1 {
                    format!("{} ({kind})", pol.name)
                } else {
                    pol.name.clone()
                };
                let _ = writeln!(
                    s,
                    r#"<line x1="{lx:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{color}" stroke-width="2"{dash}/><text x="{:.1}" y="{:.1}">{}</text>"#,
                    lx + 28.0,
                    lx + 34.0,
                    ly + 4.0,
                    esc(&label)
                );
            }
            legend += 1;
        }
    }
    if legend_on {
        let _ = writeln!(
            s,
            r##"<text x="{:.1}" y="{:.1}" font-size="11" fill="#555">bars: min–max of repetitions</text>"##,
            l + pw + 15.0,
            t + 20.0 + 20.0 * legend as f64
        );
    }
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn pending_names(pending: &[(String, u32)]) -> Vec<String> {
    pending.iter().map(|(n, _)| n.clone()).collect()
}

/// Writes summary.json, report.md and figure.svg; returns the points.
fn write_outputs(
    exp: &Experiment,
    out: &Path,
    jobs: &[Job],
    runs: &BTreeMap<String, RunFigures>,
    invalid: &[(String, Vec<String>)],
    kernel: &str,
    missing: &[String],
) -> Result<Vec<Point>> {
    let pts = points(jobs, runs);
    util::write(
        &out.join("summary.json"),
        serde_json::to_string_pretty(&serde_json::json!({
            "experiment": exp.name,
            "kernel": kernel,
            "points": pts,
            "runs": runs,
        }))? + "\n",
    )?;
    let md = report_md(exp, &pts, runs, invalid, kernel, missing);
    util::write(&out.join("report.md"), &md)?;
    util::write(&out.join("figure.svg"), figure_svg(exp, &pts))?;
    Ok(pts)
}

/// Rewrites report.md and figure.svg of a finished (or cut short) sweep
/// from its summary.json and its `*.invalid-*.json` files, without running
/// anything.
pub fn report_only(ctx: &Ctx, path: &Path) -> Result<PathBuf> {
    let exp = Experiment::load(path)?;
    let out = ctx.results().join(&exp.name);
    let summary: Value =
        serde_json::from_str(&util::read(&out.join("summary.json"))?).context("summary.json")?;
    let runs: BTreeMap<String, RunFigures> =
        serde_json::from_value(summary["runs"].clone()).context("summary.json: runs")?;
    let kernel = summary["kernel"].as_str().unwrap_or("?").to_string();
    let mut invalid = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&out)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| file_name(p).contains(".invalid-"))
        .collect();
    files.sort();
    for f in files {
        let v: Value = serde_json::from_str(&util::read(&f)?)?;
        let name = file_name(&f);
        let (scn, k) = name
            .trim_end_matches(".json")
            .split_once(".invalid-")
            .unwrap_or((&name, "?"));
        let problems = v["problems"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p.as_str().map(String::from))
            .collect();
        invalid.push((format!("{scn} (attempt {k})"), problems));
    }
    let jobs = exp.jobs();
    let missing: Vec<String> = jobs
        .iter()
        .filter(|j| !runs.contains_key(&j.name))
        .map(|j| j.name.clone())
        .collect();
    let pts = write_outputs(&exp, &out, &jobs, &runs, &invalid, &kernel, &missing)?;
    print_points(&pts);
    info(&format!("rewrote {}/report.md, figure.svg", out.display()));
    Ok(out)
}

/// Run (or only generate) an experiment; writes `results/<name>/`.
pub fn run(ctx: &Ctx, path: &Path, generate_only: bool) -> Result<PathBuf> {
    let exp = Experiment::load(path)?;
    let out = ctx.results().join(&exp.name);
    let scen_dir = out.join("scenarios");
    if !generate_only && out.exists() {
        // Old results of this experiment would mix into the report.
        std::fs::remove_dir_all(&out).with_context(|| format!("remove {}", out.display()))?;
    }
    std::fs::create_dir_all(&scen_dir)?;
    let jobs = exp.jobs();
    let mut metas = BTreeMap::new();
    for j in &jobs {
        let f = scen_dir.join(format!("{}.toml", j.name));
        util::write(&f, &j.toml)?;
        metas.insert(j.name.clone(), scenario::meta(&f)?);
    }
    info(&format!(
        "experiment {}: {} scenarios in {}",
        exp.name,
        jobs.len(),
        scen_dir.display()
    ));
    if generate_only {
        return Ok(out);
    }
    if let Some(mode) = &exp.tcg {
        if std::env::var_os("VMFAIR_TCG").is_none() {
            // Read by qemu::Mode::for_cpus for every boot of this process.
            std::env::set_var("VMFAIR_TCG", mode);
        }
    }
    let t0 = Instant::now();
    let (built, base) = crate::build_all(ctx)?;
    let budget_start = Instant::now();
    let over_budget = |frac: f64| {
        exp.max_minutes
            .is_some_and(|m| budget_start.elapsed().as_secs_f64() > m * 60.0 * frac)
    };
    // (job name, attempts so far)
    let mut pending: Vec<(String, u32)> = jobs.iter().map(|j| (j.name.clone(), 0)).collect();
    let mut runs: BTreeMap<String, RunFigures> = BTreeMap::new();
    let mut invalid: Vec<(String, Vec<String>)> = Vec::new();
    let mut kernel = String::from("?");
    let mut boot_no = 0;
    let mut missing = Vec::new();
    while !pending.is_empty() {
        if over_budget(1.0) {
            missing.extend(pending.drain(..).map(|(n, _)| n));
            break;
        }
        // First attempts before reruns; reruns only while within 3/4 of
        // the budget.
        pending.sort_by_key(|(_, a)| *a);
        if pending[0].1 > 0 && over_budget(0.75) {
            missing.extend(pending.drain(..).map(|(n, _)| n));
            break;
        }
        let take = exp.per_boot.min(pending.len());
        let chunk: Vec<(String, u32)> = pending.drain(..take).collect();
        boot_no += 1;
        let ms: Vec<Meta> = chunk.iter().map(|(n, _)| metas[n].clone()).collect();
        phase(&format!(
            "experiment {}: boot {boot_no}, {} scenarios, {} left after it, {:.0} s so far",
            exp.name,
            ms.len(),
            pending.len(),
            t0.elapsed().as_secs_f64()
        ));
        let boot_name = format!("{}-{boot_no}", exp.name);
        let result = scenario::run_many(ctx, &built, &base, &ms, &out, &boot_name);
        let ran = match result {
            Ok((ran, outcome)) => {
                if outcome.done.is_none() {
                    info(&outcome.verdict());
                }
                ran
            }
            Err(e) => {
                info(&format!("boot {boot_name} failed: {e:#}"));
                Vec::new()
            }
        };
        for (name, attempts) in chunk {
            let r = ran.iter().find(|r| r.meta.name == name);
            let fig = r.and_then(|r| r.json.as_ref()).map(|v| {
                if let Some(k) = v["kernel"].as_str() {
                    kernel = k.to_string();
                }
                figures(v)
            });
            let (ok, problems) = match (&fig, r.and_then(|r| r.error.clone())) {
                (Some(Ok(f)), None) if f.valid && f.target_index.is_some() => (true, vec![]),
                (Some(Ok(f)), err) => {
                    let mut p = f.problems.clone();
                    if f.target_index.is_none() {
                        p.push("no target index".into());
                    }
                    p.extend(err);
                    (false, p)
                }
                (Some(Err(e)), err) => {
                    (false, vec![format!("{e}")].into_iter().chain(err).collect())
                }
                (None, err) => (false, vec![err.unwrap_or_else(|| "no result".into())]),
            };
            if let Some(Ok(mut f)) = fig {
                f.boot = boot_no;
                if ok {
                    print_run(&f);
                }
                runs.insert(name.clone(), f);
            }
            if !ok {
                let tag = format!("{name} (attempt {})", attempts + 1);
                info(&format!("invalid: {tag}: {}", problems.join("; ")));
                invalid.push((tag, problems));
                let json = out.join(format!("{name}.json"));
                if json.exists() {
                    let keep = out.join(format!("{name}.invalid-{}.json", attempts + 1));
                    std::fs::rename(&json, &keep)?;
                }
                if attempts < exp.max_reruns {
                    runs.remove(&name);
                    pending.push((name, attempts + 1));
                }
            }
        }
        // Partial outputs after every boot, so that a sweep cut short
        // still leaves its report.
        write_outputs(
            &exp,
            &out,
            &jobs,
            &runs,
            &invalid,
            &kernel,
            &pending_names(&pending),
        )?;
    }
    let pts = write_outputs(&exp, &out, &jobs, &runs, &invalid, &kernel, &missing)?;
    print_points(&pts);
    info(&format!(
        "experiment {} finished in {:.0} s: {}/report.md, figure.svg",
        exp.name,
        t0.elapsed().as_secs_f64(),
        out.display()
    ));
    if runs.values().all(|r| !r.valid) {
        bail!("no valid run in experiment {}", exp.name);
    }
    Ok(out)
}

fn print_run(f: &RunFigures) {
    println!(
        "  {:<32} index {:>7.2}  target cpu {:.2} wait {:.2} preempt/s {:>5.0}  dummies cpu {:.2}  idle {:.2}",
        f.scenario,
        f.target_index.unwrap_or(0.0),
        f.target_cpu,
        f.target_wait,
        f.target_preempt_per_s.unwrap_or(0.0),
        f.dummies_cpu,
        f.idle_cpu.unwrap_or(0.0)
    );
}

fn print_points(pts: &[Point]) {
    println!(
        "{:<14} {:>10} {:>6} {:>22} {:>18} {:>18} {:>18} {:>18} {:>18}",
        "policy",
        "dummies",
        "valid",
        "index",
        "rel",
        "target CPU",
        "speed",
        "dummies CPU",
        "idle CPU"
    );
    for p in pts {
        println!(
            "{:<14} {:>10} {:>6} {:>22} {:>18} {:>18} {:>18} {:>18} {:>18}",
            p.policy,
            if p.dummies == 0 {
                "0".to_string()
            } else {
                format!("{} {}", p.dummies, p.kind)
            },
            format!("{}/{}", p.valid, p.runs),
            fmt_stat(p.index, 1),
            fmt_stat(p.relative, 2),
            fmt_stat(p.target_cpu, 3),
            fmt_stat(p.speed, 2),
            fmt_stat(p.dummies_cpu, 2),
            fmt_stat(p.idle_cpu, 2)
        );
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    const EXP: &str = r#"
name = "t"
duration_s = 5
repetitions = 2
dummies = [0, 4]
dummy_kinds = ["idle", "busy"]
[sysctl]
"kernel.sched_schedstats" = 1
[target]
load = "bench"
[dummy.idle]
load = "idle"
tick_hz = 100
burst_us = 20
[dummy.busy]
load = "busy"
[[policy]]
name = "stock"
[[policy]]
name = "vmfair-w305"
policy = "vmfair"
target_weight = 305
"#;

    fn exp() -> Experiment {
        let e: Experiment = toml::from_str(EXP).unwrap();
        e.check().unwrap();
        e
    }

    #[test]
    fn target_weights() {
        let e = exp();
        let w: Vec<f64> = e.policy.iter().map(target_weight).collect();
        assert_eq!(w[0], 100.0);
        assert_eq!(w[1], 305.0);
        let nice = PolicyDef {
            name: "n".into(),
            policy: Some("stock".into()),
            target_weight: None,
            target_nice: Some(-5),
        };
        assert!((target_weight(&nice) - 304.8).abs() < 0.1);
        assert_eq!(PRIO_TO_WEIGHT[20], 1024);
    }

    #[test]
    fn expands_into_valid_scenarios() {
        let e = exp();
        let jobs = e.jobs();
        // Per repetition: solo + 2 kinds × 1 count, for 2 policies.
        assert_eq!(jobs.len(), 2 * (1 + 2) * 2);
        let j = jobs
            .iter()
            .find(|j| j.name == "t-vmfair-w305-idle-4-r2")
            .unwrap();
        let s = vmfair_scenario::Scenario::from_toml_str(&j.toml).unwrap();
        assert_eq!(s.policy, vmfair_scenario::Policy::Vmfair);
        assert_eq!(s.vm[0].weight, 305);
        assert_eq!(s.vm[0].load, vmfair_scenario::Load::Bench);
        assert_eq!(
            (s.vm[1].count, s.vm[1].tick_hz, s.vm[1].burst_us),
            (4, 100, 20)
        );
        assert_eq!(s.duration_s, 5.0);
        assert_eq!(s.sysctl["kernel.sched_schedstats"].to_string(), "1");
        assert!(jobs
            .iter()
            .any(|j| j.name == "t-stock-solo-r1" && j.dummies == 0));
        // Repetitions outermost.
        assert!(jobs[..jobs.len() / 2]
            .iter()
            .all(|j| j.name.ends_with("-r1")));
    }

    #[test]
    fn bad_experiments_rejected() {
        let bad = EXP.replace(
            "dummy_kinds = [\"idle\", \"busy\"]",
            "dummy_kinds = [\"x\"]",
        );
        let e: Experiment = toml::from_str(&bad).unwrap();
        assert!(e.check().is_err());
        assert!(toml::from_str::<Experiment>(&format!("{EXP}\nbogus = 1")).is_err());
        // A weight the scenario schema rejects.
        let w = EXP.replace("target_weight = 305", "target_weight = 0");
        let e: Experiment = toml::from_str(&w).unwrap();
        assert!(e.check().is_err());
    }

    fn result(name: &str, index: f64, valid: bool) -> Value {
        serde_json::json!({
            "scenario": name, "policy": "stock", "kernel": "k", "guest_cpus": 2,
            "duration_s": 10.0, "valid": valid, "problems": [],
            "accounting": {"cpus": 2, "window_s": 10.0, "tasks_cpu_s": 15.0, "idle_s": 5.0, "ratio": 1.0},
            "groups": [
                {"kind": "vm", "name": "target", "instance": 0, "pid": 1, "vcpus": 1,
                 "cpu_s": 8.0, "work": 1, "index": index, "wait_s": 2.0,
                 "involuntary_switches": 500},
                {"kind": "vm", "name": "dummy", "instance": 0, "pid": 2, "vcpus": 1,
                 "cpu_s": 1.0, "work": 1, "index": null, "kthread_cpu_s": 0.5,
                 "halt_poll_s": 0.1, "voluntary_switches": 1000},
                {"kind": "vm", "name": "dummy", "instance": 1, "pid": 3, "vcpus": 1,
                 "cpu_s": 1.0, "work": 1, "index": null, "kthread_cpu_s": 0.5,
                 "halt_poll_s": 0.1, "voluntary_switches": 1000}
            ]
        })
    }

    #[test]
    fn figures_of_a_run() {
        let f = figures(&result("x", 50.0, true)).unwrap();
        assert_eq!(f.target_index, Some(50.0));
        assert!((f.target_cpu - 0.8).abs() < 1e-12);
        assert!((f.target_wait - 0.2).abs() < 1e-12);
        assert_eq!(f.target_preempt_per_s, Some(50.0));
        assert!((f.dummies_cpu - 0.3).abs() < 1e-12);
        assert!((f.dummies_halt_poll.unwrap() - 0.02).abs() < 1e-12);
        assert_eq!(f.dummies_sleeps_per_s, Some(200.0));
        assert_eq!(f.idle_cpu, Some(0.5));
        assert!(figures(&serde_json::json!({"duration_s": 1.0, "groups": []})).is_err());
    }

    #[test]
    fn points_are_normalised_to_the_solo_run() {
        let e = exp();
        let jobs = e.jobs();
        let mut runs = BTreeMap::new();
        for (name, idx, valid) in [
            ("t-stock-solo-r1", 100.0, true),
            ("t-stock-solo-r2", 80.0, true),
            ("t-stock-idle-4-r1", 45.0, true),
            ("t-stock-idle-4-r2", 63.0, true),
            // Invalid runs never count.
            ("t-stock-busy-4-r1", 1000.0, false),
        ] {
            runs.insert(
                name.to_string(),
                figures(&result(name, idx, valid)).unwrap(),
            );
        }
        let pts = points(&jobs, &runs);
        let solo = pts
            .iter()
            .find(|p| p.policy == "stock" && p.dummies == 0)
            .unwrap();
        assert_eq!(solo.relative.unwrap().mean, 1.0);
        let idle = pts
            .iter()
            .find(|p| p.policy == "stock" && p.kind == "idle")
            .unwrap();
        let rel = idle.relative.unwrap();
        assert!((rel.mean - 0.6).abs() < 1e-12);
        assert!((rel.min - 0.5).abs() < 1e-12 && (rel.max - 0.7).abs() < 1e-12);
        assert_eq!((idle.valid, idle.runs), (2, 2));
        let busy = pts
            .iter()
            .find(|p| p.policy == "stock" && p.kind == "busy")
            .unwrap();
        assert_eq!((busy.valid, busy.runs), (0, 1));
        assert!(busy.index.is_none() && busy.relative.is_none());
        // No solo run for this line: no relative figures.
        assert!(pts
            .iter()
            .filter(|p| p.policy == "vmfair-w305")
            .all(|p| p.relative.is_none()));
        let svg = figure_svg(&e, &pts);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("stock (idle)"));
        let md = report_md(&e, &pts, &runs, &[], "k", &[]);
        assert!(md.contains(
            "| stock | 4 idle | 2/2 | 54.0 (45.0–63.0) | 0.60 (0.50–0.70) | 0.800 (0.800–0.800) | \
             0.60 (0.50–0.70) | 1.00 (1.00–1.00) |"
        ));
    }

    #[test]
    fn each_run_is_normalised_within_its_boot() {
        let e = exp();
        let jobs = e.jobs();
        let mut runs = BTreeMap::new();
        // Boot 2 ran on a host twice as fast: the same loss must come out.
        for (name, idx, boot) in [
            ("t-stock-solo-r1", 100.0, 1),
            ("t-vmfair-w305-solo-r1", 100.0, 1),
            ("t-stock-idle-4-r1", 50.0, 1),
            ("t-stock-solo-r2", 200.0, 2),
            ("t-stock-idle-4-r2", 100.0, 2),
            // No solo run in boot 3: the mean of all solo runs (133.3).
            ("t-vmfair-w305-idle-4-r2", 400.0 / 3.0, 3),
        ] {
            let mut f = figures(&result(name, idx, true)).unwrap();
            f.boot = boot;
            runs.insert(name.to_string(), f);
        }
        let pts = points(&jobs, &runs);
        let find = |pol: &str, kind: &str| {
            pts.iter()
                .find(|p| p.policy == pol && p.kind == kind)
                .unwrap()
        };
        let rel = find("stock", "idle").relative.unwrap();
        assert!((rel.min - 0.5).abs() < 1e-12 && (rel.max - 0.5).abs() < 1e-12);
        let rel = find("vmfair-w305", "idle").relative.unwrap();
        assert!((rel.mean - 1.0).abs() < 1e-12);
        // Same CPU everywhere: speed equals rel.
        let sp = find("stock", "idle").speed.unwrap();
        assert!((sp.mean - 0.5).abs() < 1e-12);
    }
}
