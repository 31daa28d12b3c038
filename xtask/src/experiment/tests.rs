//! Tests of the experiment module.

use super::figures::*;
use super::points::*;
use super::report::*;
use super::spec::*;
use super::svg::*;
use std::collections::BTreeMap;
use vmfair_scenario::ScenarioResult;

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

fn result(name: &str, index: f64, valid: bool) -> ScenarioResult {
    serde_json::from_value(serde_json::json!({
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
    }))
    .unwrap()
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
    // No target VM, or no window: an error, not figures of zeros.
    let mut r = result("x", 50.0, true);
    r.groups.retain(|g| g.name != "target");
    assert!(figures(&r).is_err());
    let mut r = result("x", 50.0, true);
    r.duration_s = 0.0;
    assert!(figures(&r).is_err());
    // A dummy without the halt-poll counter: no halt-poll figure rather than a partial sum.
    let mut r = result("x", 50.0, true);
    r.groups[2].halt_poll_s = None;
    let f = figures(&r).unwrap();
    assert_eq!(f.dummies_halt_poll, None);
    assert_eq!(f.dummies_sleeps_per_s, Some(200.0));
    // Schedstats counters per second, the dummies' summed.
    let mut r = result("x", 50.0, true);
    r.groups[0].sched.insert("nr_wakeups".into(), 30);
    r.groups[1].sched.insert("nr_wakeups".into(), 10);
    r.groups[2].sched.insert("nr_wakeups".into(), 20);
    let f = figures(&r).unwrap();
    assert_eq!(f.target_sched["nr_wakeups"], 3.0);
    assert_eq!(f.dummies_sched["nr_wakeups"], 3.0);
}

#[test]
fn results_missing_required_keys_are_rejected() {
    // The reader is typed: a group without its CPU time is an error, not 0 s.
    let v = serde_json::json!({
        "scenario": "x", "policy": "stock", "kernel": "k", "guest_cpus": 2,
        "duration_s": 10.0,
        "groups": [{"kind": "vm", "name": "target", "instance": 0, "pid": 1, "vcpus": 1,
                    "work": 1, "index": 1.0}]
    });
    assert!(serde_json::from_value::<ScenarioResult>(v).is_err());
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
    // stock beside 4 idle dummies has two repetitions: capped bars.
    assert!(svg.contains("<path d=\"M"), "{svg}");
    let md = report_md(&e, &pts, &[], &runs, &[], "k", &[]);
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

#[test]
fn desktop_dummies_pass_their_threads_on() {
    let text = EXP.replace(
        "[dummy.busy]\nload = \"busy\"",
        "[dummy.busy]\nload = \"desktop\"\ntick_hz = 25\nio_hz = 10\nrefresh_us = 500",
    );
    let e: Experiment = toml::from_str(&text).unwrap();
    e.check().unwrap();
    let j = e
        .jobs()
        .into_iter()
        .find(|j| j.name == "t-stock-busy-4-r1")
        .unwrap();
    let s = vmfair_scenario::Scenario::from_toml_str(&j.toml).unwrap();
    let d = &s.vm[1];
    assert_eq!(d.load, vmfair_scenario::Load::Desktop);
    assert_eq!((d.tick_hz, d.io_hz, d.io_us), (25, 10, 200));
    assert_eq!((d.refresh_hz, d.refresh_us), (30, 500));
    // The target keeps the defaults and gets no desktop keys.
    assert!(!j.toml.split("[[vm]]").nth(1).unwrap().contains("io_hz"));
    // The report says what the guest runs, the scenario's defaults for
    // what the file leaves out (burst_us, io_us, refresh_hz).
    let md = report_md(&e, &[], &[], &BTreeMap::new(), &[], "k", &[]);
    let said = format!(
        "`busy` = 1 vCPU `desktop` at {} Hz with {} µs per tick, its VMM's I/O thread \
         waking at {} Hz for {} µs and its display-refresh thread at {} Hz for {} µs",
        d.tick_hz, d.burst_us, d.io_hz, d.io_us, d.refresh_hz, d.refresh_us
    );
    assert!(md.contains(&said), "{md}");
    // An idle dummy that sets no tick gets the scenario's default one.
    let idle = e.dummy["idle"].tick().unwrap();
    assert_eq!((idle.hz, idle.us), (100, 20));
    let mut plain = e.dummy["idle"].clone();
    (plain.tick_hz, plain.burst_us) = (None, None);
    assert_eq!(plain.tick(), Some(vmfair_scenario::DEFAULT_TICK));
    assert!(plain.desktop().is_none() && e.target.tick().is_none());
}
