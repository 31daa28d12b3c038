// SPDX-License-Identifier: GPL-2.0
//! The load monitor over the window: `kernel.vmfair.monitor` read at its start and end, and a
//! check that the monitor made its passes, with what they cost per VM.

use vmfair_scenario::Check;

/// The module's monitor file.
pub(crate) const MONITOR: &str = "/proc/sys/kernel/vmfair/monitor";

/// The counters of `kernel.vmfair.monitor`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Monitor {
    pub(crate) period_ms: u64,
    pub(crate) passes: u64,
    pub(crate) readings: u64,
    pub(crate) busy_ns: u64,
    pub(crate) share_updates: u64,
}

/// The counters in `text` (`key value` lines); None if one is missing or malformed.
pub(crate) fn parse(text: &str) -> Option<Monitor> {
    let get = |key: &str| {
        text.lines()
            .filter_map(|l| l.split_once(' '))
            .find(|(k, _)| *k == key)
            .and_then(|(_, v)| v.trim().parse::<u64>().ok())
    };
    Some(Monitor {
        period_ms: get("period_ms")?,
        passes: get("passes")?,
        readings: get("readings")?,
        busy_ns: get("busy_ns")?,
        share_updates: get("share_updates")?,
    })
}

/// The check over a window of `secs` seconds from `a` to `b`: at least half the passes its
/// period allows and no more than 10 % over them, each pass reading at least one VM; the
/// detail gives the cost per VM and pass and per VM and second.
pub(super) fn check(a: Monitor, b: Monitor, secs: f64) -> Check {
    let passes = b.passes.saturating_sub(a.passes);
    let readings = b.readings.saturating_sub(a.readings);
    let busy = b.busy_ns.saturating_sub(a.busy_ns);
    let updates = b.share_updates.saturating_sub(a.share_updates);
    let expect = if b.period_ms == 0 {
        0.0
    } else {
        secs * 1000.0 / b.period_ms as f64
    };
    let ok = expect > 0.0
        && passes as f64 >= 0.5 * expect
        && passes as f64 <= 1.1 * expect + 1.0
        && readings >= passes;
    let per_reading = if readings == 0 {
        0.0
    } else {
        busy as f64 / readings as f64
    };
    let per_vm_s = if secs > 0.0 && readings > 0 && passes > 0 {
        per_reading * passes as f64 / secs
    } else {
        0.0
    };
    Check {
        name: "load monitor passes".into(),
        ok,
        detail: format!(
            "{passes} passes in {secs:.1} s (period {} ms, {expect:.0} expected), {readings} VM \
             readings, {:.1} us per VM and pass, {:.1} us per VM and second, {updates} share \
             updates",
            b.period_ms,
            per_reading / 1000.0,
            per_vm_s / 1000.0
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "period_ms 100\npasses 40\nreadings 120\nbusy_ns 600000\nlast_ns 5000\n\
                        share_updates 7\n";

    #[test]
    fn parses_the_file() {
        let m = parse(TEXT).unwrap();
        assert_eq!(
            (
                m.period_ms,
                m.passes,
                m.readings,
                m.busy_ns,
                m.share_updates
            ),
            (100, 40, 120, 600_000, 7)
        );
        assert!(parse("period_ms 100\npasses 4\n").is_none());
        assert!(parse(&TEXT.replace("passes 40", "passes x")).is_none());
    }

    #[test]
    fn judges_the_passes_and_gives_the_cost() {
        let a = parse(TEXT).unwrap();
        let mut b = a;
        // 20 s at 100 ms: 200 passes of 3 VMs, 5 us per reading.
        b.passes += 200;
        b.readings += 600;
        b.busy_ns += 3_000_000;
        b.share_updates += 3;
        let c = check(a, b, 20.0);
        assert!(c.ok, "{c:?}");
        assert!(c.detail.contains("5.0 us per VM and pass"), "{c:?}");
        assert!(c.detail.contains("50.0 us per VM and second"), "{c:?}");
        assert!(c.detail.contains("3 share updates"), "{c:?}");
        // Too few passes (the thread stalled), too many, or none reading a VM.
        let mut slow = b;
        slow.passes = a.passes + 99;
        assert!(!check(a, slow, 20.0).ok);
        let mut fast = b;
        fast.passes = a.passes + 222;
        assert!(!check(a, fast, 20.0).ok);
        let mut blind = b;
        blind.readings = a.readings + 10;
        assert!(!check(a, blind, 20.0).ok);
        let mut no_period = b;
        no_period.period_ms = 0;
        assert!(!check(a, no_period, 20.0).ok);
    }
}
