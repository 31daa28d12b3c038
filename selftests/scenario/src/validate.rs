// SPDX-License-Identifier: GPL-2.0
//! The checks of a scenario file: ranges, names and consistency (see the crate
//! documentation).

use crate::scenario::{
    cpus_hundredths, valid_cpu_max, EventAction, Scenario, VmSpec, DESKTOP_THREADS,
};
use crate::values::{Load, Policy};
use std::collections::BTreeMap;
use std::fmt;

/// Largest `reservation` or `limit` (CPUs): the most CPUs a guest has.
const CPUS_MAX: f64 = 64.0;
/// The sysctl that keeps CPUs out of the reservations (CPUs, two decimals).
const HEADROOM_SYSCTL: &str = "kernel.vmfair.reservation_headroom";

/// Checks a CPU amount (`reservation`, `limit`, their events, the headroom): finite, 0..=64.
fn check_cpus(errs: &mut Vec<String>, what: &str, v: f64) {
    if !(v.is_finite() && (0.0..=CPUS_MAX).contains(&v)) {
        errs.push(format!(
            "{what} = {v} must be a number of CPUs in 0..={CPUS_MAX}"
        ));
    }
}

/// Whether `policy` has a reservation (`reservation`) or a limit (`limit`) for VMs.
fn allocation_error(policy: Policy, key: &str, vm: &VmSpec) -> Option<String> {
    if vm.cpu_max.is_some() {
        return Some(format!(
            "`{key}` does not apply to a VM placed by hand in a cgroup (`cpu_max`)"
        ));
    }
    match (key, policy) {
        (_, Policy::Vmfair) | ("limit", Policy::Cgroup) => None,
        ("reservation", _) => Some(format!(
            "`reservation` needs policy \"vmfair\" (policy \"{policy}\" has no minimum)"
        )),
        _ => Some(format!(
            "`limit` needs policy \"vmfair\" or \"cgroup\", not \"{policy}\""
        )),
    }
}

fn check_range<T: PartialOrd + fmt::Display>(
    errs: &mut Vec<String>,
    what: &str,
    v: T,
    lo: T,
    hi: T,
) {
    if v < lo || v > hi {
        errs.push(format!("{what} = {v} is out of range {lo}..={hi}"));
    }
}

fn check_name(errs: &mut Vec<String>, what: &str, name: &str) {
    let ok = !name.is_empty()
        && name.len() <= 32
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !ok {
        errs.push(format!(
            "{what} name {name:?} must be 1..=32 characters of [A-Za-z0-9_-]"
        ));
    }
}

impl Scenario {
    /// Parses and validates a scenario file. The error says what is wrong, with every
    /// validation failure joined by `"; "`.
    pub fn from_toml_str(text: &str) -> Result<Scenario, String> {
        let s: Scenario = toml::from_str(text).map_err(|e| format!("scenario: {e}"))?;
        s.validate()?;
        Ok(s)
    }

