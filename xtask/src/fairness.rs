//! Judging scenario results against what each VM is entitled to (issue 3's
//! acceptance): weighted max-min fair shares of the guest's CPUs, with each
//! VM's reservation and limit, computed by `vmfair-policy` (the module's own
//! code), the settling time of a run-time weight, reservation or limit change,
//! that no VM stops, and the runner's own checks.
//!
//! `cargo xtask judge SCENARIO.toml…` prints the verdicts for results already
//! in `results/`; `make test` runs the fairness scenarios and counts them.

use crate::util::{self, Ctx};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use vmfair_scenario::{
    cpus_rounded, EventAction, EventSpec, GroupKind, Load, Policy, Scenario, ScenarioResult,
};

/// Allowed relative deviation from the entitlement, unless the scenario sets `tolerance_pct`.
pub const TOLERANCE: f64 = 0.10;
/// A run-time weight change must reach its new share within this many seconds.
pub const SETTLE_LIMIT_S: f64 = 2.0;
/// A run-time reservation or limit change (no weight change) must settle within this many
/// seconds: the load monitor applies it at its next pass, 100 ms later.
pub const ALLOC_SETTLE_LIMIT_S: f64 = 1.0;
/// Length of the rolling window over which the settling share is measured.
const ROLLING_S: f64 = 0.5;
/// A VM must make progress in every span of this length of the time series.
const PROGRESS_SPAN_S: f64 = 0.5;

/// One pass/fail finding about one result.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

fn verdict(name: &str, ok: bool, detail: String) -> Verdict {
    Verdict {
        name: name.to_string(),
        ok,
        detail,
    }
}

/// CPU cap of a `cpu_max` value (`"QUOTA PERIOD"`), None for `max`.
fn cpu_max_cap(s: &str) -> Option<f64> {
    let mut it = s.split_whitespace();
    let q: f64 = it.next()?.parse().ok()?;
    let p: f64 = it.next().and_then(|p| p.parse().ok()).unwrap_or(100_000.0);
    Some(q / p)
}

/// The weight of `vm` at the end of the window: its last `weight` event, or its own.
fn final_weight(scn: &Scenario, vm: &str, own: u32) -> u32 {
    scn.event
        .iter()
        .filter(|e| e.action == EventAction::Weight && e.vm.as_deref() == Some(vm))
        .filter_map(|e| e.value.as_ref()?.to_string().parse().ok())
        .next_back()
        .unwrap_or(own)
}

/// The reservation or limit (`action`) of `vm` at the end of the window: its last such event,
/// or its own (`own`); as the runner writes it (two decimals).
fn final_amount(scn: &Scenario, vm: &str, action: EventAction, own: f64) -> f64 {
    let last = scn
        .event
        .iter()
        .filter(|e| e.action == action && e.vm.as_deref() == Some(vm))
        .filter_map(EventSpec::cpus)
        .next_back();
    cpus_rounded(last.unwrap_or(own))
}

/// The share mode the scenario sets (`kernel.vmfair.share_mode` in `[sysctl]`), else per VM.
fn share_mode(scn: &Scenario) -> vmfair_policy::ShareMode {
    scn.sysctl
        .get("kernel.vmfair.share_mode")
        .and_then(|v| vmfair_policy::parse_share_mode(v.to_string().as_bytes()).ok())
        .unwrap_or(vmfair_policy::ShareMode::PerVm)
}

