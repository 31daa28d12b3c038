// SPDX-License-Identifier: GPL-2.0
//! The measurement window: health checks, the time series, when events are due, and the
//! vmfair-top run of `top = true`.

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
        if scn.top {
            self.top_start();
        }
        // The load monitor's counters, while the module stays loaded over the window.
        let monitor_at_start = std::fs::read_to_string(super::monitor::MONITOR)
            .ok()
            .filter(|_| !scn.reloads_module())
            .and_then(|t| super::monitor::parse(&t));
        loop {
            self.check();
            if sys::stop_requested() {
                self.top_stop();
                return Err("interrupted by a signal".into());
            }
            self.top_poll();
            let now = start.at.elapsed();
            while let Some(ev) = pending.next_if(|e| due(e.at_s, now)) {
                self.event(ev, start.at);
            }
            let now = start.at.elapsed();
            if now >= length {
                self.top_stop();
                let at_end = std::fs::read_to_string(super::monitor::MONITOR)
                    .ok()
                    .and_then(|t| super::monitor::parse(&t));
                if let (Some(a), Some(b)) = (monitor_at_start, at_end) {
                    let secs = start.at.elapsed().as_secs_f64();
                    self.checks.push(super::monitor::check(a, b, secs));
                }
                return Ok(());
            }
            if scn.sample_ms > 0 && now >= next_sample {
                self.sample(start, false);
                next_sample = next_sample_after(next_sample, now, period);
            }
            let wake = wake_at(
                now,
                length,
                (scn.sample_ms > 0).then_some(next_sample),
                pending.peek().map(|ev| Duration::from_secs_f64(ev.at_s)),
            );
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

/// Whether an event at `at_s` seconds into the window is due at `now`.
fn due(at_s: f64, now: Duration) -> bool {
    Duration::from_secs_f64(at_s) <= now
}

/// The next sample time after a sample taken at `now` (due at `next`): the first multiple of
/// `period` past `now`, so that samples missed while the runner was late are skipped rather
/// than taken in a burst. `period` must not be zero.
fn next_sample_after(mut next: Duration, now: Duration, period: Duration) -> Duration {
    while next <= now {
        next += period;
    }
    next
}

/// When the window loop wakes next (as time into the window): the next health check (a
/// [`TICK`] from `now`), the next sample or event if sooner, never past the window's `length`.
fn wake_at(
    now: Duration,
    length: Duration,
    next_sample: Option<Duration>,
    next_event: Option<Duration>,
) -> Duration {
    [Some(now + TICK), next_sample, next_event]
        .into_iter()
        .flatten()
        .fold(length, Duration::min)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn events_due_in_time() {
        assert!(due(0.0, ms(0)));
        assert!(due(1.5, ms(1500)));
        assert!(due(1.5, ms(2000)));
        assert!(!due(1.5, ms(1499)));
    }

    #[test]
    fn late_samples_are_skipped() {
        // On time: the next period.
        assert_eq!(next_sample_after(ms(100), ms(100), ms(100)), ms(200));
        assert_eq!(next_sample_after(ms(100), ms(130), ms(100)), ms(200));
        // 3.5 periods late: one sample now, the next one on the grid after now.
        assert_eq!(next_sample_after(ms(100), ms(450), ms(100)), ms(500));
        assert_eq!(next_sample_after(ms(500), ms(500), ms(250)), ms(750));
    }

    #[test]
    fn wakes_for_the_soonest_of_tick_sample_and_event() {
        let len = ms(10_000);
        // Nothing else pending: the next health check.
        assert_eq!(wake_at(ms(1000), len, None, None), ms(1000) + TICK);
        // A sample or an event before the tick.
        assert_eq!(wake_at(ms(1000), len, Some(ms(1010)), None), ms(1010));
        assert_eq!(
            wake_at(ms(1000), len, Some(ms(1100)), Some(ms(1005))),
            ms(1005)
        );
        // Later ones do not delay the tick.
        assert_eq!(
            wake_at(ms(1000), len, Some(ms(5000)), Some(ms(6000))),
            ms(1000) + TICK
        );
        // Never past the end of the window.
        assert_eq!(wake_at(ms(9990), len, Some(ms(10_050)), None), len);
    }
}
