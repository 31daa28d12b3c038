//! Tests of the panels, the summary and the small figures, on synthetic data.

use super::bars::*;
use super::panels::*;
use super::points::Point;
use super::spec::*;
use super::summary::*;
use std::collections::BTreeMap;
use vmfair_scenario::ScenarioResult;

const EXP: &str = r#"
name = "t"
duration_s = 5
repetitions = 2
dummies = [0, 4]
dummy_kinds = ["desktop"]
[target]
load = "bench"
[dummy.desktop]
load = "desktop"
tick_hz = 25
[[policy]]
name = "stock"
[[policy]]
name = "cg"
policy = "cgroup"
[[policy]]
name = "vmfair"
[[panel]]
name = "1v4"
title = "1 vCPU beside 4 vCPUs"
policies = ["stock", "vmfair"]
repetitions = 1
[[panel.vm]]
name = "a"
[[panel.vm]]
name = "b"
vcpus = 4
[[panel]]
name = "w"
title = "weights"
policies = ["stock", "cg", "vmfair"]
[[panel.vm]]
name = "w100"
vcpus = 2
[[panel.vm]]
name = "w300"
vcpus = 2
weight = 300
"#;

fn exp() -> Experiment {
    let e: Experiment = toml::from_str(EXP).unwrap();
    e.check().unwrap();
    e
}

#[test]
fn panels_expand_into_valid_scenarios() {
    let e = exp();
    let jobs = e.panel_jobs();
    // 1v4: 2 policies x 1 repetition; w: 3 policies x 2 repetitions.
    assert_eq!(jobs.len(), 2 + 3 * 2);
    let names: Vec<&str> = jobs.iter().map(|j| j.name.as_str()).collect();
    assert_eq!(
        &names[..5],
        [
            "t-1v4-stock-r1",
            "t-1v4-vmfair-r1",
            "t-w-stock-r1",
            "t-w-cg-r1",
            "t-w-vmfair-r1"
        ]
    );
    assert!(jobs[5..].iter().all(|j| j.rep == 2 && j.panel == "w"));
    let cg = jobs.iter().find(|j| j.name == "t-w-cg-r2").unwrap();
    let s = vmfair_scenario::Scenario::from_toml_str(&cg.toml).unwrap();
    // The policy line's real policy, the file's window, the VMs' weights.
    assert_eq!(s.policy, vmfair_scenario::Policy::Cgroup);
    assert_eq!((s.duration_s, s.warmup_s), (5.0, 3.0));
    assert_eq!(
        s.vm.iter().map(|v| (v.vcpus, v.weight)).collect::<Vec<_>>(),
        [(2, 100), (2, 300)]
    );
    assert_eq!(s.vm[0].load, vmfair_scenario::Load::Busy);
}

#[test]
fn bad_panels_rejected() {
    for (from, to) in [
        // A policy without a [[policy]] entry.
        (
            "policies = [\"stock\", \"vmfair\"]",
            "policies = [\"fair\"]",
        ),
        // No VM shape that vmfair gives an entitlement to.
        ("name = \"a\"", "name = \"a\"\nload = \"desktop\""),
        // The same panel twice.
        ("name = \"w\"\ntitle", "name = \"1v4\"\ntitle"),
        // Out of the scenario schema's range.
        ("vcpus = 4", "vcpus = 0"),
        // Unknown keys.
        ("title = \"weights\"", "title = \"weights\"\nbogus = 1"),
    ] {
        assert!(EXP.contains(from), "{from}");
        let text = EXP.replacen(from, to, 1);
        let bad = toml::from_str::<Experiment>(&text)
            .map_err(|e| e.to_string())
            .and_then(|e| e.check().map_err(|e| e.to_string()));
        assert!(bad.is_err(), "accepted: {to}");
    }
    // A policy line that weights the sweep's target is not for panels.
    let text = EXP.replace(
        "name = \"cg\"\npolicy = \"cgroup\"",
        "name = \"cg\"\npolicy = \"cgroup\"\ntarget_weight = 305",
    );
    let e: Experiment = toml::from_str(&text).unwrap();
    assert!(e.check().unwrap_err().to_string().contains("target"));
}

