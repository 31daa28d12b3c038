//! Panels of an experiment: fixed sets of VMs (`[[panel]]`, e.g. a 1-vCPU VM
//! beside a 4-vCPU VM, or two VMs of different weights) run under a few of
//! the experiment's policies, each VM's CPU held against what it is entitled
//! to. Where the sweep asks what the target VM's benchmark keeps, a panel
//! asks whether the CPU is shared as vmfair promises: weighted max-min fair
//! shares per VM with their reservations and limits
//! (`crate::fairness::entitlements`, the module's own arithmetic), whatever
//! the policy the panel runs under: a reservation or limit is written only
//! into the scenarios of policies that have it, but what every VM is held
//! against is its entitlement under vmfair, with them.

use super::points::Stat;
use super::spec::Experiment;
use anyhow::{anyhow, bail, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use vmfair_scenario::{cpus_rounded, GroupKind, Scenario, ScenarioResult};

/// A `[[panel]]` of the experiment file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PanelDef {
    /// Short name, part of the scenario names and of `panel-<name>.svg`.
    pub name: String,
    /// What the panel shows, in a few words (figure title, summary).
    pub title: String,
    /// Names of `[[policy]]` entries to run the panel under.
    pub policies: Vec<String>,
    /// Default: the experiment's `repetitions`.
    #[serde(default)]
    pub repetitions: Option<u32>,
    pub vm: Vec<PanelVm>,
}

/// A VM of a panel (`[[panel.vm]]`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PanelVm {
    pub name: String,
    #[serde(default = "one")]
    pub count: u32,
    #[serde(default = "one")]
    pub vcpus: u32,
    #[serde(default = "busy")]
    pub load: String,
    #[serde(default)]
    pub weight: Option<u32>,
    /// CPUs guaranteed to each instance while it demands them: written
    /// only under policy vmfair (the only one with a minimum).
    #[serde(default)]
    pub reservation: Option<f64>,
    /// The most CPUs each instance gets: written under vmfair, and under
    /// cgroup as the VM's `cpu.max` (the scenario format's rules).
    #[serde(default)]
    pub limit: Option<f64>,
}

fn one() -> u32 {
    1
}
fn busy() -> String {
    "busy".into()
}

/// One generated scenario of a panel.
#[derive(Clone, Debug)]
pub struct PanelJob {
    pub name: String,
    pub panel: String,
    /// The `[[policy]]` entry's name.
    pub policy: String,
    pub rep: u32,
    pub toml: String,
    /// The same scenario under policy vmfair, with every reservation and
    /// limit whatever `toml`'s policy keeps of them: what each VM is
    /// entitled to in every policy's run.
    pub vmfair_toml: String,
}

impl Experiment {
    /// The panel scenarios, repetitions outermost (as [`Experiment::jobs`]).
    pub fn panel_jobs(&self) -> Vec<PanelJob> {
        let reps = self
            .panel
            .iter()
            .map(|p| p.repetitions.unwrap_or(self.repetitions))
            .max()
            .unwrap_or(0);
        let mut out = Vec::new();
        for rep in 1..=reps {
            for p in &self.panel {
                if rep > p.repetitions.unwrap_or(self.repetitions) {
                    continue;
                }
                for pol in &p.policies {
                    let name = format!("{}-{}-{pol}-r{rep}", self.name, p.name);
                    let toml = self.panel_toml(&name, p, self.real_policy(pol));
                    let vmfair_toml = self.panel_toml(&name, p, "vmfair");
                    out.push(PanelJob {
                        name,
                        panel: p.name.clone(),
                        policy: pol.clone(),
                        rep,
                        toml,
                        vmfair_toml,
                    });
                }
            }
        }
        out
    }

    /// The grouping policy of the `[[policy]]` entry `policy`.
    fn real_policy<'a>(&'a self, policy: &'a str) -> &'a str {
        self.policy
            .iter()
            .find(|d| d.name == policy)
            .map_or(policy, |d| d.policy.as_deref().unwrap_or(&d.name))
    }