/// Entitled CPUs of every VM instance, in the order of the result's VM groups (by name and
/// instance), with the weights, reservations and limits in force at the end of the window
/// (after the last such event): `clamp(λ·weight, min(reservation, D), D)` with `D =
/// min(busy threads, limit)` ([`vmfair_policy::allocation`]). VMs placed by hand under a
/// `cpu_max` get their cap, taken out first. None if the scenario is not one whose shares
/// vmfair defines (not policy vmfair or cgroup, idle/bursty VMs, host processes).
///
/// Under policy `cgroup` (one cgroup per VM with `cpu.weight`, a limit as `cpu.max`) the
/// promise is the same weighted max-min share per VM, so the same entitlements serve as the
/// anchor that vmfair's precision is measured beside.
pub fn entitlements(scn: &Scenario) -> Option<Vec<(String, u32, f64)>> {
    if !matches!(scn.policy, Policy::Vmfair | Policy::Cgroup) || !scn.host.is_empty() {
        return None;
    }
    let mode = match scn.policy {
        Policy::Cgroup => vmfair_policy::ShareMode::PerVm,
        _ => share_mode(scn),
    };
    let mut capped = Vec::new();
    let mut fair = Vec::new();
    for vm in &scn.vm {
        if !matches!(vm.load, Load::Busy | Load::Bench) {
            return None;
        }
        let busy = vm.vcpus + vm.io_threads;
        let w = final_weight(scn, &vm.name, vm.weight);
        let reservation = final_amount(scn, &vm.name, EventAction::Reservation, vm.reservation);
        let limit = final_amount(scn, &vm.name, EventAction::Limit, vm.limit);
        for i in 0..vm.count {
            match vm.cpu_max.as_deref().and_then(cpu_max_cap) {
                // Placed by hand under a cap: the cgroup decides, not vmfair.
                Some(cap) => capped.push((vm.name.clone(), i, cap.min(f64::from(busy)))),
                None => fair.push((
                    vm.name.clone(),
                    i,
                    vmfair_policy::CpuClaim {
                        weight: vmfair_policy::effective_weight(mode, w, vm.vcpus),
                        demand: f64::from(busy),
                        reservation,
                        limit,
                    },
                )),
            }
        }
    }
    let rest = f64::from(scn.guest_cpus) - capped.iter().map(|c| c.2).sum::<f64>();
    let mut out = vec![0.0; fair.len()];
    let claims: Vec<vmfair_policy::CpuClaim> = fair.iter().map(|f| f.2).collect();
    vmfair_policy::allocation(rest.max(0.0), &claims, &mut out);
    let mut all: Vec<(String, u32, f64)> = capped;
    all.extend(fair.into_iter().zip(out).map(|(f, e)| (f.0, f.1, e)));
    Some(all)
}

/// CPU of a group's series between times `a` and `b` (interpolating nothing: the samples
/// closest at or after `a` and at or before `b`), as (cpu seconds, seconds).
fn series_span(series: &[vmfair_scenario::Sample], a: f64, b: f64) -> Option<(f64, f64)> {
    let s = series.iter().find(|p| p.t_s >= a - 1e-6)?;
    let e = series.iter().rev().find(|p| p.t_s <= b + 1e-6)?;
    (e.t_s > s.t_s).then_some((e.cpu_s - s.cpu_s, e.t_s - s.t_s))
}