fn panel_result(name: &str, cpus: &[(&str, f64)], valid: bool) -> ScenarioResult {
    let cpus: Vec<(&str, u32, f64)> = cpus.iter().map(|(vm, cpu)| (*vm, 0, *cpu)).collect();
    panel_result_of(name, &cpus, valid)
}

/// A result with (VM, instance, CPU) groups.
fn panel_result_of(name: &str, cpus: &[(&str, u32, f64)], valid: bool) -> ScenarioResult {
    let groups: Vec<serde_json::Value> = cpus
        .iter()
        .enumerate()
        .map(|(i, (vm, inst, cpu))| {
            serde_json::json!({"kind": "vm", "name": vm, "instance": inst, "pid": 10 + i,
                               "vcpus": 1, "cpu_s": cpu * 5.0, "work": 1, "index": null})
        })
        .collect();
    serde_json::from_value(serde_json::json!({
        "scenario": name, "policy": "stock", "kernel": "k", "guest_cpus": 2,
        "duration_s": 5.0, "valid": valid, "problems": [], "groups": groups
    }))
    .unwrap()
}

fn panel_runs(e: &Experiment) -> BTreeMap<String, PanelRun> {
    let jobs = e.panel_jobs();
    let mut runs = BTreeMap::new();
    for (name, cpus, valid) in [
        ("t-1v4-stock-r1", vec![("a", 0.4), ("b", 1.6)], true),
        ("t-1v4-vmfair-r1", vec![("a", 0.99), ("b", 1.0)], true),
        ("t-w-stock-r1", vec![("w100", 1.0), ("w300", 1.0)], true),
        ("t-w-stock-r2", vec![("w100", 0.98), ("w300", 1.02)], true),
        ("t-w-vmfair-r1", vec![("w100", 0.5), ("w300", 1.5)], true),
        // Invalid: never counted.
        ("t-w-vmfair-r2", vec![("w100", 1.9), ("w300", 0.1)], false),
        // A VM missing from the result makes the run invalid.
        ("t-w-cg-r1", vec![("w100", 0.5)], true),
    ] {
        let j = jobs.iter().find(|j| j.name == name).unwrap();
        let r = panel_run(j, &panel_result(name, &cpus, valid)).unwrap();
        runs.insert(name.to_string(), r);
    }
    runs
}

#[test]
fn panel_runs_hold_cpu_against_the_entitlement() {
    let e = exp();
    let runs = panel_runs(&e);
    let r = &runs["t-1v4-stock-r1"];
    assert!(r.valid);
    // CPU per second of window; the entitlement is vmfair's (1 and 1 CPU)
    // although the run was under stock.
    assert_eq!(r.vms[0].label, "a");
    assert!((r.vms[0].cpu - 0.4).abs() < 1e-12);
    assert!((r.vms[0].entitled - 1.0).abs() < 1e-9);
    assert!((r.vms[1].entitled - 1.0).abs() < 1e-9);
    assert_eq!(runs["t-w-stock-r1"].vms[1].weight, 300);
    assert!((runs["t-w-stock-r1"].vms[0].entitled - 0.5).abs() < 1e-9);
    assert!((runs["t-w-stock-r1"].vms[1].entitled - 1.5).abs() < 1e-9);
    let cg = &runs["t-w-cg-r1"];
    assert!(!cg.valid && cg.problems.iter().any(|p| p.contains("w300")));
    assert!(!runs["t-w-vmfair-r2"].valid);
}