    /// A panel's scenario under the grouping policy `real`, with the
    /// reservations and limits that policy has.
    fn panel_toml(&self, name: &str, p: &PanelDef, real: &str) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "# Generated from experiment {:?}, panel {:?}; do not edit.",
            self.name, p.name
        );
        let _ = writeln!(s, "name = {name:?}\nguest_cpus = {}", self.guest_cpus);
        let _ = writeln!(s, "duration_s = {:?}", self.duration_s);
        let _ = writeln!(s, "warmup_s = {:?}\npolicy = {real:?}", self.warmup_s);
        if !self.sysctl.is_empty() {
            let _ = writeln!(s, "\n[sysctl]");
            for (k, v) in &self.sysctl {
                let _ = writeln!(s, "{k:?} = {v}");
            }
        }
        for vm in &p.vm {
            let _ = writeln!(s, "\n[[vm]]\nname = {:?}\ncount = {}", vm.name, vm.count);
            let _ = writeln!(s, "vcpus = {}\nload = {:?}", vm.vcpus, vm.load);
            if let Some(w) = vm.weight {
                let _ = writeln!(s, "weight = {w}");
            }
            if let Some(r) = vm.reservation.filter(|_| real == "vmfair") {
                let _ = writeln!(s, "reservation = {r:?}");
            }
            if let Some(l) = vm.limit.filter(|_| matches!(real, "vmfair" | "cgroup")) {
                let _ = writeln!(s, "limit = {l:?}");
            }
        }
        s
    }

    /// The panels' own checks (called from `Experiment::check`).
    pub(super) fn check_panels(&self, sweep_names: &[String]) -> Result<()> {
        let mut seen: Vec<&str> = Vec::new();
        for p in &self.panel {
            if seen.contains(&p.name.as_str()) {
                bail!("panel {:?} listed twice", p.name);
            }
            seen.push(&p.name);
            if p.vm.is_empty() || p.policies.is_empty() {
                bail!("panel {:?} needs at least one vm and one policy", p.name);
            }
            for pol in &p.policies {
                let Some(d) = self.policy.iter().find(|d| &d.name == pol) else {
                    bail!("panel {:?}: policy {pol:?} has no [[policy]] entry", p.name);
                };
                if d.target_weight.is_some() || d.target_nice.is_some() {
                    bail!(
                        "panel {:?}: policy {pol:?} sets the sweep target's weight or nice; \
                         a panel sets weights per VM",
                        p.name
                    );
                }
            }
        }
        for j in self.panel_jobs() {
            if sweep_names.contains(&j.name) {
                bail!("panel scenario {} has the name of a sweep scenario", j.name);
            }
            Scenario::from_toml_str(&j.toml)
                .map_err(|e| anyhow!("generated scenario {}: {e}", j.name))?;
            let scn = Scenario::from_toml_str(&j.vmfair_toml)
                .map_err(|e| anyhow!("generated scenario {} under vmfair: {e}", j.name))?;
            if crate::fairness::entitlements(&scn).is_none() {
                bail!(
                    "panel {:?}: only busy VMs have an entitlement to compare with",
                    j.panel
                );
            }
        }
        Ok(())
    }
}

/// One VM instance of a panel run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VmCpu {
    /// `name`, or `name#i` for VMs with several instances.
    pub label: String,
    pub vcpus: u32,
    pub weight: u32,
    /// CPU time / window.
    pub cpu: f64,
    pub entitled: f64,
}

/// The figures of one panel run that the report uses.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PanelRun {
    pub scenario: String,
    pub panel: String,
    pub policy: String,
    pub valid: bool,
    pub problems: Vec<String>,
    pub boot: usize,
    pub vms: Vec<VmCpu>,
}

/// A VM instance of a panel scenario, in the scenario's order, with its
/// entitlement, reservation and limit under vmfair.
struct Slot {
    name: String,
    instance: u32,
    /// `name`, or `name#i` for VMs with several instances.
    label: String,
    vcpus: u32,
    weight: u32,
    reservation: f64,
    limit: f64,
    entitled: f64,
}