/// The verdicts for one result of scenario `scn`.
pub fn judge(scn: &Scenario, res: &ScenarioResult) -> Vec<Verdict> {
    let mut v = Vec::new();
    if !res.valid {
        v.push(verdict(
            "valid",
            false,
            format!("invalid run: {}", res.problems.join("; ")),
        ));
        return v;
    }
    let vms: Vec<_> = res
        .groups
        .iter()
        .filter(|g| g.kind == GroupKind::Vm)
        .collect();
    let last_change = last_share_event(scn);
    let change = change_word(scn);
    let entitled = entitlements(scn);
    let tol = tolerance(scn);
    let settle_limit = settle_limit(scn);

    // Shares: over the whole window, or after a run-time change has had time to settle.
    if let Some(ent) = &entitled {
        let from = last_change.map(|t| t + settle_limit);
        let mut lines = Vec::new();
        let mut ok = true;
        let mut worst: Option<(f64, String)> = None;
        for (name, inst, want) in ent {
            let Some(g) = vms.iter().find(|g| &g.name == name && g.instance == *inst) else {
                ok = false;
                lines.push(format!("{name}#{inst}: no result"));
                continue;
            };
            let got = match from {
                None => Some(g.cpu_s / res.duration_s),
                Some(t) => series_span(&g.series, t, res.duration_s).map(|(c, s)| c / s),
            };
            let Some(got) = got else {
                ok = false;
                lines.push(format!("{name}#{inst}: no time series after {from:?} s"));
                continue;
            };
            let good = (got - want).abs() <= tol * want;
            ok &= good;
            let off = if *want > 0.0 {
                (got - want).abs() / want
            } else {
                0.0
            };
            if worst.as_ref().is_none_or(|w| off > w.0) {
                worst = Some((off, format!("{name}#{inst}")));
            }
            lines.push(format!(
                "{name}#{inst} {got:.3} CPU (entitled {want:.3}{})",
                if good {
                    String::new()
                } else {
                    format!(", OUT of ±{}%", pct(tol))
                }
            ));
        }
        let span = match from {
            None => format!("whole {:.1} s window", res.duration_s),
            Some(t) => format!("{t:.1}..{:.1} s, after the {change}", res.duration_s),
        };
        let worst = worst.map_or(String::new(), |(off, who)| {
            format!("; worst {:.1}% off ({who})", off * 100.0)
        });
        v.push(verdict(
            &format!("shares within ±{}% of entitlement", pct(tol)),
            ok,
            format!("{span}: {}{worst}", lines.join(", ")),
        ));
    }

    // A run-time change: when does the changed VM's share settle?
    if let (Some(t_ev), Some(ent)) = (last_change, &entitled) {
        let changed: Vec<&str> = scn
            .event
            .iter()
            .filter(|e| changes_shares(e.action))
            .filter_map(|e| e.vm.as_deref())
            .collect();
        let mut lines = Vec::new();
        let mut ok = true;
        for (name, inst, want) in ent.iter().filter(|e| changed.contains(&e.0.as_str())) {
            let Some(g) = vms.iter().find(|g| &g.name == name && g.instance == *inst) else {
                continue;
            };
            let settle = settle_time(&g.series, t_ev, *want, res.duration_s, tol);
            let p = pct(tol);
            match settle {
                Some(s) if s <= settle_limit => lines.push(format!(
                    "{name}#{inst} settled at {want:.2} CPU ±{p}% after {s:.2} s"
                )),
                Some(s) => {
                    ok = false;
                    lines.push(format!(
                        "{name}#{inst} took {s:.2} s (limit {settle_limit} s)"
                    ));
                }
                None => {
                    ok = false;
                    lines.push(format!(
                        "{name}#{inst} never settled at {want:.2} CPU ±{p}%"
                    ));
                }
            }
        }
        v.push(verdict(
            &format!("{change} reaches its share within {settle_limit} s"),
            ok && !lines.is_empty(),
            lines.join(", "),
        ));
    }

    // No VM stops: progress in every span of the time series.
    if vms.iter().any(|g| !g.series.is_empty()) {
        let mut stalls = Vec::new();
        for g in &vms {
            for (i, p) in g.series.iter().enumerate() {
                let Some(q) = g.series[i..]
                    .iter()
                    .find(|q| q.t_s - p.t_s >= PROGRESS_SPAN_S - 1e-6)
                else {
                    break;
                };
                if q.work <= p.work {
                    stalls.push(format!(
                        "{}#{} no progress {:.2}..{:.2} s",
                        g.name, g.instance, p.t_s, q.t_s
                    ));
                    break;
                }
            }
        }
        v.push(verdict(
            "every VM makes progress in every 0.5 s",
            stalls.is_empty(),
            if stalls.is_empty() {
                format!("{} VMs", vms.len())
            } else {
                stalls.join(", ")
            },
        ));
    }

    if !scn.event.is_empty() {
        let failed: Vec<String> = res
            .events
            .iter()
            .filter(|e| !e.ok)
            .map(|e| format!("{} at {:.2} s: {}", e.action, e.at_s, e.detail))
            .collect();
        v.push(verdict(
            "every event succeeded",
            failed.is_empty() && res.events.len() == scn.event.len(),
            format!(
                "{} of {} events recorded{}",
                res.events.len(),
                scn.event.len(),
                if failed.is_empty() {
                    String::new()
                } else {
                    format!("; failed: {}", failed.join("; "))
                }
            ),
        ));
    }
    for c in &res.checks {
        v.push(verdict(
            &format!("runner check {}", c.name),
            c.ok,
            c.detail.clone(),
        ));
    }
    v
}