#[test]
fn panel_points_and_summary() {
    let e = exp();
    let pts = panel_points(&e, &panel_runs(&e)).unwrap();
    assert_eq!(pts.len(), 5);
    let ws = pts
        .iter()
        .find(|p| p.panel == "w" && p.policy == "stock")
        .unwrap();
    assert_eq!((ws.valid, ws.runs), (2, 2));
    let c = ws.vms[1].cpu.unwrap();
    assert!((c.mean - 1.01).abs() < 1e-12 && c.min == 1.0 && c.max == 1.02);
    // w100 got 0.99 against 0.5 (+98 %), w300 1.01 against 1.5 (-33 %).
    assert!((ws.worst_deviation().unwrap() - 0.98).abs() < 1e-9);
    let wv = pts
        .iter()
        .find(|p| p.panel == "w" && p.policy == "vmfair")
        .unwrap();
    assert_eq!((wv.valid, wv.runs), (1, 2));
    assert!(wv.worst_deviation().unwrap().abs() < 1e-9);
    let cg = pts.iter().find(|p| p.policy == "cg").unwrap();
    assert_eq!(cg.valid, 0);
    assert!(cg.worst_deviation().is_none());

    let mine: Vec<&PanelPoint> = pts.iter().filter(|p| p.panel == "1v4").collect();
    let line = panel_summary("1 vCPU beside 4 vCPUs", &mine).unwrap();
    assert_eq!(
        line,
        "**1 vCPU beside 4 vCPUs**: CPU per VM (a / b): stock 0.40 / 1.60, vmfair 0.99 / \
         1.00; entitled 1.00 / 1.00. Farthest VM from its entitlement: stock -60 %, vmfair -1 %."
    );
    // A policy without valid runs is left out of the line, not shown as 0.
    let mine: Vec<&PanelPoint> = pts.iter().filter(|p| p.panel == "w").collect();
    let line = panel_summary("weights", &mine).unwrap();
    assert!(
        line.contains("stock 0.99 / 1.01, vmfair 0.50 / 1.50;"),
        "{line}"
    );
    assert!(line.ends_with("stock +98 %, vmfair 0 %."), "{line}");
    assert!(!line.contains("cg"), "{line}");
    assert!(panel_summary("none", &[]).is_none());

    let md = panels_md(&e, &pts);
    assert!(md.contains("| w300 | 2 | 300 | 1.010 (1.000–1.020) | – | 1.500 | 1.500 |"));
    assert!(md.contains("![weights](panel-w.svg)"));
}

#[test]
fn panel_points_line_up_vm_by_vm() {
    let e = exp();
    let jobs = e.panel_jobs();
    let mut runs = BTreeMap::new();
    // The first cg run (by name) lacks w100; the second has both VMs.
    for (name, cpus) in [
        ("t-w-cg-r1", vec![("w300", 1.0)]),
        ("t-w-cg-r2", vec![("w100", 0.6), ("w300", 1.4)]),
        ("t-w-stock-r1", vec![("w100", 1.0), ("w300", 1.0)]),
    ] {
        let j = jobs.iter().find(|j| j.name == name).unwrap();
        let r = panel_run(j, &panel_result(name, &cpus, true)).unwrap();
        runs.insert(name.to_string(), r);
    }
    assert!(!runs["t-w-cg-r1"].valid);
    let pts = panel_points(&e, &runs).unwrap();
    let cg = pts.iter().find(|p| p.policy == "cg").unwrap();
    let labels: Vec<&str> = cg.vms.iter().map(|v| v.label.as_str()).collect();
    assert_eq!(labels, ["w100", "w300"]);
    assert_eq!((cg.valid, cg.runs), (1, 2));
    assert!((cg.vms[0].cpu.unwrap().mean - 0.6).abs() < 1e-12);
    assert!((cg.vms[1].cpu.unwrap().mean - 1.4).abs() < 1e-12);
    // A policy without runs still lists the panel's VMs, without CPU.
    let vm = pts
        .iter()
        .find(|p| p.panel == "w" && p.policy == "vmfair")
        .unwrap();
    assert_eq!(vm.runs, 0);
    assert_eq!(vm.vms.len(), 2);
    assert!(vm.vms.iter().all(|v| v.cpu.is_none() && v.entitled > 0.0));
    let md = panels_md(&e, &pts);
    assert!(
        md.contains("| w100 | 2 | 100 | 1.000 | 0.600 | – | 0.500 |"),
        "{md}"
    );
    // A panel without any run says so.
    assert!(md.contains("## 1 vCPU beside 4 vCPUs\n"));
    assert!(md.contains("(no runs)"), "{md}");
}

fn sweep_point(policy: &str, dummies: u32, rel: f64, cpu: f64, dcpu: f64) -> Point {
    let st = |x: f64| crate::stats::MeanRange::of(&[x]);
    Point {
        policy: policy.into(),
        kind: if dummies == 0 { "solo" } else { "desktop" }.into(),
        dummies,
        runs: 1,
        valid: 1,
        index: st(rel * 100.0),
        relative: st(rel),
        index_per_cpu: None,
        speed: None,
        tcg_model: None,
        target_cpu: st(cpu),
        target_wait: None,
        target_preempt_per_s: None,
        dummies_cpu: if dummies == 0 { None } else { st(dcpu) },
        dummies_halt_poll: None,
        dummies_sleeps_per_s: None,
        idle_cpu: None,
    }
}

