//! Entitlements with reservations and limits, and that scenarios without them keep the
//! entitlements they had.

use super::tests::{group, ramp, result, scn};
use super::*;

/// The entitlements as they were computed before reservations and limits: weighted max-min
/// fair shares ([`vmfair_policy::entitlement`]) of what the hand-placed caps leave.
fn entitlements_before(scn: &Scenario) -> Option<Vec<(String, u32, f64)>> {
    if scn.policy != Policy::Vmfair || !scn.host.is_empty() {
        return None;
    }
    let mode = share_mode(scn);
    let mut capped = Vec::new();
    let mut fair = Vec::new();
    for vm in &scn.vm {
        if !matches!(vm.load, Load::Busy | Load::Bench) {
            return None;
        }
        let busy = vm.vcpus + vm.io_threads;
        let w = final_weight(scn, &vm.name, vm.weight);
        for i in 0..vm.count {
            match vm.cpu_max.as_deref().and_then(cpu_max_cap) {
                Some(cap) => capped.push((vm.name.clone(), i, cap.min(f64::from(busy)))),
                None => fair.push((
                    vm.name.clone(),
                    i,
                    vmfair_policy::effective_weight(mode, w, vm.vcpus) as u32,
                    busy,
                )),
            }
        }
    }
    let rest = f64::from(scn.guest_cpus) - capped.iter().map(|c| c.2).sum::<f64>();
    let mut out = vec![0.0; fair.len()];
    let spec: Vec<(u32, u32)> = fair.iter().map(|f| (f.2, f.3)).collect();
    vmfair_policy::entitlement(rest.max(0.0), &spec, &mut out);
    let mut all: Vec<(String, u32, f64)> = capped;
    all.extend(fair.into_iter().zip(out).map(|(f, e)| (f.0, f.1, e)));
    Some(all)
}

fn close(got: &[(String, u32, f64)], want: &[(&str, u32, f64)]) {
    assert_eq!(got.len(), want.len(), "{got:?}");
    for (g, w) in got.iter().zip(want) {
        assert!(
            g.0 == w.0 && g.1 == w.1 && (g.2 - w.2).abs() < 1e-5,
            "got {got:?}, want {want:?}"
        );
    }
}

const RESERVED: &str = r#"
name = "t"
duration_s = 10
policy = "vmfair"
[[vm]]
name = "a"
vcpus = 2
reservation = 1.2
[[vm]]
name = "b"
count = 3
"#;

#[test]
fn a_reserved_vm_beside_busy_vms() {
    let e = entitlements(&scn(RESERVED)).unwrap();
    let other = 0.8 / 3.0;
    close(
        &e,
        &[
            ("a", 0, 1.2),
            ("b", 0, other),
            ("b", 1, other),
            ("b", 2, other),
        ],
    );
    assert_eq!(e[0].2, 1.2);
    // Without the reservation all four get the same.
    let plain = RESERVED.replace("reservation = 1.2\n", "");
    close(
        &entitlements(&scn(&plain)).unwrap(),
        &[("a", 0, 0.5), ("b", 0, 0.5), ("b", 1, 0.5), ("b", 2, 0.5)],
    );
    // A reservation below the fair share changes nothing.
    let low = RESERVED.replace("1.2", "0.3");
    close(
        &entitlements(&scn(&low)).unwrap(),
        &[("a", 0, 0.5), ("b", 0, 0.5), ("b", 1, 0.5), ("b", 2, 0.5)],
    );
    // Reservations with weights: b#* reserve 0.2 each, a weighs 900 against 100.
    let weighted = RESERVED
        .replace("reservation = 1.2", "weight = 900")
        .replace("count = 3", "count = 3\nreservation = 0.2");
    close(
        &entitlements(&scn(&weighted)).unwrap(),
        &[("a", 0, 1.4), ("b", 0, 0.2), ("b", 1, 0.2), ("b", 2, 0.2)],
    );
    // Two decimals count, as the runner writes them.
    let fine = RESERVED.replace("1.2", "1.204");
    assert_eq!(entitlements(&scn(&fine)).unwrap()[0].2, 1.2);
}

fn e_of(s: &Scenario) -> Vec<(String, u32, f64)> {
    entitlements(s).unwrap()
}