/// Seconds from `t_ev` until the share reaches `want`: the first sample `t` at which the share
/// over the rolling [`ROLLING_S`] window ending at `t` is inside ±`tol` (relative) of `want`, and
/// the mean share from `t` to the end of the series is too (so it holds, not just passes by).
/// None if no sample qualifies with at least one more rolling window after it.
pub fn settle_time(
    series: &[vmfair_scenario::Sample],
    t_ev: f64,
    want: f64,
    end: f64,
    tol: f64,
) -> Option<f64> {
    let inside = |cpu: f64, secs: f64| secs > 0.0 && ((cpu / secs) - want).abs() <= tol * want;
    let last = series.last()?.t_s.min(end);
    series
        .iter()
        .filter(|q| q.t_s >= t_ev + ROLLING_S - 1e-6 && last - q.t_s >= ROLLING_S - 1e-6)
        .find(|q| {
            let now = series_span(series, q.t_s - ROLLING_S, q.t_s);
            let rest = series_span(series, q.t_s, last);
            matches!((now, rest), (Some(a), Some(b)) if inside(a.0, a.1) && inside(b.0, b.1))
        })
        .map(|q| q.t_s - t_ev)
}

/// A plot of every VM's CPU share over the window (rolling [`ROLLING_S`] averages of the time
/// series), with each event as a vertical line and, for vmfair scenarios, each VM's final
/// entitlement as a dashed line. None if the result has no time series.
pub fn series_svg(scn: &Scenario, res: &ScenarioResult) -> Option<String> {
    use std::fmt::Write;
    let vms: Vec<_> = res
        .groups
        .iter()
        .filter(|g| g.kind == GroupKind::Vm && g.series.len() > 2)
        .collect();
    if vms.is_empty() {
        return None;
    }
    let (w, h, l, r, t, b) = (760.0, 380.0, 60.0, 150.0, 40.0, 50.0);
    let (pw, ph) = (w - l - r, h - t - b);
    let tmax = res.duration_s.max(1.0);
    let ymax = f64::from(res.guest_cpus.max(1)) * 1.05;
    let x = |v: f64| l + pw * v / tmax;
    let y = |v: f64| t + ph * (1.0 - v / ymax);
    let mut s = String::new();
    crate::svg::start(&mut s, w, h, 12, false);
    let _ = writeln!(
        s,
        r#"<text x="{l}" y="20" font-size="14">{}: CPU per VM ({ROLLING_S} s rolling), policy {}</text>"#,
        scn.name, res.policy
    );
    let step = if ymax > 2.0 { 0.5 } else { 0.25 };
    let mut v = 0.0;
    while v <= ymax + 1e-9 {
        let _ = writeln!(
            s,
            r##"<line x1="{l}" y1="{0:.1}" x2="{1:.1}" y2="{0:.1}" stroke="#ddd"/><text x="{2:.1}" y="{3:.1}" text-anchor="end">{v:.2}</text>"##,
            y(v),
            l + pw,
            l - 6.0,
            y(v) + 4.0
        );
        v += step;
    }
    let mut sec = 0.0;
    while sec <= tmax + 1e-9 {
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{sec:.0}</text>"#,
            x(sec),
            t + ph + 16.0
        );
        sec += 1.0;
    }
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">seconds into the window</text><text x="16" y="{:.1}" transform="rotate(-90 16 {:.1})" text-anchor="middle">CPUs</text>"#,
        l + pw / 2.0,
        h - 10.0,
        t + ph / 2.0,
        t + ph / 2.0
    );
    for e in &res.events {
        let _ = writeln!(
            s,
            r##"<line x1="{0:.1}" y1="{t}" x2="{0:.1}" y2="{1:.1}" stroke="#888" stroke-dasharray="3,3"/><text x="{2:.1}" y="{3:.1}" font-size="10" fill="#555">{4}</text>"##,
            x(e.at_s),
            t + ph,
            x(e.at_s) + 3.0,
            t + 10.0,
            e.action
        );
    }
    let ent = entitlements(scn);
    for (i, g) in vms.iter().enumerate() {
        let c = crate::svg::COLORS[i % crate::svg::COLORS.len()];
        let mut pts = String::new();
        for q in g.series.iter().filter(|q| q.t_s >= ROLLING_S - 1e-6) {
            if let Some((cpu, secs)) = series_span(&g.series, q.t_s - ROLLING_S, q.t_s) {
                let _ = write!(pts, "{:.1},{:.1} ", x(q.t_s), y(cpu / secs));
            }
        }
        let _ = writeln!(
            s,
            r#"<polyline points="{pts}" fill="none" stroke="{c}" stroke-width="2"/>"#
        );
        if let Some(want) = ent.as_ref().and_then(|e| {
            e.iter()
                .find(|(n, inst, _)| n == &g.name && *inst == g.instance)
                .map(|e| e.2)
        }) {
            let x0 = x(last_share_event(scn).unwrap_or(0.0));
            let _ = writeln!(
                s,
                r#"<line x1="{x0:.1}" y1="{0:.1}" x2="{1:.1}" y2="{0:.1}" stroke="{c}" stroke-dasharray="6,4" opacity="0.6"/>"#,
                y(want),
                l + pw
            );
        }
        let ly = t + 16.0 + 18.0 * i as f64;
        let _ = writeln!(
            s,
            r#"<line x1="{0:.1}" y1="{ly:.1}" x2="{1:.1}" y2="{ly:.1}" stroke="{c}" stroke-width="2"/><text x="{2:.1}" y="{3:.1}">{4}#{5}</text>"#,
            l + pw + 10.0,
            l + pw + 30.0,
            l + pw + 36.0,
            ly + 4.0,
            g.name,
            g.instance
        );
    }
    if ent.is_some() {
        let ly = t + 16.0 + 18.0 * vms.len() as f64;
        let _ = writeln!(
            s,
            r##"<line x1="{0:.1}" y1="{ly:.1}" x2="{1:.1}" y2="{ly:.1}" stroke="#555" stroke-dasharray="6,4"/><text x="{2:.1}" y="{3:.1}">entitled</text>"##,
            l + pw + 10.0,
            l + pw + 30.0,
            l + pw + 36.0,
            ly + 4.0
        );
    }
    s.push_str("</svg>\n");
    Some(s)
}

