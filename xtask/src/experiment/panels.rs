//! Panels of an experiment: fixed sets of VMs (`[[panel]]`, e.g. a 1-vCPU VM
//! beside a 4-vCPU VM, or two VMs of different weights) run under a few of
//! the experiment's policies, each VM's CPU held against what it is entitled
//! to. Where the sweep asks what the target VM's benchmark keeps, a panel
//! asks whether the CPU is shared as vmfair promises: weighted max-min fair
//! shares per VM (`crate::fairness::entitlements`, the module's own
//! arithmetic), whatever the policy the panel runs under.

use super::points::Stat;
use super::spec::Experiment;
use anyhow::{anyhow, bail, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use vmfair_scenario::{GroupKind, Policy, Scenario, ScenarioResult};

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
                    let toml = self.panel_toml(&name, p, pol);
                    out.push(PanelJob {
                        name,
                        panel: p.name.clone(),
                        policy: pol.clone(),
                        rep,
                        toml,
                    });
                }
            }
        }
        out
    }

    fn panel_toml(&self, name: &str, p: &PanelDef, policy: &str) -> String {
        let real = self
            .policy
            .iter()
            .find(|d| d.name == policy)
            .map_or(policy, |d| d.policy.as_deref().unwrap_or(&d.name));
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
            let scn = Scenario::from_toml_str(&j.toml)
                .map_err(|e| anyhow!("generated scenario {}: {e}", j.name))?;
            if entitled(&scn).is_none() {
                bail!(
                    "panel {:?}: only busy VMs have an entitlement to compare with",
                    j.panel
                );
            }
        }
        Ok(())
    }
}

/// Entitled CPU per (VM name, instance) of a panel scenario, under vmfair's
/// rules whatever policy it ran under.
fn entitled(scn: &Scenario) -> Option<Vec<(String, u32, f64)>> {
    let mut as_vmfair = scn.clone();
    as_vmfair.policy = Policy::Vmfair;
    crate::fairness::entitlements(&as_vmfair)
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
/// entitlement.
struct Slot {
    name: String,
    instance: u32,
    /// `name`, or `name#i` for VMs with several instances.
    label: String,
    vcpus: u32,
    weight: u32,
    entitled: f64,
}

/// Every VM instance of a panel job's scenario.
fn slots(job: &PanelJob) -> Result<Vec<Slot>> {
    let scn = Scenario::from_toml_str(&job.toml).map_err(|e| anyhow!("{}: {e}", job.name))?;
    let ents = entitled(&scn).ok_or_else(|| anyhow!("{}: no entitlement", job.name))?;
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
    pub label: String,
    pub vcpus: u32,
    pub weight: u32,
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
                        label: s.label,
                        vcpus: s.vcpus,
                        weight: s.weight,
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

/// The summary line of one panel: each policy's mean CPU per VM beside the
/// entitlement, and how far each policy's farthest VM is from it.
pub fn panel_summary(title: &str, pts: &[&PanelPoint]) -> Option<String> {
    let first = pts.iter().find(|p| !p.vms.is_empty())?;
    let labels: Vec<&str> = first.vms.iter().map(|v| v.label.as_str()).collect();
    let cpus = |p: &PanelPoint| -> Option<String> {
        let xs: Option<Vec<String>> = p
            .vms
            .iter()
            .map(|v| v.cpu.map(|c| format!("{:.2}", c.mean)))
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
    let ent: Vec<String> = first
        .vms
        .iter()
        .map(|v| format!("{:.2}", v.entitled))
        .collect();
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
        "**{title}**: CPU per VM ({}): {}; entitled {}. Farthest VM from its entitlement: {}.",
        labels.join(" / "),
        per.join(", "),
        ent.join(" / "),
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
        let _ = writeln!(
            s,
            "CPU per VM (CPU-seconds per second of window), mean (min–max) of the valid \
             repetitions (valid/runs: {}); `entitled`: weighted max-min fair share of the {} \
             CPUs per VM, as vmfair defines it.\n",
            runs.join(", "),
            exp.guest_cpus
        );
        let _ = write!(s, "| VM | vCPUs | weight |");
        for x in &mine {
            let _ = write!(s, " {} |", x.policy);
        }
        let _ = writeln!(s, " entitled |");
        let _ = writeln!(s, "|---|---|---|{}---|", "---|".repeat(mine.len()));
        let Some(first) = mine.iter().find(|x| x.runs > 0) else {
            let _ = writeln!(s, "\n(no runs)\n");
            continue;
        };
        for (k, v) in first.vms.iter().enumerate() {
            let _ = write!(s, "| {} | {} | {} |", v.label, v.vcpus, v.weight);
            for x in &mine {
                let _ = write!(s, " {} |", fmt_cpu(x.vms.get(k).and_then(|v| v.cpu)));
            }
            let _ = writeln!(s, " {:.3} |", v.entitled);
        }
        let _ = writeln!(s, "\n![{}](panel-{}.svg)\n", p.title, p.name);
    }
    s
}