/// Every VM instance of a panel job's scenario. The entitlements are those
/// of the job's scenario under vmfair, reservations and limits included
/// (a stock run's scenario has none: [`crate::fairness::entitlements`]
/// gives it no entitlement at all, and a copy set to vmfair would lack the
/// reservations).
fn slots(job: &PanelJob) -> Result<Vec<Slot>> {
    let scn =
        Scenario::from_toml_str(&job.vmfair_toml).map_err(|e| anyhow!("{}: {e}", job.name))?;
    let ents = crate::fairness::entitlements(&scn)
        .ok_or_else(|| anyhow!("{}: no entitlement", job.name))?;
    let mut out = Vec::new();
    for vm in &scn.vm {
        for i in 0..vm.count {
            let entitled = ents
                .iter()
                .find(|e| e.0 == vm.name && e.1 == i)
                .map(|e| e.2)
                .ok_or_else(|| anyhow!("{}: no entitlement for vm {}#{i}", job.name, vm.name))?;
            out.push(Slot {
                name: vm.name.clone(),
                instance: i,
                label: if vm.count == 1 {
                    vm.name.clone()
                } else {
                    format!("{}#{i}", vm.name)
                },
                vcpus: vm.vcpus,
                weight: vm.weight,
                reservation: cpus_rounded(vm.reservation),
                limit: cpus_rounded(vm.limit),
                entitled,
            });
        }
    }
    Ok(out)
}

/// Extracts a panel run's figures from its result.
pub fn panel_run(job: &PanelJob, res: &ScenarioResult) -> Result<PanelRun> {
    let window = Some(res.duration_s)
        .filter(|w| *w > 0.0)
        .ok_or_else(|| anyhow!("result without a window"))?;
    let mut vms = Vec::new();
    let mut problems = res.problems.clone();
    for s in slots(job)? {
        let g = res
            .groups
            .iter()
            .find(|g| g.kind == GroupKind::Vm && g.name == s.name && g.instance == s.instance);
        match g {
            Some(g) => vms.push(VmCpu {
                label: s.label,
                vcpus: s.vcpus,
                weight: s.weight,
                cpu: g.cpu_s / window,
                entitled: s.entitled,
            }),
            None => problems.push(format!("no result for vm {}", s.label)),
        }
    }
    Ok(PanelRun {
        scenario: res.scenario.clone(),
        panel: job.panel.clone(),
        policy: job.policy.clone(),
        valid: res.valid && problems.is_empty(),
        problems,
        boot: 0,
        vms,
    })
}

/// One VM of a panel point: its CPU over the valid repetitions.
#[derive(Clone, Debug, Serialize)]
pub struct VmPoint {
    /// The `[[panel.vm]]` entry's name.
    pub name: String,
    /// `name`, or `name#i` for VMs with several instances.
    pub label: String,
    pub vcpus: u32,
    pub weight: u32,
    /// CPUs, 0 for none (as under vmfair, whatever the point's policy).
    pub reservation: f64,
    pub limit: f64,
    pub cpu: Option<Stat>,
    pub entitled: f64,
}

/// A panel under one policy, over its repetitions.
#[derive(Clone, Debug, Serialize)]
pub struct PanelPoint {
    pub panel: String,
    pub title: String,
    pub policy: String,
    pub runs: usize,
    pub valid: usize,
    pub vms: Vec<VmPoint>,
}

impl PanelPoint {
    /// The largest relative deviation of a VM's mean CPU from its
    /// entitlement, signed; of equal ones the first VM's (None without
    /// valid runs).
    pub fn worst_deviation(&self) -> Option<f64> {
        self.vms
            .iter()
            .filter(|v| v.entitled > 0.0)
            .filter_map(|v| Some((v.cpu?.mean - v.entitled) / v.entitled))
            .fold(None, |worst: Option<f64>, d| match worst {
                Some(w) if w.abs() >= d.abs() - 1e-12 => Some(w),
                _ => Some(d),
            })
    }
}