#[test]
fn sweep_summary_reads_the_largest_point() {
    let e = exp();
    let pts = vec![
        sweep_point("stock", 0, 1.0, 1.0, 0.0),
        sweep_point("stock", 4, 0.31, 0.3, 1.5),
        sweep_point("vmfair", 0, 1.0, 1.0, 0.0),
        sweep_point("vmfair", 4, 0.62, 0.6, 1.2),
    ];
    let line = sweep_summary(&e, &pts).unwrap();
    assert_eq!(
        line,
        "**Target beside 4 desktop dummies**: benchmark index relative to solo: stock 0.31, \
         vmfair 0.62; the target's CPU (of 1): stock 0.30, vmfair 0.60; the dummies used \
         1.20–1.50 CPU together."
    );
    let md = summary_md(&e, &pts, &[]);
    assert!(md.starts_with("## Summary\n\n- **Target beside 4"));
    assert!(sweep_summary(&e, &pts[..1]).is_none());
    assert_eq!(summary_md(&e, &[], &[]), "");
}

fn count(s: &str, pat: &str) -> usize {
    s.matches(pat).count()
}

#[test]
fn small_figures() {
    assert_eq!(axis_top(1.6, 0.5, 1.0), 2.0);
    assert_eq!(axis_top(1.5, 0.5, 1.0), 1.5);
    assert_eq!(axis_top(0.3, 0.5, 1.0), 1.0);
    let e = exp();
    let pts = panel_points(&e, &panel_runs(&e)).unwrap();
    let mine: Vec<&PanelPoint> = pts.iter().filter(|p| p.panel == "w").collect();
    let svg = panel_svg(&e, &e.panel[1], &mine);
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    // Bars: 2 VMs x 2 policies with valid runs, in the policies' colours
    // (stock first, vmfair third of the experiment's policies).
    let stock = policy_color(&e, "stock");
    let vmfair = policy_color(&e, "vmfair");
    assert_ne!(stock, vmfair);
    assert_eq!(count(&svg, &format!("height=\"12\" fill=\"{stock}\"")), 1);
    assert_eq!(count(&svg, &format!("fill=\"{stock}\"/>")), 3);
    assert_eq!(count(&svg, &format!("fill=\"{vmfair}\"/>")), 3);
    // Only stock has two repetitions: a range line per VM.
    assert_eq!(count(&svg, "stroke=\"#333\""), 2);
    // Entitlement marks at 0.5 and 1.5 CPU of an axis up to 1.5:
    // y = 52 + 170 * (1 - v / 1.5).
    assert!(svg.contains("y1=\"165.3\""), "{svg}");
    assert!(svg.contains("y1=\"52.0\" x2"), "{svg}");
    assert!(svg.contains("w300 (2 vCPU, w 300)"));
    assert!(svg.contains("w100 (2 vCPU, w 100)"));
    // Without weights, none are named.
    let mine: Vec<&PanelPoint> = pts.iter().filter(|p| p.panel == "1v4").collect();
    let svg = panel_svg(&e, &e.panel[0], &mine);
    assert!(
        svg.contains(">b (4 vCPU)<") && !svg.contains(", w "),
        "{svg}"
    );

    let mut spread = sweep_point("stock", 4, 0.5, 0.5, 1.5);
    spread.relative = crate::stats::MeanRange::of(&[0.4, 0.6]);
    let sp = vec![
        sweep_point("stock", 0, 1.0, 1.0, 0.0),
        spread,
        sweep_point("vmfair", 0, 1.0, 1.0, 0.0),
        sweep_point("vmfair", 4, 0.9, 0.9, 1.2),
    ];
    let svg = sweep_svg(&e, &sp);
    // A line per policy with points; cg has none, so no line.
    assert_eq!(count(&svg, "<polyline"), 2);
    assert_eq!(count(&svg, "<circle"), 4);
    // x = 60 + 370 * d / 4, y = 52 + 180 * (1 - v / 1.2), the lines spread
    // by 4 px about the middle one (cg).
    assert!(svg.contains("<circle cx=\"426.0\" cy=\"157.0\""), "{svg}");
    assert!(svg.contains("<circle cx=\"434.0\" cy=\"97.0\""), "{svg}");
    assert!(svg.contains("<circle cx=\"56.0\" cy=\"82.0\""), "{svg}");
    // Only stock at 4 has two repetitions: one capped bar, 0.4 to 0.6.
    assert_eq!(count(&svg, "<path d="), 1);
    assert!(
        svg.contains("<path d=\"M426.0,172.0V142.0M423.0,172.0H429.0M423.0,142.0H429.0\""),
        "{svg}"
    );
}

