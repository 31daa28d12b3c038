//! What becomes of one attempt at a scenario, the same for the sweep's runs
//! and the panels' runs: accepted (kept and printed), or rejected (named in
//! the report, its JSON kept as `<name>.invalid-<k>.json`, and run again
//! while it has reruns left; its figures are kept, as invalid, only after
//! its last attempt).

use super::figures::RunFigures;
use super::panels::PanelRun;
use super::report::print_run;
use crate::util::info;
use anyhow::Result;
use std::collections::BTreeMap;
use std::path::Path;

/// The problem of a result marked invalid that names none.
pub const UNNAMED: &str = "the result is marked invalid and names no problem";

/// The figures of one run, sweep or panel, as the attempts see them.
pub trait Outcome {
    /// Whether the figures can be used.
    fn accepted(&self) -> bool;
    /// The figures' own problems (those of the result, and what the
    /// figures lack).
    fn problems(&self) -> Vec<String>;
    /// Marks the figures as those of a rejected attempt.
    fn reject(&mut self, problems: &[String]);
    fn set_boot(&mut self, boot: usize);
    /// One console line.
    fn print(&self);
}

impl Outcome for RunFigures {
    fn accepted(&self) -> bool {
        self.valid && self.target_index.is_some()
    }
    fn problems(&self) -> Vec<String> {
        let mut p = self.problems.clone();
        if self.target_index.is_none() {
            p.push("no target index".into());
        }
        p
    }
    fn reject(&mut self, problems: &[String]) {
        self.valid = false;
        self.problems = problems.to_vec();
    }
    fn set_boot(&mut self, boot: usize) {
        self.boot = boot;
    }
    fn print(&self) {
        print_run(self);
    }
}

impl Outcome for PanelRun {
    fn accepted(&self) -> bool {
        self.valid
    }
    fn problems(&self) -> Vec<String> {
        self.problems.clone()
    }
    fn reject(&mut self, problems: &[String]) {
        self.valid = false;
        self.problems = problems.to_vec();
    }
    fn set_boot(&mut self, boot: usize) {
        self.boot = boot;
    }
    fn print(&self) {
        let vms: Vec<String> = self
            .vms
            .iter()
            .map(|v| format!("{} {:.3} (entitled {:.3})", v.label, v.cpu, v.entitled))
            .collect();
        println!("  {:<32} {}", self.scenario, vms.join("  "));
    }
}

/// The scenarios still to run and the invalid attempts so far.
pub struct Attempts<'a> {
    /// Where the results' JSON files are.
    pub out: &'a Path,
    pub max_reruns: u32,
    /// (scenario name, attempts so far)
    pub pending: Vec<(String, u32)>,
    /// ("name (attempt k)", its problems)
    pub invalid: Vec<(String, Vec<String>)>,
}