    /// Checks ranges and consistency (see the crate documentation).
    pub fn validate(&self) -> Result<(), String> {
        let mut errs = Vec::new();
        check_name(&mut errs, "scenario", &self.name);
        check_range(&mut errs, "guest_cpus", self.guest_cpus, 1, 64);
        if !(self.duration_s > 0.0 && self.duration_s <= 3600.0) {
            errs.push(format!(
                "duration_s = {} must be > 0 and <= 3600",
                self.duration_s
            ));
        }
        if !(self.warmup_s >= 0.0 && self.warmup_s <= 600.0) {
            errs.push(format!(
                "warmup_s = {} must be >= 0 and <= 600",
                self.warmup_s
            ));
        }
        for (key, value) in &self.sysctl {
            let key_ok = key.split('.').count() >= 2
                && key.split('.').all(|part| {
                    !part.is_empty()
                        && part
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                });
            if !key_ok {
                errs.push(format!(
                    "sysctl key {key:?} must be a dotted name like \"kernel.vmfair.enabled\""
                ));
            }
            if value.to_string().contains(['\n', '\0']) {
                errs.push(format!("sysctl {key}: value must be one line"));
            }
        }
        let mut names: Vec<&str> = Vec::new();
        for vm in &self.vm {
            let what = format!("vm {:?}", vm.name);
            check_name(&mut errs, "vm", &vm.name);
            if names.contains(&vm.name.as_str()) {
                errs.push(format!("{what}: duplicate name"));
            }
            names.push(&vm.name);
            check_range(&mut errs, &format!("{what}: count"), vm.count, 1, 64);
            check_range(&mut errs, &format!("{what}: vcpus"), vm.vcpus, 1, 64);
            check_range(&mut errs, &format!("{what}: weight"), vm.weight, 1, 10000);
            check_range(&mut errs, &format!("{what}: nice"), vm.nice, -20, 19);
            check_range(
                &mut errs,
                &format!("{what}: io_threads"),
                vm.io_threads,
                0,
                64,
            );
            check_range(
                &mut errs,
                &format!("{what}: tick_hz"),
                vm.tick_hz,
                19,
                10000,
            );
            for (key, hz, us) in [
                ("io", vm.io_hz, vm.io_us),
                ("refresh", vm.refresh_hz, vm.refresh_us),
            ] {
                check_range(&mut errs, &format!("{what}: {key}_hz"), hz, 1, 1000);
                if hz > 0 && u64::from(us) * u64::from(hz) >= 1_000_000 {
                    errs.push(format!(
                        "{what}: {key}_us = {us} must be shorter than one period (1e6 / \
                         {key}_hz = {} us)",
                        1_000_000 / hz
                    ));
                }
            }
            if vm.load == Load::Desktop && vm.io_threads + DESKTOP_THREADS > 64 {
                errs.push(format!(
                    "{what}: io_threads = {} leaves no room for the {DESKTOP_THREADS} desktop \
                     threads",
                    vm.io_threads
                ));
            }
            if let Some(m) = &vm.cpu_max {
                if !valid_cpu_max(m) {
                    errs.push(format!(
                        "{what}: cpu_max = {m:?} must be \"max\" or \"QUOTA PERIOD\" in \
                         microseconds (quota >= 1000, period 1000..=1000000)"
                    ));
                }
            }
            if vm.tick_hz > 0 && u64::from(vm.burst_us) * u64::from(vm.tick_hz) >= 1_000_000 {
                errs.push(format!(
                    "{what}: burst_us = {} must be shorter than one tick (1e6 / tick_hz = {} us)",
                    vm.burst_us,
                    1_000_000 / vm.tick_hz
                ));
            }
        }
        for h in &self.host {
            let what = format!("host {:?}", h.name);
            check_name(&mut errs, "host", &h.name);
            if names.contains(&h.name.as_str()) {
                errs.push(format!("{what}: duplicate name"));
            }
            names.push(&h.name);
            check_range(&mut errs, &format!("{what}: count"), h.count, 1, 64);
            check_range(&mut errs, &format!("{what}: threads"), h.threads, 1, 64);
            check_range(&mut errs, &format!("{what}: nice"), h.nice, -20, 19);
            if h.load != Load::Busy {
                errs.push(format!(
                    "{what}: load = \"{}\" is not supported for host processes (only \"busy\")",
                    h.load
                ));
            }
        }
        if self.sample_ms != 0 {
            check_range(&mut errs, "sample_ms", self.sample_ms, 50, 5000);
        }
        if let Some(t) = self.tolerance_pct {
            if !(0.5..=50.0).contains(&t) {
                errs.push(format!("tolerance_pct {t} not within 0.5..=50"));
            }
        }
        let mut last_at = 0.0;
        for (i, ev) in self.event.iter().enumerate() {
            let what = format!("event {} ({})", i + 1, ev.action);
            if !(ev.at_s >= 0.0 && ev.at_s < self.duration_s) {
                errs.push(format!(
                    "{what}: at_s = {} must be in [0, duration_s = {})",
                    ev.at_s, self.duration_s
                ));
            }
            if ev.at_s < last_at {
                errs.push(format!("{what}: events must be in order of at_s"));
            }
            last_at = ev.at_s;
            let (want_vm, want_key, want_value) = match ev.action {
                EventAction::Weight | EventAction::Reservation | EventAction::Limit => {
                    (true, false, true)
                }
                EventAction::Sysctl => (false, true, true),
                EventAction::Modprobe | EventAction::Rmmod => (false, false, false),
            };
            for (have, want, key) in [
                (ev.vm.is_some(), want_vm, "vm"),
                (ev.key.is_some(), want_key, "key"),
                (ev.value.is_some(), want_value, "value"),
            ] {
                if have && !want {
                    errs.push(format!("{what}: `{key}` does not apply"));
                } else if want && !have {
                    errs.push(format!("{what}: `{key}` is required"));
                }
            }
            if matches!(
                ev.action,
                EventAction::Weight | EventAction::Reservation | EventAction::Limit
            ) {
                if let Some(vm) = &ev.vm {
                    if !self.vm.iter().any(|v| &v.name == vm) {
                        errs.push(format!("{what}: no [[vm]] named {vm:?}"));
                    }
                }
            }
            if ev.action == EventAction::Weight {
                if let Some(v) = &ev.value {
                    match v.to_string().parse::<u32>() {
                        Ok(w) => check_range(&mut errs, &format!("{what}: value"), w, 1, 10000),
                        Err(_) => errs.push(format!("{what}: value {v} is not a weight")),
                    }
                }
            }
            if let (EventAction::Sysctl, Some(key)) = (ev.action, &ev.key) {
                if !key.contains('.') || key.contains(['/', '\n', '\0', ' ']) {
                    errs.push(format!("{what}: key {key:?} must be a dotted sysctl name"));
                }
            }
        }
        self.check_allocations(&mut errs);
        self.check_top(&mut errs);
        if errs.is_empty() {
            Ok(())
        } else {
            Err(format!("scenario {:?}: {}", self.name, errs.join("; ")))
        }
    }