#[test]
fn results_rst_parts() {
    use super::rst::*;
    assert_eq!(utc_date(0), "1970-01-01");
    // 2026-12-02 00:00:00 UTC and the last second of 2024-02-29 (leap day).
    assert_eq!(utc_date(1_796_169_600), "2026-12-02");
    assert_eq!(utc_date(1_709_251_199), "2024-02-29");
    assert_eq!(
        wrap("a bb ccc dddd", 6, "- ", "  "),
        "- a bb\n  ccc\n  dddd\n"
    );
    assert_eq!(wrap("toolongword x", 4, "", ""), "toolongword\nx\n");
    assert_eq!(wrap("", 10, "", ""), "\n");
    assert_eq!(
        md_to_rst("**a**: `stock` 0.40"),
        "**a**: ``stock`` 0.40".to_string()
    );
    let t = list_table(
        &["a".to_string(), "b".to_string()],
        &[vec!["1".into(), "2".into()]],
    );
    assert_eq!(
        t,
        ".. list-table::\n   :header-rows: 1\n\n   * - a\n     - b\n   * - 1\n     - 2\n"
    );
    let mut fills = BTreeMap::new();
    fills.insert("X", "filled\n".to_string());
    assert_eq!(
        render("head\n@X@\ntail\n", &fills).unwrap(),
        "head\nfilled\ntail\n"
    );
    // A placeholder without a value, and a value without its placeholder.
    assert!(render("@Y@\n", &fills).is_err());
    assert!(render("no placeholder\n", &fills).is_err());
    // Inline @ signs are text.
    assert!(render("mail@X@host @X@\n@X@\n", &fills).is_ok());

    let e = exp();
    let meta = RunMeta {
        recorded: "2026-12-02".into(),
        build_s: 61.0,
        run_s: 700.4,
        boots: 3,
    };
    let run = run_rst(&e, "7.3.4", &meta, (9, 7, 2)).replace('\n', " ");
    assert!(
        run.starts_with("Recorded on 2026-12-02 with kernel ``7.3.4``"),
        "{run}"
    );
    // Experiment "t" is not make demo's.
    assert!(run.contains("by ``cargo xtask bench`` (``qemu-test/experiments/t.toml``)"));
    assert!(run.contains("3 boots took 700 s after 61 s of build; 9 runs kept, 7 valid, 2"));
    let pts = panel_points(&e, &panel_runs(&e)).unwrap();
    let rst = panels_rst(&e, &pts);
    assert!(rst.starts_with("1 vCPU beside 4 vCPUs\n~~~~~~~~~~~~~~~~~~~~~\n"));
    assert!(rst.contains(".. figure:: results-t-w.svg"));
    assert!(rst.contains("   * - w300\n     - 2\n     - 300\n     - 1.010 (1.000–1.020)\n     - –\n     - 1.500\n     - 1.500\n"), "{rst}");
    let sp = vec![
        sweep_point("stock", 4, 0.5, 0.5, 1.5),
        sweep_point("vmfair", 4, 0.9, 0.9, 1.2),
    ];
    let st = sweep_table(&e, &sp);
    assert!(
        st.contains("   * - ``stock``\n     - 0.50\n     - 0.50\n     - 1.50\n"),
        "{st}"
    );
    // cg has no point at 4 dummies.
    assert!(
        st.contains("   * - ``cg``\n     - –\n     - –\n     - –\n"),
        "{st}"
    );
}