impl Attempts<'_> {
    /// Settles attempt `attempts + 1` of scenario `name`, run in boot
    /// `boot`: `figures` are those of its result (None without a result),
    /// `error` what the boot said went wrong with it. Accepted figures go
    /// into `runs`; a rejected attempt is recorded and queued again while
    /// it has reruns left, its figures kept only after its last attempt.
    pub fn settle<R: Outcome>(
        &mut self,
        runs: &mut BTreeMap<String, R>,
        name: &str,
        attempts: u32,
        boot: usize,
        figures: Option<Result<R>>,
        error: Option<String>,
    ) -> Result<()> {
        let (ok, kept, mut problems) = match (figures, error) {
            (Some(Ok(r)), None) if r.accepted() => (true, Some(r), vec![]),
            (Some(Ok(r)), err) => {
                let p = r.problems().into_iter().chain(err).collect();
                (false, Some(r), p)
            }
            (Some(Err(e)), err) => (
                false,
                None,
                std::iter::once(e.to_string()).chain(err).collect(),
            ),
            (None, err) => (false, None, vec![err.unwrap_or_else(|| "no result".into())]),
        };
        if !ok && problems.is_empty() {
            problems.push(UNNAMED.into());
        }
        if let Some(mut r) = kept {
            r.set_boot(boot);
            if ok {
                r.print();
            } else {
                // Kept after its last attempt: never as a valid run.
                r.reject(&problems);
            }
            runs.insert(name.to_string(), r);
        }
        if !ok && self.retry(name, attempts, problems)? {
            runs.remove(name);
        }
        Ok(())
    }

    /// Records an invalid attempt: keeps its JSON as
    /// `<name>.invalid-<k>.json` and queues the scenario again while it has
    /// reruns left; true if it did.
    fn retry(&mut self, name: &str, attempts: u32, problems: Vec<String>) -> Result<bool> {
        let tag = format!("{name} (attempt {})", attempts + 1);
        info(&format!("invalid: {tag}: {}", problems.join("; ")));
        self.invalid.push((tag, problems));
        let json = self.out.join(format!("{name}.json"));
        if json.exists() {
            let keep = self
                .out
                .join(format!("{name}.invalid-{}.json", attempts + 1));
            std::fs::rename(&json, &keep)?;
        }
        if attempts < self.max_reruns {
            self.pending.push((name.to_string(), attempts + 1));
            return Ok(true);
        }
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiment::figures::figures;
    use anyhow::anyhow;
    use std::path::PathBuf;
    use vmfair_scenario::ScenarioResult;

    /// An empty directory of its own under the system's temporary one.
    fn scratch(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("vmfair-attempts-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn sweep_result(index: Option<f64>, valid: bool, problems: &[&str]) -> ScenarioResult {
        serde_json::from_value(serde_json::json!({
            "scenario": "s", "policy": "stock", "kernel": "k", "guest_cpus": 2,
            "duration_s": 10.0, "valid": valid, "problems": problems,
            "groups": [{"kind": "vm", "name": "target", "instance": 0, "pid": 1, "vcpus": 1,
                        "cpu_s": 8.0, "work": 1, "index": index}]
        }))
        .unwrap()
    }

    fn panel(valid: bool, problems: &[&str]) -> PanelRun {
        PanelRun {
            scenario: "p".into(),
            panel: "w".into(),
            policy: "stock".into(),
            valid,
            problems: problems.iter().map(|p| p.to_string()).collect(),
            boot: 0,
            vms: Vec::new(),
        }
    }

    #[test]
    fn accepted_runs_are_kept() {
        let dir = scratch("ok");
        let mut a = Attempts {
            out: &dir,
            max_reruns: 1,
            pending: Vec::new(),
            invalid: Vec::new(),
        };
        let mut runs = BTreeMap::new();
        let f = figures(&sweep_result(Some(50.0), true, &[]));
        a.settle(&mut runs, "s", 0, 3, Some(f), None).unwrap();
        assert!(runs["s"].valid && runs["s"].boot == 3);
        let mut panels = BTreeMap::new();
        a.settle(&mut panels, "p", 0, 3, Some(Ok(panel(true, &[]))), None)
            .unwrap();
        assert!(panels["p"].valid && panels["p"].boot == 3);
        assert!(a.pending.is_empty() && a.invalid.is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn rejected_runs_are_run_again_then_kept_as_invalid() {
        let dir = scratch("again");
        let mut a = Attempts {
            out: &dir,
            max_reruns: 1,
            pending: Vec::new(),
            invalid: Vec::new(),
        };
        let mut runs = BTreeMap::new();
        // First attempt: no target index. Queued again, not kept, its JSON
        // kept aside.
        std::fs::write(dir.join("s.json"), "{}").unwrap();
        let f = figures(&sweep_result(None, true, &[]));
        a.settle(&mut runs, "s", 0, 1, Some(f), None).unwrap();
        assert_eq!(a.pending, [("s".to_string(), 1)]);
        assert!(runs.is_empty());
        assert_eq!(a.invalid[0].0, "s (attempt 1)");
        assert_eq!(a.invalid[0].1, ["no target index"]);
        assert!(dir.join("s.invalid-1.json").exists() && !dir.join("s.json").exists());
        // Last attempt: a valid result, but the runner failed. Kept, as
        // invalid, with the runner's error; not queued again.
        a.pending.clear();
        let f = figures(&sweep_result(Some(50.0), true, &[]));
        let err = Some("the runner exited with rc=Some(1)".to_string());
        a.settle(&mut runs, "s", 1, 2, Some(f), err).unwrap();
        assert!(a.pending.is_empty());
        assert!(!runs["s"].valid);
        assert_eq!(runs["s"].problems, ["the runner exited with rc=Some(1)"]);
        assert_eq!(runs["s"].boot, 2);
        assert_eq!(a.invalid.len(), 2);
        assert_eq!(a.invalid[1].0, "s (attempt 2)");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn every_rejection_names_a_problem() {
        let dir = scratch("named");
        let mut a = Attempts {
            out: &dir,
            max_reruns: 0,
            pending: Vec::new(),
            invalid: Vec::new(),
        };
        let mut panels: BTreeMap<String, PanelRun> = BTreeMap::new();
        // Marked invalid without a problem: rejected all the same.
        a.settle(&mut panels, "p", 0, 1, Some(Ok(panel(false, &[]))), None)
            .unwrap();
        assert!(!panels["p"].valid);
        assert_eq!(panels["p"].problems, [UNNAMED]);
        // Its own problems and the boot's error, in that order.
        a.settle(
            &mut panels,
            "q",
            0,
            1,
            Some(Ok(panel(false, &["vm a exited"]))),
            Some("rc=1".into()),
        )
        .unwrap();
        assert_eq!(panels["q"].problems, ["vm a exited", "rc=1"]);
        // No figures: nothing kept, the reason named.
        a.settle::<PanelRun>(&mut panels, "r", 0, 1, None, None)
            .unwrap();
        a.settle::<PanelRun>(
            &mut panels,
            "t",
            0,
            1,
            Some(Err(anyhow!("result: bad"))),
            None,
        )
        .unwrap();
        assert!(!panels.contains_key("r") && !panels.contains_key("t"));
        let named: Vec<&str> = a.invalid.iter().map(|i| i.1[0].as_str()).collect();
        assert_eq!(named, [UNNAMED, "vm a exited", "no result", "result: bad"]);
        // No reruns allowed: nothing queued.
        assert!(a.pending.is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