#[test]
fn a_limited_vm_beside_a_busy_vm() {
    let limited = r#"
name = "t"
duration_s = 10
policy = "vmfair"
[[vm]]
name = "a"
vcpus = 2
limit = 0.5
[[vm]]
name = "b"
"#;
    let e = entitlements(&scn(limited)).unwrap();
    assert_eq!(e, [("a".into(), 0, 0.5), ("b".into(), 0, 1.0)]);
    // A limit above the fair share changes nothing.
    let loose = limited.replace("limit = 0.5", "limit = 1.5");
    let e = entitlements(&scn(&loose)).unwrap();
    assert_eq!(e, [("a".into(), 0, 1.0), ("b".into(), 0, 1.0)]);
    // Beside a 2-vCPU VM, what the limited VM cannot take goes to the other.
    let two = limited.replace("name = \"b\"", "name = \"b\"\nvcpus = 2");
    let e = entitlements(&scn(&two)).unwrap();
    assert_eq!(e, [("a".into(), 0, 0.5), ("b".into(), 0, 1.5)]);
    // Policy cgroup (limit as cpu.max) promises the same: the anchor is judged alike.
    let cg = limited.replace("\"vmfair\"", "\"cgroup\"");
    assert_eq!(entitlements(&scn(&cg)).unwrap(), e_of(&scn(limited)));
    // But per VM, whatever share mode a vmfair scenario would set.
    let per_vcpu = "[sysctl]\n\"kernel.vmfair.share_mode\" = \"per-vcpu\"\n";
    let cg3 = format!(
        "{}\n[[vm]]\nname = \"c\"\nvcpus = 3\n{per_vcpu}",
        cg.trim_end()
    );
    let e = entitlements(&scn(&cg3)).unwrap();
    close(&e, &[("a", 0, 0.5), ("b", 0, 0.75), ("c", 0, 0.75)]);
    // Stock and autogroup promise nothing per VM.
    for p in ["stock", "autogroup"] {
        let other = limited
            .replace("limit = 0.5\n", "")
            .replace("\"vmfair\"", &format!("{p:?}"));
        assert!(entitlements(&scn(&other)).is_none(), "{p}");
    }
}

const EVENTS: &str = r#"
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
action = "reservation"
vm = "a"
value = 1.5
"#;

#[test]
fn events_set_the_final_reservation_and_limit() {
    let e = entitlements(&scn(EVENTS)).unwrap();
    assert_eq!(e, [("a".into(), 0, 1.5), ("b".into(), 0, 0.5)]);
    // A later limit on b: a gets what b cannot take.
    let limit =
        format!("{EVENTS}[[event]]\nat_s = 6\naction = \"limit\"\nvm = \"b\"\nvalue = 0.3\n");
    close(
        &entitlements(&scn(&limit)).unwrap(),
        &[("a", 0, 1.7), ("b", 0, 0.3)],
    );
    // The last event counts: the reservation taken back.
    let cleared =
        format!("{EVENTS}[[event]]\nat_s = 6\naction = \"reservation\"\nvm = \"a\"\nvalue = 0\n");
    let e = entitlements(&scn(&cleared)).unwrap();
    assert_eq!(e, [("a".into(), 0, 1.0), ("b".into(), 0, 1.0)]);
    // An event overrides the VM's own value.
    let own = EVENTS.replace("vcpus = 2\n[[vm]]", "vcpus = 2\nreservation = 0.5\n[[vm]]");
    let e = entitlements(&scn(&own)).unwrap();
    assert_eq!(e, [("a".into(), 0, 1.5), ("b".into(), 0, 0.5)]);
}

#[test]
fn a_reservation_change_is_judged_after_it_settles() {
    let s = scn(EVENTS);
    let mut res = result(vec![
        group("a", 0, 13.0, ramp(1.0, 1.5, 4.0, 0.5)),
        group("b", 0, 7.0, ramp(1.0, 0.5, 4.0, 0.5)),
    ]);
    res.events = vec![vmfair_scenario::EventRecord {
        at_s: 4.0,
        action: EventAction::Reservation,
        detail: String::new(),
        ok: true,
        took_s: 0.0,
    }];
    let v = judge(&s, &res);
    assert!(v.iter().all(|v| v.ok), "{v:?}");
    let names: Vec<&str> = v.iter().map(|v| v.name.as_str()).collect();
    assert!(
        names.contains(&"run-time change reaches its share within 1 s"),
        "{names:?}"
    );
    assert!(v[0].detail.contains("after the run-time change"), "{v:?}");
    assert!(v[0].detail.contains("; worst "), "{v:?}");
    // A reservation change that takes 1.5 s misses its 1 s, where a weight change has 2 s.
    res.groups[0].series = ramp(1.0, 1.5, 4.0, 1.25);
    res.groups[1].series = ramp(1.0, 0.5, 4.0, 1.25);
    let v = judge(&s, &res);
    let late = v
        .iter()
        .find(|v| v.name == "run-time change reaches its share within 1 s")
        .unwrap();
    assert!(!late.ok && late.detail.contains("took 1.75 s"), "{late:?}");
    // Shares that stay at the old weights fail.
    res.groups[0].series = ramp(1.0, 1.0, 4.0, 0.0);
    res.groups[1].series = ramp(1.0, 1.0, 4.0, 0.0);
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
            "run-time change reaches its share within 1 s"
        ],
        "{v:?}"
    );
}