/// The relative tolerance of the scenario's shares: its `tolerance_pct`, else [`TOLERANCE`].
fn tolerance(scn: &Scenario) -> f64 {
    scn.tolerance_pct.map_or(TOLERANCE, |p| p / 100.0)
}

/// A tolerance as the verdicts print it, in percent ("10", "2.5").
fn pct(tol: f64) -> String {
    let p = format!("{:.1}", tol * 100.0);
    p.strip_suffix(".0").map_or(p.clone(), str::to_string)
}

/// How long a run-time change may take to settle: [`SETTLE_LIMIT_S`] if a weight changes,
/// [`ALLOC_SETTLE_LIMIT_S`] if only reservations and limits do.
fn settle_limit(scn: &Scenario) -> f64 {
    if scn.event.iter().any(|e| e.action == EventAction::Weight) {
        SETTLE_LIMIT_S
    } else {
        ALLOC_SETTLE_LIMIT_S
    }
}

/// Whether an event of `action` changes the entitlements: `weight`, `reservation`, `limit`.
fn changes_shares(action: EventAction) -> bool {
    matches!(
        action,
        EventAction::Weight | EventAction::Reservation | EventAction::Limit
    )
}

/// Time of the last event that changes the entitlements, if any.
fn last_share_event(scn: &Scenario) -> Option<f64> {
    scn.event
        .iter()
        .filter(|e| changes_shares(e.action))
        .map(|e| e.at_s)
        .reduce(f64::max)
}

/// What the verdicts call a run-time change: "weight change" if only weights change,
/// "run-time change" if reservations or limits do.
fn change_word(scn: &Scenario) -> &'static str {
    let others = scn
        .event
        .iter()
        .any(|e| matches!(e.action, EventAction::Reservation | EventAction::Limit));
    if others {
        "run-time change"
    } else {
        "weight change"
    }
}