/// Groups panel runs into points, in the order of the panels and their
/// policies. Every point lists all VMs of its panel's scenario, in the
/// scenario's order, whatever its runs kept (a VM without valid runs has no
/// CPU), so that the points of a panel line up VM by VM.
pub fn panel_points(
    exp: &Experiment,
    runs: &BTreeMap<String, PanelRun>,
) -> Result<Vec<PanelPoint>> {
    let jobs = exp.panel_jobs();
    let mut out = Vec::new();
    for p in &exp.panel {
        for pol in &p.policies {
            let job = jobs
                .iter()
                .find(|j| j.panel == p.name && &j.policy == pol)
                .ok_or_else(|| anyhow!("panel {:?}: no scenario for policy {pol:?}", p.name))?;
            let all: Vec<&PanelRun> = runs
                .values()
                .filter(|r| r.panel == p.name && &r.policy == pol)
                .collect();
            let good: Vec<&PanelRun> = all.iter().copied().filter(|r| r.valid).collect();
            let vms = slots(job)?
                .into_iter()
                .map(|s| {
                    let xs: Vec<f64> = good
                        .iter()
                        .filter_map(|r| r.vms.iter().find(|x| x.label == s.label))
                        .map(|x| x.cpu)
                        .collect();
                    VmPoint {
                        name: s.name,
                        label: s.label,
                        vcpus: s.vcpus,
                        weight: s.weight,
                        reservation: s.reservation,
                        limit: s.limit,
                        cpu: Stat::of(&xs),
                        entitled: s.entitled,
                    }
                })
                .collect();
            out.push(PanelPoint {
                panel: p.name.clone(),
                title: p.title.clone(),
                policy: pol.clone(),
                runs: all.len(),
                valid: good.len(),
                vms,
            });
        }
    }
    Ok(out)
}

/// `lo` and `hi` to two decimals, one figure where they read the same.
fn span2(lo: f64, hi: f64) -> String {
    let (a, b) = (format!("{lo:.2}"), format!("{hi:.2}"));
    if a == b {
        a
    } else {
        format!("{a}–{b}")
    }
}

/// The VMs of a point by `[[panel.vm]]` entry, in order: (summary label,
/// the entry's VMs). An entry of several instances reads `name#0–7`.
fn entries(vms: &[VmPoint]) -> Vec<(String, Vec<&VmPoint>)> {
    let mut out: Vec<(String, Vec<&VmPoint>)> = Vec::new();
    for v in vms {
        match out.last_mut() {
            Some((_, g)) if g[0].name == v.name => g.push(v),
            _ => out.push((v.name.clone(), vec![v])),
        }
    }
    for (lab, g) in &mut out {
        if g.len() > 1 {
            *lab = format!("{}#0–{}", g[0].name, g.len() - 1);
        }
    }
    out
}

/// `f` of an entry's VMs, lowest to highest (None if any VM has none).
fn entry_span(g: &[&VmPoint], f: impl Fn(&VmPoint) -> Option<f64>) -> Option<String> {
    let xs: Option<Vec<f64>> = g.iter().map(|v| f(v)).collect();
    let xs = xs?;
    let lo = xs.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    Some(span2(lo, hi))
}

/// The summary line of one panel: each policy's mean CPU per VM beside the
/// entitlement (the VMs of an entry with several instances as the range
/// over them), the reservations and limits if the panel has any, and how
/// far each policy's farthest VM is from its entitlement.
pub fn panel_summary(title: &str, pts: &[&PanelPoint]) -> Option<String> {
    let first = pts.iter().find(|p| !p.vms.is_empty())?;
    let groups = entries(&first.vms);
    let labels: Vec<&str> = groups.iter().map(|g| g.0.as_str()).collect();
    let cpus = |p: &PanelPoint| -> Option<String> {
        let xs: Option<Vec<String>> = entries(&p.vms)
            .iter()
            .map(|(_, g)| entry_span(g, |v| v.cpu.map(|c| c.mean)))
            .collect();
        Some(xs?.join(" / "))
    };
    let per: Vec<String> = pts
        .iter()
        .filter_map(|p| Some(format!("{} {}", p.policy, cpus(p)?)))
        .collect();
    if per.is_empty() {
        return None;
    }
    // An entry's amounts; `none` for an entry without any.
    let list = |f: &dyn Fn(&VmPoint) -> f64, none: &str| -> String {
        let xs: Vec<String> = groups
            .iter()
            .map(|(_, g)| {
                if !none.is_empty() && g.iter().all(|v| f(v) == 0.0) {
                    none.to_string()
                } else {
                    entry_span(g, |v| Some(f(v))).unwrap_or_default()
                }
            })
            .collect();
        xs.join(" / ")
    };
    let mut ent = list(&|v| v.entitled, "");
    for (what, f) in amount_columns(&first.vms) {
        ent.push_str(&format!("; {what} {}", list(&f, "–")));
    }
    let dev: Vec<String> = pts
        .iter()
        .filter_map(|p| {
            // Rounded first, so that a tiny deviation reads 0 %, not -0 %.
            let d = (p.worst_deviation()? * 100.0).round();
            Some(if d == 0.0 {
                format!("{} 0 %", p.policy)
            } else {
                format!("{} {d:+.0} %", p.policy)
            })
        })
        .collect();
    Some(format!(
        "**{title}**: CPU per VM ({}): {}; entitled {ent}. Farthest VM from its entitlement: {}.",
        labels.join(" / "),
        per.join(", "),
        dev.join(", ")
    ))
}