#[test]
fn the_repository_files_fit_the_code() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    // Every experiment file loads and passes its checks (panels included).
    let dir = root.join("qemu-test/experiments");
    let mut n = 0;
    for f in std::fs::read_dir(&dir).unwrap().flatten() {
        if f.path().extension().is_some_and(|x| x == "toml") {
            Experiment::load(&f.path()).unwrap();
            n += 1;
        }
    }
    assert!(n >= 3, "{n} experiment files in {}", dir.display());
    let demo = Experiment::load(&dir.join("demo.toml")).unwrap();
    assert!(demo.panel.len() >= 4 && demo.dummy_kinds == ["desktop"]);
    // The reservation panel: its stock run has no reservation, yet the
    // reserved VM is entitled to its 0.8 CPU there too, the crowd to the
    // rest.
    let jobs = demo.panel_jobs();
    let stock = jobs
        .iter()
        .find(|j| j.panel == "reserve" && j.policy == "stock")
        .unwrap();
    assert!(!stock.toml.contains("reservation"));
    let pts = panel_points(&demo, &BTreeMap::new()).unwrap();
    for pol in ["stock", "vmfair"] {
        let p = pts
            .iter()
            .find(|p| p.panel == "reserve" && p.policy == pol)
            .unwrap();
        assert_eq!(p.vms.len(), 9);
        assert_eq!(
            (p.vms[0].label.as_str(), p.vms[0].reservation),
            ("reserved", 0.8)
        );
        assert!((p.vms[0].entitled - 0.8).abs() < 1e-5);
        assert!(p.vms[1..].iter().all(|v| (v.entitled - 0.15).abs() < 1e-5));
    }
    // The budget (budget.rs): the scenarios' predicted time no more than
    // before the reservation panel, 811 s, which ran in 823 s (3 boots)
    // against max_minutes = 14.
    let cost = |toml: &str| {
        let s = vmfair_scenario::Scenario::from_toml_str(toml).unwrap();
        super::budget::cost(
            s.warmup_s + s.duration_s,
            s.vm.iter().map(|v| v.count).sum(),
        )
    };
    let sweep = demo.jobs();
    let total: f64 = sweep
        .iter()
        .map(|j| cost(&j.toml))
        .chain(jobs.iter().map(|j| cost(&j.toml)))
        .sum();
    assert!(total <= 811.0, "{total} s predicted");
    assert_eq!(demo.max_minutes, Some(14.0));
    // The template uses exactly the placeholders the report command fills.
    let template =
        std::fs::read_to_string(root.join("Documentation/vmfair/results.rst.in")).unwrap();
    let fills: BTreeMap<&str, String> = super::rst::PLACEHOLDERS
        .iter()
        .map(|k| (*k, format!("<{k}>")))
        .collect();
    let out = super::rst::render(&template, &fills).unwrap();
    assert!(out.contains("\n<SWEEP>\n") && !out.contains("\n@"));
}

/// A panel with a reservation and a limit, after [`EXP`]'s: `reserved`
/// (0.8 CPU reserved), four `crowd` VMs and `capped` (limited to 0.2 CPU).
/// Under vmfair: 0.8, 0.25 each and 0.2 of the 2 CPUs; as equal shares
/// (the stock run's scenario read as vmfair's), 1/3 each.
const ALLOC: &str = r#"
[[panel]]
name = "r"
title = "A reserved VM"
policies = ["stock", "cg", "vmfair"]
repetitions = 1
[[panel.vm]]
name = "reserved"
reservation = 0.8
[[panel.vm]]
name = "crowd"
count = 4
[[panel.vm]]
name = "capped"
limit = 0.2
"#;

fn alloc_exp() -> Experiment {
    let e: Experiment = toml::from_str(&format!("{EXP}{ALLOC}")).unwrap();
    e.check().unwrap();
    e
}

fn alloc_job<'a>(jobs: &'a [PanelJob], policy: &str) -> &'a PanelJob {
    jobs.iter()
        .find(|j| j.panel == "r" && j.policy == policy)
        .unwrap()
}