/// `cargo xtask judge SCENARIO.toml…`: verdicts for the results in `results/`, and
/// `results/<name>.svg` for results with a time series.
pub fn cmd(ctx: &Ctx, files: &[PathBuf]) -> Result<()> {
    let mut failed = 0;
    for f in files {
        let (scn, res) = load(ctx, f)?;
        println!("{}:", scn.name);
        if let Some(svg) = series_svg(&scn, &res) {
            let out = ctx.root.join("results").join(format!("{}.svg", scn.name));
            util::write(&out, &svg)?;
            println!("  wrote {}", out.display());
        }
        for v in judge(&scn, &res) {
            failed += usize::from(!v.ok);
            println!(
                "  {} {}: {}",
                if v.ok { "ok  " } else { "FAIL" },
                v.name,
                v.detail
            );
        }
        for line in wake::lines(&res) {
            println!("  {line}");
        }
    }
    anyhow::ensure!(failed == 0, "{failed} verdicts failed");
    Ok(())
}

fn load(ctx: &Ctx, f: &Path) -> Result<(Scenario, ScenarioResult)> {
    let scn = Scenario::from_toml_str(&util::read(f)?)
        .map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?;
    let rf = ctx.root.join("results").join(format!("{}.json", scn.name));
    let res = ScenarioResult::from_json_str(&util::read(&rf)?)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| rf.display().to_string())?;
    Ok((scn, res))
}

mod wake;

#[cfg(test)]
mod alloc_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use vmfair_scenario::{GroupResult, Sample};

    pub(super) fn scn(text: &str) -> Scenario {
        Scenario::from_toml_str(text).unwrap()
    }

    pub(super) fn group(name: &str, instance: u32, cpu_s: f64, series: Vec<Sample>) -> GroupResult {
        let mut g: GroupResult = serde_json::from_value(serde_json::json!({
            "kind": "vm", "name": name, "instance": instance, "pid": 1, "vcpus": 1,
            "cpu_s": cpu_s, "work": 1, "index": null
        }))
        .unwrap();
        g.series = series;
        g
    }

    pub(super) fn result(groups: Vec<GroupResult>) -> ScenarioResult {
        serde_json::from_value(serde_json::json!({
            "scenario": "t", "policy": "vmfair", "kernel": "k", "guest_cpus": 2,
            "duration_s": 10.0, "groups": groups
        }))
        .unwrap()
    }

    const ONE_V_FOUR: &str = r#"