    /// The checks of `reservation` and `limit`, on `[[vm]]` and in events: amounts in range, the
    /// policy has them, no reservation above a limit and the reservations of all instances
    /// within `guest_cpus` minus `kernel.vmfair.reservation_headroom` (as set in `[sysctl]`),
    /// at the start and after every event (the runner applies events one at a time).
    fn check_allocations(&self, errs: &mut Vec<String>) {
        let mut headroom = 0;
        if let Some(v) = self.sysctl.get(HEADROOM_SYSCTL) {
            match v.to_string().parse::<f64>() {
                Ok(h) => {
                    check_cpus(errs, &format!("sysctl {HEADROOM_SYSCTL}"), h);
                    headroom = cpus_hundredths(h);
                }
                Err(_) => errs.push(format!("sysctl {HEADROOM_SYSCTL} = {v} is not CPUs")),
            }
        }
        let capacity = (u64::from(self.guest_cpus) * 100).saturating_sub(headroom);
        // Per [[vm]] name: (count, reservation, limit) in hundredths of a CPU, as they change.
        let mut now: BTreeMap<&str, (u64, u64, u64)> = BTreeMap::new();
        let pair = |errs: &mut Vec<String>, what: &str, r: u64, l: u64| {
            if r != 0 && l != 0 && r > l {
                errs.push(format!(
                    "{what}: reservation {:.2} is above limit {:.2}",
                    r as f64 / 100.0,
                    l as f64 / 100.0
                ));
            }
        };
        let total = |now: &BTreeMap<&str, (u64, u64, u64)>| -> u64 {
            now.values().map(|(n, r, _)| n * r).sum()
        };
        let over = |errs: &mut Vec<String>, what: &str, sum: u64| {
            if sum > capacity {
                errs.push(format!(
                    "{what}: the reservations of all VM instances add up to {:.2} CPUs, more \
                     than guest_cpus = {}{}",
                    sum as f64 / 100.0,
                    self.guest_cpus,
                    if headroom > 0 {
                        format!(" minus {HEADROOM_SYSCTL} = {:.2}", headroom as f64 / 100.0)
                    } else {
                        String::new()
                    }
                ));
            }
        };
        for vm in &self.vm {
            let what = format!("vm {:?}", vm.name);
            for (key, v) in [("reservation", vm.reservation), ("limit", vm.limit)] {
                check_cpus(errs, &format!("{what}: {key}"), v);
                if v != 0.0 {
                    if let Some(e) = allocation_error(self.policy, key, vm) {
                        errs.push(format!("{what}: {e}"));
                    }
                }
            }
            let (r, l) = (cpus_hundredths(vm.reservation), cpus_hundredths(vm.limit));
            pair(errs, &what, r, l);
            now.insert(&vm.name, (u64::from(vm.count), r, l));
        }
        over(errs, "[[vm]]", total(&now));
        for (i, ev) in self.event.iter().enumerate() {
            let key = ev.action.as_str();
            if !matches!(ev.action, EventAction::Reservation | EventAction::Limit) {
                continue;
            }
            let what = format!("event {} ({key})", i + 1);
            let Some(vm) = ev.vm.as_deref() else {
                continue;
            };
            let Some(spec) = self.vm.iter().find(|v| v.name == vm) else {
                continue;
            };
            if let Some(e) = allocation_error(self.policy, key, spec) {
                errs.push(format!("{what}: {e}"));
            }
            let Some(v) = &ev.value else {
                continue;
            };
            let Some(cpus) = ev.cpus() else {
                errs.push(format!("{what}: value {v} is not CPUs"));
                continue;
            };
            check_cpus(errs, &format!("{what}: value"), cpus);
            let Some(state) = now.get_mut(vm) else {
                continue;
            };
            if ev.action == EventAction::Reservation {
                state.1 = cpus_hundredths(cpus);
            } else {
                state.2 = cpus_hundredths(cpus);
            }
            let (r, l) = (state.1, state.2);
            pair(errs, &format!("{what}: vm {vm:?}"), r, l);
            if ev.action == EventAction::Reservation {
                over(errs, &what, total(&now));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::*;

    /// Each `(from, to, want)`: `base` with its first `from` made `to` is refused with an
    /// error that contains `want`.
    fn rejected(base: &str, cases: &[(&str, &str, &str)]) {
        for &(from, to, want) in cases {
            assert!(base.contains(from), "{from}");
            let text = base.replacen(from, to, 1);
            let e = Scenario::from_toml_str(&text).unwrap_err();
            assert!(e.contains(want), "{from} -> {to}: {e}");
        }
    }

    const GOOD: &str = r#"
name = "weights-1-3"
guest_cpus = 2
duration_s = 20
warmup_s = 3
policy = "vmfair"
[sysctl]
"kernel.vmfair.default_weight" = "100"
"kernel.sched_autogroup_enabled" = 0

[[vm]]
name = "a"
count = 1
vcpus = 2
load = "busy"
weight = 100
nice = 0
io_threads = 0
tick_hz = 250
burst_us = 50

[[vm]]
name = "b"
weight = 300

[[host]]
name = "noise"
count = 1
threads = 1
load = "busy"
"#;

    #[test]
    fn good_scenario_parses_with_defaults() {
        let s = Scenario::from_toml_str(GOOD).unwrap();
        assert_eq!(s.name, "weights-1-3");
        assert_eq!(s.policy, Policy::Vmfair);
        assert_eq!(s.duration_s, 20.0);
        assert_eq!(s.vm.len(), 2);
        assert_eq!(s.vm[0].vcpus, 2);
        let b = &s.vm[1];
        assert_eq!(
            (b.count, b.vcpus, b.load, b.weight),
            (1, 1, Load::Busy, 300)
        );
        assert_eq!(
            (b.nice, b.io_threads, b.tick_hz, b.burst_us),
            (0, 0, 250, 50)
        );
        assert_eq!(s.host[0].threads, 1);
        assert_eq!(
            s.sysctl["kernel.vmfair.default_weight"].to_string(),
            "100".to_string()
        );
        assert_eq!(s.sysctl["kernel.sched_autogroup_enabled"].to_string(), "0");
    }

    #[test]
    fn desktop_vm_parses_with_defaults() {
        let d = GOOD.replace("load = \"busy\"\nweight", "load = \"desktop\"\nweight");
        let s = Scenario::from_toml_str(&d).unwrap();
        let a = &s.vm[0];
        assert_eq!(a.load, Load::Desktop);
        assert_eq!(a.load.as_str(), "desktop");
        assert_eq!(
            (a.io_hz, a.io_us, a.refresh_hz, a.refresh_us),
            (20, 200, 30, 300)
        );
        let d = d.replace(
            "burst_us = 50",
            "burst_us = 50\nio_hz = 5\nrefresh_us = 1000",
        );
        let a = Scenario::from_toml_str(&d).unwrap().vm[0].clone();
        assert_eq!((a.io_hz, a.refresh_us), (5, 1000));
        let crowded = d.replace("io_threads = 0", "io_threads = 63");
        let e = Scenario::from_toml_str(&crowded).unwrap_err();
        assert!(e.contains("desktop threads"), "{e}");
    }

    #[test]
    fn minimal_scenario_defaults() {
        let s = Scenario::from_toml_str("name = \"m\"\nduration_s = 1.5\n").unwrap();
        assert_eq!(s.guest_cpus, 2);
        assert_eq!(s.warmup_s, 3.0);
        assert_eq!(s.policy, Policy::Stock);
        assert!(s.vm.is_empty() && s.host.is_empty() && s.sysctl.is_empty());
    }

    #[test]
    fn unknown_keys_rejected() {
        let top = format!("{GOOD}\nbogus = 1\n");
        assert!(Scenario::from_toml_str(&top).is_err());
        let in_vm = GOOD.replace("io_threads = 0", "io_threads = 0\nvcpu = 3");
        let e = Scenario::from_toml_str(&in_vm).unwrap_err();
        assert!(e.contains("vcpu"), "{e}");
        let in_host = GOOD.replace("threads = 1", "threads = 1\nweight = 5");
        assert!(Scenario::from_toml_str(&in_host).is_err());
    }

    #[test]
    fn bad_enums_rejected() {
        let p = GOOD.replace("\"vmfair\"", "\"fair\"");
        assert!(Scenario::from_toml_str(&p).is_err());
        let l = GOOD.replace("load = \"busy\"\nweight", "load = \"spin\"\nweight");
        assert!(Scenario::from_toml_str(&l).is_err());
    }

    #[test]
    fn out_of_range_rejected() {
        for (from, to, needle) in [
            ("weight = 300", "weight = 0", "weight"),
            ("weight = 300", "weight = 10001", "weight"),
            ("vcpus = 2", "vcpus = 0", "vcpus"),
            ("count = 1\nvcpus", "count = 0\nvcpus", "count"),
            ("nice = 0", "nice = 20", "nice"),
            ("nice = 0", "nice = -21", "nice"),
            ("guest_cpus = 2", "guest_cpus = 0", "guest_cpus"),
            ("duration_s = 20", "duration_s = 0", "duration_s"),
            ("duration_s = 20", "duration_s = -1", "duration_s"),
            ("warmup_s = 3", "warmup_s = -1", "warmup_s"),
            ("burst_us = 50", "burst_us = 4000", "burst_us"),
            ("burst_us = 50", "burst_us = 50\nio_hz = 0", "io_hz"),
            (
                "burst_us = 50",
                "burst_us = 50\nrefresh_hz = 1001",
                "refresh_hz",
            ),
            (
                "burst_us = 50",
                "burst_us = 50\nrefresh_hz = 30\nrefresh_us = 40000",
                "refresh_us",
            ),
            ("burst_us = 50", "burst_us = 50\nio_us = 1000000", "io_us"),
            ("threads = 1", "threads = 0", "threads"),
            ("name = \"b\"", "name = \"a\"", "duplicate"),
            ("name = \"noise\"", "name = \"no/ise\"", "name"),
            ("\"kernel.vmfair.default_weight\"", "\"../etc\"", "sysctl"),
        ] {
            assert!(GOOD.contains(from), "{from}");
            let bad = GOOD.replacen(from, to, 1);
            let e = Scenario::from_toml_str(&bad).unwrap_err();
            assert!(e.contains(needle), "{to}: {e}");
        }
    }

    #[test]
    fn host_load_must_be_busy() {
        let bad = GOOD.replace(
            "threads = 1\nload = \"busy\"",
            "threads = 1\nload = \"idle\"",
        );
        assert!(Scenario::from_toml_str(&bad).unwrap_err().contains("host"));
    }

    const EVENTS: &str = r#"
name = "ev"
duration_s = 10
policy = "autogroup"
sample_ms = 250
[[vm]]
name = "a"
cpu_max = "50000 100000"
[[event]]
at_s = 2
action = "modprobe"
[[event]]
at_s = 4
action = "weight"
vm = "a"
value = 300
[[event]]
at_s = 5
action = "sysctl"
key = "kernel.vmfair.enabled"
value = "0"
[[event]]
at_s = 6
action = "rmmod"
"#;

    #[test]
    fn events_and_series_parse() {
        let s = Scenario::from_toml_str(EVENTS).unwrap();
        assert_eq!(s.sample_ms, 250);
        assert_eq!(s.vm[0].cpu_max.as_deref(), Some("50000 100000"));
        let actions: Vec<_> = s.event.iter().map(|e| e.action).collect();
        assert_eq!(
            actions,
            [
                EventAction::Modprobe,
                EventAction::Weight,
                EventAction::Sysctl,
                EventAction::Rmmod
            ]
        );
        assert_eq!(s.event[1].value.as_ref().unwrap().to_string(), "300");
        assert_eq!(Scenario::from_toml_str(GOOD).unwrap().sample_ms, 0);
        assert_eq!(Scenario::from_toml_str(GOOD).unwrap().tolerance_pct, None);
        let tight = EVENTS.replace("sample_ms = 250", "sample_ms = 250\ntolerance_pct = 5");
        assert_eq!(
            Scenario::from_toml_str(&tight).unwrap().tolerance_pct,
            Some(5.0)
        );
    }

    #[test]
    fn bad_events_rejected() {
        let cases = [
            ("at_s = 6\n", "at_s = 10\n", "at_s"),
            ("at_s = 4\n", "at_s = 1\n", "order"),
            ("vm = \"a\"", "vm = \"zz\"", "no [[vm]]"),
            ("value = 300", "value = 0", "out of range"),
            ("value = 300", "value = \"heavy\"", "not a weight"),
            ("vm = \"a\"\n", "", "`vm` is required"),
            (
                "action = \"rmmod\"",
                "action = \"rmmod\"\nvm = \"a\"",
                "does not apply",
            ),
            (
                "action = \"rmmod\"",
                "action = \"reboot\"",
                "unknown variant",
            ),
            ("sample_ms = 250", "sample_ms = 10", "sample_ms"),
            (
                "sample_ms = 250",
                "sample_ms = 250\ntolerance_pct = 0.1",
                "tolerance_pct",
            ),
            (
                "sample_ms = 250",
                "sample_ms = 250\ntolerance_pct = 60",
                "tolerance_pct",
            ),
            ("\"50000 100000\"", "\"50 100000\"", "cpu_max"),
            ("\"50000 100000\"", "\"lots\"", "cpu_max"),
            ("key = \"kernel.vmfair.enabled\"", "key = \"a/b\"", "dotted"),
        ];
        rejected(EVENTS, &cases);
    }

    #[test]
    fn cpu_max_syntax() {
        for ok in ["max", "max 100000", "20000 100000", "1000 1000"] {
            assert!(valid_cpu_max(ok), "{ok}");
        }
        for bad in [
            "",
            "max max",
            "999 100000",
            "20000 999",
            "20000",
            "1 2 3",
            "-5 100000",
        ] {
            assert!(!valid_cpu_max(bad), "{bad}");
        }
    }

    const ALLOC: &str = r#"
name = "alloc"
guest_cpus = 2
duration_s = 10
policy = "vmfair"
[[vm]]
name = "r"
vcpus = 2
reservation = 1.2
limit = 1.5
[[vm]]
name = "c"
count = 4
[[event]]
at_s = 2
action = "limit"
vm = "r"
value = 1.25
[[event]]
at_s = 3
action = "reservation"
vm = "c"
value = 0.2
[[event]]
at_s = 4
action = "reservation"
vm = "r"
value = 1
"#;

    #[test]
    fn reservation_and_limit_parse() {
        let s = Scenario::from_toml_str(ALLOC).unwrap();
        assert_eq!((s.vm[0].reservation, s.vm[0].limit), (1.2, 1.5));
        assert_eq!((s.vm[1].reservation, s.vm[1].limit), (0.0, 0.0));
        let actions: Vec<_> = s.event.iter().map(|e| e.action).collect();
        assert_eq!(
            actions,
            [
                EventAction::Limit,
                EventAction::Reservation,
                EventAction::Reservation
            ]
        );
        let amounts: Vec<_> = s.event.iter().map(EventSpec::cpus).collect();
        assert_eq!(amounts, [Some(1.25), Some(0.2), Some(1.0)]);
        assert_eq!(s.event[0].value, Some(SysctlValue::Float(1.25)));
        assert_eq!(s.event[2].value, Some(SysctlValue::Int(1)));
        assert_eq!(EventAction::Limit.to_string(), "limit");
        // Without the keys, nothing is reserved or limited.
        let g = Scenario::from_toml_str(GOOD).unwrap();
        assert!(g.vm.iter().all(|v| v.reservation == 0.0 && v.limit == 0.0));
        // Limits map to cpu.max under policy cgroup.
        let cg = ALLOC
            .replace("\"vmfair\"", "\"cgroup\"")
            .replace("reservation = 1.2\n", "")
            .replace("action = \"reservation\"", "action = \"limit\"");
        let s = Scenario::from_toml_str(&cg).unwrap();
        assert_eq!(s.vm[0].limit, 1.5);
        // A float sysctl value is written as Rust prints it.
        let f = GOOD.replace("= \"100\"", "= 0.5");
        let s = Scenario::from_toml_str(&f).unwrap();
        assert_eq!(s.sysctl["kernel.vmfair.default_weight"].to_string(), "0.5");
    }

    #[test]
    fn cpu_amounts_have_two_decimals() {
        assert_eq!(cpus_text(1.25), "1.25");
        assert_eq!(cpus_text(1.0), "1.00");
        assert_eq!(cpus_text(1.234), "1.23");
        assert_eq!(cpus_text(0.004), "0.00");
        assert_eq!(cpus_rounded(1.236), 1.24);
        assert_eq!(cpus_hundredths(1.2), 120);
        assert_eq!(cpus_hundredths(0.29), 29);
        assert_eq!(cpus_hundredths(-1.0), 0);
        assert_eq!(cpus_hundredths(f64::NAN), 0);
        assert_eq!(limit_cpu_max(0.5), "50000 100000");
        assert_eq!(limit_cpu_max(1.25), "125000 100000");
        assert_eq!(limit_cpu_max(0.01), "1000 100000");
        assert_eq!(limit_cpu_max(0.0), "max 100000");
        for v in ["50000 100000", "125000 100000", "1000 100000", "max 100000"] {
            assert!(valid_cpu_max(v), "{v}");
        }
        // What rounds to the same hundredths is no reservation above the limit.
        let close = "name = \"c\"\nduration_s = 1\npolicy = \"vmfair\"\n[[vm]]\nname = \"a\"\n\
                     vcpus = 2\nreservation = 1.504\nlimit = 1.5\n";
        assert!(Scenario::from_toml_str(close).is_ok());
        let above = close.replace("1.504", "1.506");
        let e = Scenario::from_toml_str(&above).unwrap_err();
        assert!(e.contains("reservation 1.51 is above limit 1.50"), "{e}");
    }

    #[test]
    fn bad_reservations_and_limits_rejected() {
        let cases = [
            (
                "reservation = 1.2",
                "reservation = -0.5",
                "reservation = -0.5",
            ),
            ("limit = 1.5", "limit = -1", "limit = -1"),
            ("limit = 1.5", "limit = 65", "0..=64"),
            (
                "limit = 1.5",
                "limit = 1.1",
                "reservation 1.20 is above limit 1.10",
            ),
            (
                "reservation = 1.2",
                "reservation = 2.01",
                "add up to 2.01 CPUs",
            ),
            (
                "count = 4",
                "count = 4\nreservation = 0.3",
                "add up to 2.40 CPUs",
            ),
            (
                "policy = \"vmfair\"",
                "policy = \"vmfair\"\n[sysctl]\n\"kernel.vmfair.reservation_headroom\" = \"1\"",
                "minus kernel.vmfair.reservation_headroom = 1.00",
            ),
            (
                "policy = \"vmfair\"",
                "policy = \"vmfair\"\n[sysctl]\n\"kernel.vmfair.reservation_headroom\" = \"x\"",
                "is not CPUs",
            ),
            (
                "\"vmfair\"",
                "\"cgroup\"",
                "`reservation` needs policy \"vmfair\"",
            ),
            ("\"vmfair\"", "\"stock\"", "`limit` needs policy"),
            (
                "limit = 1.5",
                "limit = 1.5\ncpu_max = \"max\"",
                "placed by hand",
            ),
            // Events: the state after each must hold too.
            (
                "value = 1.25",
                "value = 1.1",
                "event 1 (limit): vm \"r\": reservation 1.20",
            ),
            (
                "value = 0.2",
                "value = 0.3",
                "event 2 (reservation): the reservations",
            ),
            (
                "value = 1\n",
                "value = 1.3\n",
                "event 3 (reservation): vm \"r\"",
            ),
            ("value = 0.2", "value = \"lots\"", "value lots is not CPUs"),
            ("value = 0.2", "value = -0.2", "value = -0.2"),
            ("vm = \"c\"\n", "", "`vm` is required"),
            ("vm = \"c\"", "vm = \"zz\"", "no [[vm]] named"),
            ("value = 1.25\n", "", "`value` is required"),
        ];
        rejected(ALLOC, &cases);
        // Reservation events need policy vmfair, limit events vmfair or cgroup.
        let cg = ALLOC
            .replace("\"vmfair\"", "\"cgroup\"")
            .replace("reservation = 1.2\n", "");
        let e = Scenario::from_toml_str(&cg).unwrap_err();
        assert!(
            e.contains("event 2 (reservation): `reservation` needs"),
            "{e}"
        );
        let auto = cg.replace("\"cgroup\"", "\"autogroup\"");
        let e = Scenario::from_toml_str(&auto).unwrap_err();
        assert!(e.contains("event 1 (limit): `limit` needs"), "{e}");
    }

    #[test]
    fn repository_scenarios_are_valid() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../qemu-test/scenarios");
        let mut n = 0;
        for f in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = f.path();
            if path.extension().is_some_and(|x| x == "toml") {
                let text = std::fs::read_to_string(&path).unwrap();
                let s = Scenario::from_toml_str(&text)
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                assert_eq!(
                    path.file_stem().and_then(|n| n.to_str()),
                    Some(s.name.as_str()),
                    "{}: name",
                    path.display()
                );
                n += 1;
            }
        }
        assert!(n >= 10, "{n} scenario files in {}", dir.display());
        let load = |name: &str| {
            let text = std::fs::read_to_string(dir.join(format!("{name}.toml"))).unwrap();
            Scenario::from_toml_str(&text).unwrap()
        };
        let r = load("alloc-reserve");
        assert_eq!((r.guest_cpus, r.policy), (2, Policy::Vmfair));
        let reserved: Vec<f64> = r.vm.iter().map(|v| v.reservation).collect();
        assert!(reserved.iter().any(|&x| x > 0.0), "{reserved:?}");
        let l = load("alloc-limit");
        assert_eq!((l.guest_cpus, l.policy), (2, Policy::Vmfair));
        assert!(l.vm.iter().any(|v| v.limit > 0.0 && v.vcpus == 2));
    }
}