#[test]
fn reservations_and_limits_only_where_the_policy_has_them() {
    use vmfair_scenario::Scenario;
    let e = alloc_exp();
    let jobs = e.panel_jobs();
    let amounts = |toml: &str| -> Vec<(f64, f64)> {
        let s = Scenario::from_toml_str(toml).unwrap();
        s.vm.iter().map(|v| (v.reservation, v.limit)).collect()
    };
    // Stock has neither: the scenario format refuses both under stock.
    let stock = alloc_job(&jobs, "stock");
    assert!(!stock.toml.contains("reservation") && !stock.toml.contains("limit"));
    assert_eq!(amounts(&stock.toml), [(0.0, 0.0); 3]);
    // cgroup (the entry "cg") has the limit, as the VM's cpu.max.
    let cg = alloc_job(&jobs, "cg");
    assert!(!cg.toml.contains("reservation"), "{}", cg.toml);
    assert_eq!(amounts(&cg.toml), [(0.0, 0.0), (0.0, 0.0), (0.0, 0.2)]);
    let vmfair = alloc_job(&jobs, "vmfair");
    assert_eq!(amounts(&vmfair.toml), [(0.8, 0.0), (0.0, 0.0), (0.0, 0.2)]);
    // Every policy's run is held against the same scenario (but its name):
    // vmfair's.
    for j in [stock, cg, vmfair] {
        assert_eq!(
            j.vmfair_toml.replace(&j.name, "NAME"),
            vmfair.toml.replace(&vmfair.name, "NAME")
        );
    }
    // The stock run's own scenario has no entitlement, and read as
    // vmfair's it would have no reservation: equal shares.
    let scn = Scenario::from_toml_str(&stock.toml).unwrap();
    assert!(crate::fairness::entitlements(&scn).is_none());
    let mut as_vmfair = scn.clone();
    as_vmfair.policy = vmfair_scenario::Policy::Vmfair;
    let equal = crate::fairness::entitlements(&as_vmfair).unwrap();
    assert!(
        equal.iter().all(|e| (e.2 - 2.0 / 6.0).abs() < 1e-5),
        "{equal:?}"
    );
    // What a stock run is held against: the reservation and the limit.
    let cpus: Vec<(&str, u32, f64)> = [("reserved", 0, 0.34), ("capped", 0, 0.34)]
        .into_iter()
        .chain((0..4).map(|i| ("crowd", i, 0.33)))
        .collect();
    let r = panel_run(stock, &panel_result_of(&stock.name, &cpus, true)).unwrap();
    assert!(r.valid, "{:?}", r.problems);
    let ent: Vec<(&str, f64)> = r
        .vms
        .iter()
        .map(|v| (v.label.as_str(), v.entitled))
        .collect();
    let want = [
        ("reserved", 0.8),
        ("crowd#0", 0.25),
        ("crowd#1", 0.25),
        ("crowd#2", 0.25),
        ("crowd#3", 0.25),
        ("capped", 0.2),
    ];
    assert_eq!(ent.len(), want.len());
    for (got, want) in ent.iter().zip(want) {
        assert_eq!(got.0, want.0);
        assert!((got.1 - want.1).abs() < 1e-9, "{got:?} against {want:?}");
    }
}

#[test]
fn bad_reservations_and_limits_rejected() {
    for (from, to) in [
        // 3 x 0.8 CPU reserved on 2 CPUs: refused under vmfair, so refused
        // although the stock scenario has no reservation.
        (
            "name = \"reserved\"\nreservation = 0.8",
            "name = \"reserved\"\ncount = 3\nreservation = 0.8",
        ),
        // A reservation above the VM's limit.
        ("reservation = 0.8", "reservation = 0.8\nlimit = 0.5"),
        ("reservation = 0.8", "reservation = -0.8"),
        ("limit = 0.2", "limit = 65.0"),
    ] {
        assert!(ALLOC.contains(from), "{from}");
        let text = format!("{EXP}{}", ALLOC.replacen(from, to, 1));
        let e: Experiment = toml::from_str(&text).unwrap();
        assert!(e.check().is_err(), "accepted: {to}");
    }
}

fn alloc_runs(e: &Experiment) -> BTreeMap<String, PanelRun> {
    let jobs = e.panel_jobs();
    let mut runs = BTreeMap::new();
    for (pol, reserved, crowd, capped) in [
        ("stock", 0.34, [0.33; 4], 0.34),
        ("cg", 0.36, [0.36; 4], 0.2),
        ("vmfair", 0.78, [0.25, 0.24, 0.26, 0.25], 0.2),
    ] {
        let j = alloc_job(&jobs, pol);
        let cpus: Vec<(&str, u32, f64)> = [("reserved", 0, reserved), ("capped", 0, capped)]
            .into_iter()
            .chain((0..4).map(|i| ("crowd", i, crowd[i as usize])))
            .collect();
        let r = panel_run(j, &panel_result_of(&j.name, &cpus, true)).unwrap();
        runs.insert(j.name.clone(), r);
    }
    runs
}

