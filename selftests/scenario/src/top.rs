// SPDX-License-Identifier: GPL-2.0
//! `top = true`: the runner checks `vmfair-top` against its own figures (see the crate
//! documentation). The constants of that run, and its validation.

use crate::scenario::{EventAction, Scenario};
use crate::values::Policy;

/// Iterations of the `vmfair-top` run (`-n`).
pub const TOP_ITERATIONS: u32 = 3;
/// Seconds between its samples (`-d`).
pub const TOP_INTERVAL_S: f64 = 2.0;
/// The shortest window that holds the run: its intervals and 2 s to start and stop it.
pub const TOP_MIN_DURATION_S: f64 = TOP_ITERATIONS as f64 * TOP_INTERVAL_S + 2.0;

impl Scenario {
    /// Whether a `modprobe` or `rmmod` event loads or unloads the module inside the window.
    pub fn reloads_module(&self) -> bool {
        self.event
            .iter()
            .any(|e| matches!(e.action, EventAction::Modprobe | EventAction::Rmmod))
    }

    /// The checks of `top`: vmfair-top needs the module loaded for the whole window and VMs
    /// to show, and the window must hold its run.
    pub(crate) fn check_top(&self, errs: &mut Vec<String>) {
        if !self.top {
            return;
        }
        if self.policy != Policy::Vmfair {
            errs.push(format!(
                "`top` needs policy \"vmfair\" (vmfair-top reads the module), not \"{}\"",
                self.policy
            ));
        }
        if self.vm.is_empty() {
            errs.push("`top` needs at least one [[vm]]".into());
        }
        if self.duration_s < TOP_MIN_DURATION_S {
            errs.push(format!(
                "`top` needs duration_s >= {TOP_MIN_DURATION_S} ({TOP_ITERATIONS} intervals of \
                 {TOP_INTERVAL_S} s and 2 s to start and stop), not {}",
                self.duration_s
            ));
        }
        if self.reloads_module() {
            errs.push(
                "`top` does not go with `modprobe` or `rmmod` events (the module must stay \
                 loaded over the window)"
                    .into(),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::*;

    const TOP: &str = "name = \"t\"\nduration_s = 8\npolicy = \"vmfair\"\ntop = true\n\
                       [[vm]]\nname = \"a\"\n";

    #[test]
    fn top_defaults_off_and_parses() {
        let s = Scenario::from_toml_str(&TOP.replace("top = true\n", "")).unwrap();
        assert!(!s.top);
        let s = Scenario::from_toml_str(TOP).unwrap();
        assert!(s.top);
        assert_eq!(TOP_MIN_DURATION_S, 8.0);
    }

    #[test]
    fn top_rejected_where_it_cannot_run() {
        for (from, to, needle) in [
            ("\"vmfair\"", "\"cgroup\"", "`top` needs policy \"vmfair\""),
            ("\"vmfair\"", "\"stock\"", "not \"stock\""),
            (
                "duration_s = 8",
                "duration_s = 7.5",
                "needs duration_s >= 8",
            ),
            ("[[vm]]\nname = \"a\"\n", "", "at least one [[vm]]"),
            (
                "[[vm]]",
                "[[event]]\nat_s = 1\naction = \"rmmod\"\n[[vm]]",
                "does not go with",
            ),
            (
                "[[vm]]",
                "[[event]]\nat_s = 1\naction = \"modprobe\"\n[[vm]]",
                "does not go with",
            ),
        ] {
            let text = TOP.replace(from, to);
            assert_ne!(text, TOP, "{from}");
            let e = Scenario::from_toml_str(&text).unwrap_err();
            assert!(e.contains(needle), "{from} -> {to}: {e}");
            // Without `top` the same scenario is fine.
            Scenario::from_toml_str(&text.replace("top = true\n", ""))
                .unwrap_or_else(|e| panic!("{from} -> {to} without top: {e}"));
        }
        // Other events are fine with it.
        let ev = TOP.replace(
            "[[vm]]",
            "[[event]]\nat_s = 1\naction = \"weight\"\nvm = \"a\"\nvalue = 200\n[[vm]]",
        );
        assert!(Scenario::from_toml_str(&ev).unwrap().top);
    }
}
