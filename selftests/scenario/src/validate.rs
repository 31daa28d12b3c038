// SPDX-License-Identifier: GPL-2.0
//! The checks of a scenario file: ranges, names and consistency (see the crate
//! documentation).

use crate::scenario::{valid_cpu_max, EventAction, Scenario, DESKTOP_THREADS};
use crate::values::Load;
use std::fmt;

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
                EventAction::Weight => (true, false, true),
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
            if ev.action == EventAction::Weight {
                if let Some(vm) = &ev.vm {
                    if !self.vm.iter().any(|v| &v.name == vm) {
                        errs.push(format!("{what}: no [[vm]] named {vm:?}"));
                    }
                }
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
        if errs.is_empty() {
            Ok(())
        } else {
            Err(format!("scenario {:?}: {}", self.name, errs.join("; ")))
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::*;

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
            ("\"50000 100000\"", "\"50 100000\"", "cpu_max"),
            ("\"50000 100000\"", "\"lots\"", "cpu_max"),
            ("key = \"kernel.vmfair.enabled\"", "key = \"a/b\"", "dotted"),
        ];
        for (from, to, want) in cases {
            assert!(EVENTS.contains(from), "{from}");
            let text = EVENTS.replacen(from, to, 1);
            let e = Scenario::from_toml_str(&text).unwrap_err();
            assert!(e.contains(want), "{from} -> {to}: {e}");
        }
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
}