name = "t"
duration_s = 10
policy = "vmfair"
[[vm]]
name = "a"
[[vm]]
name = "b"
vcpus = 4
"#;

    #[test]
    fn entitlement_of_scenarios() {
        let e = entitlements(&scn(ONE_V_FOUR)).unwrap();
        assert_eq!(e, [("a".into(), 0, 1.0), ("b".into(), 0, 1.0)]);
        // Per-vCPU share mode: 1:4.
        let pv = ONE_V_FOUR.replace(
            "policy = \"vmfair\"",
            "policy = \"vmfair\"\n[sysctl]\n\"kernel.vmfair.share_mode\" = \"vcpu\"",
        );
        let e = entitlements(&scn(&pv)).unwrap();
        assert!(
            (e[0].2 - 0.4).abs() < 1e-6 && (e[1].2 - 1.6).abs() < 1e-6,
            "{e:?}"
        );
        // A hand-placed cap is taken out first.
        let capped = ONE_V_FOUR.replace("vcpus = 4", "vcpus = 4\ncpu_max = \"50000 100000\"");
        let e = entitlements(&scn(&capped)).unwrap();
        assert_eq!(e, [("b".into(), 0, 0.5), ("a".into(), 0, 1.0)]);
        // Not vmfair: no entitlement to judge by.
        let stock = ONE_V_FOUR.replace("\"vmfair\"", "\"stock\"");
        assert!(entitlements(&scn(&stock)).is_none());
    }

    #[test]
    fn shares_judged_with_tolerance() {
        let s = scn(ONE_V_FOUR);
        let good = judge(
            &s,
            &result(vec![
                group("a", 0, 9.5, vec![]),
                group("b", 0, 10.4, vec![]),
            ]),
        );
        assert!(good.iter().all(|v| v.ok), "{good:?}");
        let bad = judge(
            &s,
            &result(vec![
                group("a", 0, 4.0, vec![]),
                group("b", 0, 16.0, vec![]),
            ]),
        );
        assert!(!bad[0].ok && bad[0].detail.contains("OUT"), "{bad:?}");
        let mut invalid = result(vec![
            group("a", 0, 10.0, vec![]),
            group("b", 0, 10.0, vec![]),
        ]);
        invalid.valid = false;
        assert!(!judge(&s, &invalid)[0].ok);
    }

    pub(super) fn ramp(before: f64, after: f64, t_ev: f64, lag: f64) -> Vec<Sample> {
        // CPU rate `before` until t_ev + lag, then `after`; 0.25 s samples over 10 s.
        let mut cpu = 0.0;
        let mut out = Vec::new();
        for i in 0..=40 {
            let t = f64::from(i) * 0.25;
            if i > 0 {
                let rate = if t <= t_ev + lag { before } else { after };
                cpu += rate * 0.25;
            }
            out.push(Sample {
                t_s: t,
                cpu_s: cpu,
                work: (t * 1000.0) as u64,
            });
        }
        out
    }

    #[test]
    fn settle_time_measured() {
        let fast = ramp(1.0, 1.5, 4.0, 0.25);
        let t = settle_time(&fast, 4.0, 1.5, 10.0, TOLERANCE).unwrap();
        assert!((0.5..=1.0).contains(&t), "{t}");
        let slow = ramp(1.0, 1.5, 4.0, 3.0);
        assert!(settle_time(&slow, 4.0, 1.5, 10.0, TOLERANCE).unwrap() > SETTLE_LIMIT_S);
        let never = ramp(1.0, 1.0, 4.0, 0.0);
        assert_eq!(settle_time(&never, 4.0, 1.5, 10.0, TOLERANCE), None);
        // One noisy window late in the run does not undo a fast change.
        let mut blip = ramp(1.0, 1.5, 4.0, 0.25);
        for p in blip.iter_mut().skip(36) {
            p.cpu_s += 0.2;
        }
        let t = settle_time(&blip, 4.0, 1.5, 10.0, TOLERANCE).unwrap();
        assert!(t <= 1.0, "{t}");
        // Passing through the band on the way elsewhere is not settling.
        let overshoot = ramp(1.0, 2.0, 4.0, 0.25);
        assert_eq!(settle_time(&overshoot, 4.0, 1.5, 10.0, TOLERANCE), None);
    }

    const CHANGE: &str = r#"
name = "t"
duration_s = 10
policy = "vmfair"
sample_ms = 250
[[vm]]
name = "a"
vcpus = 2
[[vm]]
name = "b"
vcpus = 2
[[event]]
at_s = 4
action = "weight"
vm = "b"
value = 300
"#;

    #[test]
    fn weight_change_judged() {
        let s = scn(CHANGE);
        let mut res = result(vec![
            group("a", 0, 7.0, ramp(1.0, 0.5, 4.0, 0.5)),
            group("b", 0, 13.0, ramp(1.0, 1.5, 4.0, 0.5)),
        ]);
        res.events = vec![vmfair_scenario::EventRecord {
            at_s: 4.0,
            action: EventAction::Weight,
            detail: String::new(),
            ok: true,
            took_s: 0.0,
        }];
        let v = judge(&s, &res);
        assert!(v.iter().all(|v| v.ok), "{v:?}");
        assert_eq!(v.len(), 4, "{v:?}");
        // Too slow, and a VM that stalls.
        res.groups[1].series = ramp(1.0, 1.5, 4.0, 3.5);
        for p in res.groups[0].series.iter_mut().skip(20) {
            p.work = 5000;
        }
        let v = judge(&s, &res);
        let failed: Vec<&str> = v
            .iter()
            .filter(|v| !v.ok)
            .map(|v| v.name.as_str())
            .collect();
        assert_eq!(
            failed,
            [
                "shares within ±10% of entitlement",
                "weight change reaches its share within 2 s",
                "every VM makes progress in every 0.5 s"
            ],
            "{v:?}"
        );
        let svg = series_svg(&s, &res).unwrap();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(
            svg.contains(">weight<") && svg.contains(">entitled<"),
            "{svg}"
        );
        // A failed event fails.
        res.events[0].ok = false;
        assert!(judge(&s, &res)
            .iter()
            .any(|v| v.name == "every event succeeded" && !v.ok));
    }
}