#[test]
fn a_reserved_vm_in_the_summary_tables_and_figure() {
    let e = alloc_exp();
    let pts = panel_points(&e, &alloc_runs(&e)).unwrap();
    let mine: Vec<&PanelPoint> = pts.iter().filter(|p| p.panel == "r").collect();
    assert_eq!(mine.len(), 3);
    // The crowd's four VMs as one entry, their CPU as the range over them;
    // the entitlement with the reservation and the limit, under every policy.
    let line = panel_summary("A reserved VM", &mine).unwrap();
    assert_eq!(
        line,
        "**A reserved VM**: CPU per VM (reserved / crowd#0–3 / capped): stock 0.34 / 0.33 / \
         0.34, cg 0.36 / 0.36 / 0.20, vmfair 0.78 / 0.24–0.26 / 0.20; entitled 0.80 / 0.25 / \
         0.20; reservation 0.80 / – / –; limit – / – / 0.20. Farthest VM from its \
         entitlement: stock +70 %, cg -55 %, vmfair -4 %."
    );
    // Panels without reservations or limits have no such columns.
    let md = panels_md(&e, &pts);
    let (before, alloc) = md.split_once("## A reserved VM").unwrap();
    assert!(!before.contains("reservation") && !before.contains("limit"));
    assert!(alloc.contains(
        "| VM | vCPUs | weight | reservation | limit | stock | cg | vmfair | entitled |\n\
         |---|---|---|---|---|---|---|---|---|\n"
    ));
    assert!(
        alloc.contains("| reserved | 1 | 100 | 0.80 | – | 0.340 | 0.360 | 0.780 | 0.800 |"),
        "{alloc}"
    );
    assert!(alloc.contains("| crowd#2 | 1 | 100 | – | – | 0.330 | 0.360 | 0.260 | 0.250 |"));
    assert!(alloc.contains("| capped | 1 | 100 | – | 0.20 | 0.340 | 0.200 | 0.200 | 0.200 |"));
    assert!(alloc.contains("with the VM's reservation and limit whatever the policy"));
    let rst = super::rst::panels_rst(&e, &pts);
    let (before, alloc) = rst.split_once("A reserved VM\n").unwrap();
    assert!(!before.contains("reservation"));
    assert!(alloc.contains(
        "   * - VM\n     - vCPUs\n     - weight\n     - reservation\n     - limit\n     - \
         ``stock``\n"
    ));
    assert!(
        alloc.contains(
            "   * - reserved\n     - 1\n     - 100\n     - 0.80\n     - –\n     - 0.340\n"
        ),
        "{alloc}"
    );
    // The figure: six VMs' labels do not fit on one line each, so they
    // stack (name, vCPUs, reservation or limit), the figure a line taller.
    let svg = panel_svg(&e, &e.panel[2], &mine);
    assert!(svg.contains("height=\"296\""), "{svg}");
    assert!(svg.contains(">reserved</text>") && svg.contains(">r 0.80</text>"));
    assert!(svg.contains(">l 0.20</text>") && svg.contains(">crowd#3</text>"));
    assert!(!svg.contains("(1 vCPU"), "{svg}");
    // The reserved VM's entitlement mark at 0.8 of an axis up to 1:
    // y = 52 + 170 * (1 - 0.8).
    assert!(svg.contains("y1=\"86.0\""), "{svg}");
    // Nine VMs widen the figure: 56 px per VM.
    let mut wide = e.clone();
    wide.panel[2].vm[1].count = 7;
    let pts = panel_points(&wide, &BTreeMap::new()).unwrap();
    let mine: Vec<&PanelPoint> = pts.iter().filter(|p| p.panel == "r").collect();
    let svg = panel_svg(&wide, &wide.panel[2], &mine);
    assert!(svg.contains("width=\"574\""), "{svg}");
}