fn fmt_cpu(s: Option<Stat>) -> String {
    match s {
        None => "–".into(),
        Some(s) if s.n == 1 => format!("{:.3}", s.mean),
        Some(s) => format!("{:.3} ({:.3}–{:.3})", s.mean, s.min, s.max),
    }
}

/// A reservation or limit column of a panel's tables.
pub type AmountColumn = (&'static str, fn(&VmPoint) -> f64);

/// The reservation and limit columns a panel's tables need: those its VMs
/// have.
pub fn amount_columns(vms: &[VmPoint]) -> Vec<AmountColumn> {
    let all: [AmountColumn; 2] = [("reservation", |v| v.reservation), ("limit", |v| v.limit)];
    all.into_iter()
        .filter(|(_, f)| vms.iter().any(|v| f(v) > 0.0))
        .collect()
}

/// A reservation or limit in a table cell, `–` for none.
pub fn fmt_amount(cpus: f64) -> String {
    if cpus > 0.0 {
        format!("{cpus:.2}")
    } else {
        "–".into()
    }
}

/// What the `entitled` column of a panel's table means.
pub fn entitled_note(exp: &Experiment, amounts: bool) -> String {
    let mut s = format!(
        "weighted max-min fair share of the {} CPUs per VM, as vmfair defines it",
        exp.guest_cpus
    );
    if amounts {
        s.push_str(
            ", with the VM's reservation and limit whatever the policy (only vmfair has a \
             reservation; vmfair and cgroup a limit)",
        );
    }
    s
}

/// The panels' section of `report.md`: per panel a table (one row per VM, a
/// column per policy) and its figure.
pub fn panels_md(exp: &Experiment, pts: &[PanelPoint]) -> String {
    let mut s = String::new();
    for p in &exp.panel {
        let mine: Vec<&PanelPoint> = pts.iter().filter(|x| x.panel == p.name).collect();
        let _ = writeln!(s, "## {}\n", p.title);
        let runs: Vec<String> = mine
            .iter()
            .map(|x| format!("{} {}/{}", x.policy, x.valid, x.runs))
            .collect();
        let first = mine.iter().find(|x| x.runs > 0);
        let cols = first.map_or_else(Vec::new, |f| amount_columns(&f.vms));
        let _ = writeln!(
            s,
            "CPU per VM (CPU-seconds per second of window), mean (min–max) of the valid \
             repetitions (valid/runs: {}); `entitled`: {}.\n",
            runs.join(", "),
            entitled_note(exp, !cols.is_empty())
        );
        let _ = write!(s, "| VM | vCPUs | weight |");
        for (c, _) in &cols {
            let _ = write!(s, " {c} |");
        }
        for x in &mine {
            let _ = write!(s, " {} |", x.policy);
        }
        let _ = writeln!(s, " entitled |");
        let _ = writeln!(
            s,
            "|---|---|---|{}---|",
            "---|".repeat(cols.len() + mine.len())
        );
        let Some(first) = first else {
            let _ = writeln!(s, "\n(no runs)\n");
            continue;
        };
        for (k, v) in first.vms.iter().enumerate() {
            let _ = write!(s, "| {} | {} | {} |", v.label, v.vcpus, v.weight);
            for (_, f) in &cols {
                let _ = write!(s, " {} |", fmt_amount(f(v)));
            }
            for x in &mine {
                let _ = write!(s, " {} |", fmt_cpu(x.vms.get(k).and_then(|v| v.cpu)));
            }
            let _ = writeln!(s, " {:.3} |", v.entitled);
        }
        let _ = writeln!(s, "\n![{}](panel-{}.svg)\n", p.title, p.name);
    }
    s
}
