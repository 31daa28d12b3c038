// SPDX-License-Identifier: GPL-2.0
//! The measurement window: health checks, the time series, and when events are due.

use super::{Edge, Run, TICK};
use crate::procfs;
use crate::sys;
use std::time::{Duration, Instant};
use vmfair_scenario::{Sample, Scenario};

impl Run {
    /// The measurement window: health checks every TICK, samples every `sample_ms`, and the
    /// `[[event]]` actions when they are due.
    pub(super) fn window(&mut self, scn: &Scenario, start: &Edge) -> Result<(), String> {
        let length = Duration::from_secs_f64(scn.duration_s);
        let period = Duration::from_millis(u64::from(scn.sample_ms));
        self.series = vec![Vec::new(); self.members.len()];
        if scn.sample_ms > 0 {
            self.sample(start, true);
        }
        let mut next_sample = period;
        let mut pending = scn.event.iter().peekable();
        loop {
            self.check();
            if sys::stop_requested() {
                return Err("interrupted by a signal".into());
            }
            let now = start.at.elapsed();
            while let Some(ev) = pending.next_if(|e| Duration::from_secs_f64(e.at_s) <= now) {
                self.event(ev, start.at);
            }
            let now = start.at.elapsed();
            if now >= length {
                return Ok(());
            }
            if scn.sample_ms > 0 && now >= next_sample {
                self.sample(start, false);
                while next_sample <= now {
                    next_sample += period;
                }
            }
            let mut wake = length.min(now + TICK);
            if scn.sample_ms > 0 {
                wake = wake.min(next_sample);
            }
            if let Some(ev) = pending.peek() {
                wake = wake.min(Duration::from_secs_f64(ev.at_s));
            }
            std::thread::sleep(wake.saturating_sub(now));
        }
    }

    /// Appends one point to every member's time series.
    /// Each member's point is dated by when its tasks were read (`zero`: the window start,
    /// where every figure is 0 by definition).
    pub(super) fn sample(&mut self, start: &Edge, zero: bool) {
        for (k, m) in self.members.iter().enumerate() {
            if zero {
                self.series[k].push(Sample {
                    t_s: 0.0,
                    cpu_s: 0.0,
                    work: 0,
                });
                continue;
            }
            let pid = m.pid;
            let t0 = Instant::now();
            let now = procfs::tasks(Some(pid));
            let t_s = (t0 + t0.elapsed() / 2)
                .saturating_duration_since(start.at)
                .as_secs_f64();
            let (run, _) = procfs::delta(
                &start
                    .tasks
                    .iter()
                    .filter(|(_, t)| t.pid == pid)
                    .map(|(tid, t)| (*tid, *t))
                    .collect(),
                &now,
                |_, _| true,
            );
            let work: u64 = m
                .work()
                .iter()
                .zip(&start.work[k])
                .map(|(e, s)| e.saturating_sub(*s))
                .sum();
            self.series[k].push(Sample {
                t_s,
                cpu_s: run as f64 * 1e-9,
                work,
            });
        }
    }
}