#[test]
fn scenarios_without_the_keys_keep_their_entitlements() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../qemu-test/scenarios");
    let mut texts: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|f| f.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    texts.sort();
    // Variants the files do not have: per-vCPU share mode, weights with caps.
    texts.push(
        r#"
name = "t"
duration_s = 10
policy = "vmfair"
[sysctl]
"kernel.vmfair.share_mode" = "vcpu"
[[vm]]
name = "a"
weight = 300
[[vm]]
name = "b"
vcpus = 4
io_threads = 1
[[vm]]
name = "c"
vcpus = 2
cpu_max = "30000 100000"
"#
        .to_string(),
    );
    let mut judged = 0;
    for text in &texts {
        let s = scn(text);
        if s.vm.iter().any(|v| v.reservation != 0.0 || v.limit != 0.0) {
            continue;
        }
        // Policy cgroup is judged like vmfair now; before, it had no entitlements.
        let as_before = if s.policy == Policy::Cgroup {
            let mut v = s.clone();
            v.policy = Policy::Vmfair;
            v
        } else {
            s.clone()
        };
        let (now, before) = (entitlements(&s), entitlements_before(&as_before));
        assert_eq!(now, before, "{}", s.name);
        judged += usize::from(now.is_some());
    }
    assert!(judged >= 6, "{judged} scenarios with entitlements");
}

#[test]
fn the_alloc_scenarios_are_entitled_as_designed() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../qemu-test/scenarios");
    let load = |name: &str| scn(&std::fs::read_to_string(dir.join(name)).unwrap());
    let reserve = load("alloc-reserve.toml");
    let e = entitlements(&reserve).unwrap();
    close(
        &e,
        &[
            ("reserved", 0, 1.2),
            ("crowd", 0, 0.2),
            ("crowd", 1, 0.2),
            ("crowd", 2, 0.2),
            ("crowd", 3, 0.2),
        ],
    );
    // The reservation changes the outcome: without it, 0.4 CPU each.
    let before = entitlements_before(&reserve).unwrap();
    assert!(
        before.iter().all(|b| (b.2 - 0.4).abs() < 1e-6),
        "{before:?}"
    );
    let limit = load("alloc-limit.toml");
    let e = entitlements(&limit).unwrap();
    assert_eq!(e, [("limited".into(), 0, 0.5), ("free".into(), 0, 1.0)]);
    let before = entitlements_before(&limit).unwrap();
    assert_eq!(
        before,
        [("limited".into(), 0, 1.0), ("free".into(), 0, 1.0)]
    );
}

#[test]
fn a_scenario_tolerance_tightens_the_shares_verdict() {
    // a gets 1.45 CPU of its 1.5, b 0.52 of its 0.5: inside ±10 %, outside ±2.5 %.
    let mut res = result(vec![
        group("a", 0, 14.5, Vec::new()),
        group("b", 0, 5.2, Vec::new()),
    ]);
    res.duration_s = 10.0;
    let plain = EVENTS
        .split("[[event]]")
        .next()
        .unwrap()
        .replace("vcpus = 2\n[[vm]]", "vcpus = 2\nreservation = 1.5\n[[vm]]");
    let v = judge(&scn(&plain), &res);
    assert!(
        v[0].ok && v[0].name == "shares within ±10% of entitlement",
        "{v:?}"
    );
    assert!(v[0].detail.contains("worst 4.0% off (b#0)"), "{v:?}");
    let tight = plain.replacen("\n", "\ntolerance_pct = 2.5\n", 1);
    let v = judge(&scn(&tight), &res);
    assert_eq!(v[0].name, "shares within ±2.5% of entitlement", "{v:?}");
    assert!(!v[0].ok && v[0].detail.contains("OUT of ±2.5%"), "{v:?}");
}
