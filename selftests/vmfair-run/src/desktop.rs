// SPDX-License-Identifier: GPL-2.0
//! `load = "desktop"`: a VMM like the study's dummies, desktop VMs whose VMM had several
//! threads doing a little work. The vCPU halts between PIT ticks as an idle guest does
//! (`tick_hz`, `burst_us`), and two more threads of the VMM wake periodically: an I/O thread
//! (`io_hz`, `io_us`) and a display-refresh thread (`refresh_hz`, about 30 Hz, `refresh_us`).
//! Each wake-up spins for its work time, counting iterations into the thread's counter of the
//! status area (the slots after the busy I/O threads), then sleeps until its next period.

use crate::sys;
use crate::Opts;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use vmfair_scenario::{DESKTOP_IO, DESKTOP_REFRESH};

/// Options of `vmfair-run vmm` that only `--load desktop` reads.
pub const OPTIONS: &[&str] = &["io-hz", "io-us", "refresh-hz", "refresh-us"];

/// Threads a desktop VMM adds beside its vCPUs (and busy I/O threads).
pub const THREADS: usize = vmfair_scenario::DESKTOP_THREADS as usize;

/// One periodic thread: wakes `hz` times a second, works `us` microseconds each time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Periodic {
    pub name: &'static str,
    pub hz: u32,
    pub us: u32,
}

impl Periodic {
    /// The period between wake-ups.
    pub fn period(&self) -> Duration {
        Duration::from_nanos(1_000_000_000 / u64::from(self.hz))
    }

    /// The work of one wake-up.
    pub fn work(&self) -> Duration {
        Duration::from_micros(u64::from(self.us))
    }
}

/// The desktop threads of a VMM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Desktop {
    pub io: Periodic,
    pub refresh: Periodic,
}

/// Defaults: the scenario crate's, those of `io_hz`, `io_us`, `refresh_hz`, `refresh_us`.
pub const DEFAULT: Desktop = Desktop {
    io: Periodic {
        name: "io",
        hz: DESKTOP_IO.hz,
        us: DESKTOP_IO.us,
    },
    refresh: Periodic {
        name: "refresh",
        hz: DESKTOP_REFRESH.hz,
        us: DESKTOP_REFRESH.us,
    },
};

impl Desktop {
    /// The desktop threads from `--io-hz`, `--io-us`, `--refresh-hz`, `--refresh-us`; each
    /// rate 1..=1000 Hz, each work time shorter than its period.
    pub fn from_opts(opts: &Opts) -> Result<Desktop, String> {
        let one = |name: &'static str, d: Periodic| -> Result<Periodic, String> {
            let p = Periodic {
                name,
                hz: opts.num(&format!("{name}-hz"), d.hz)?,
                us: opts.num(&format!("{name}-us"), d.us)?,
            };
            if !(1..=1000).contains(&p.hz) || u64::from(p.hz) * u64::from(p.us) >= 1_000_000 {
                return Err(format!(
                    "--{name}-hz must be 1..=1000 and --{name}-us shorter than its period"
                ));
            }
            Ok(p)
        };
        Ok(Desktop {
            io: one("io", DEFAULT.io)?,
            refresh: one("refresh", DEFAULT.refresh)?,
        })
    }

    /// The threads in the order of their status slots.
    pub fn threads(&self) -> [Periodic; THREADS] {
        [self.io, self.refresh]
    }
}

/// The next wake-up after one at `due` that ended at `now`: one period later, or, if the
/// thread fell behind by more than a period (it was not run), one period from `now`, so that
/// a late thread does not catch up with a burst of work.
pub fn next_due(due: Instant, now: Instant, period: Duration) -> Instant {
    let next = due + period;
    if next + period < now {
        now + period
    } else {
        next
    }
}

/// The loop of one periodic thread, until a stop is requested.
pub fn run(p: Periodic, counter: &AtomicU64) {
    let (period, work) = (p.period(), p.work());
    let mut n = counter.load(Ordering::Relaxed);
    let mut due = Instant::now() + period;
    while !sys::stop_requested() {
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
            continue;
        }
        let t0 = Instant::now();
        while t0.elapsed() < work {
            for _ in 0..256 {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        counter.store(n, Ordering::Relaxed);
        due = next_due(due, Instant::now(), period);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(args: &[&str]) -> Result<Opts, String> {
        let a: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        Opts::parse(&a, crate::vmm::OPTIONS)
    }

    #[test]
    fn vmm_takes_the_desktop_options() {
        for o in OPTIONS {
            assert!(crate::vmm::OPTIONS.contains(o), "vmm does not take --{o}");
        }
    }

    #[test]
    fn defaults_and_options() {
        let d = Desktop::from_opts(&opts(&[]).unwrap()).unwrap();
        assert_eq!(d, DEFAULT);
        // What a scenario without the keys asks for is what the VMM runs.
        let scn = vmfair_scenario::Scenario::from_toml_str(
            "name = \"t\"\nduration_s = 1\n[[vm]]\nname = \"d\"\nload = \"desktop\"\n",
        )
        .unwrap();
        let vm = &scn.vm[0];
        assert_eq!((vm.io_hz, vm.io_us), (d.io.hz, d.io.us));
        assert_eq!((vm.refresh_hz, vm.refresh_us), (d.refresh.hz, d.refresh.us));
        let d = Desktop::from_opts(
            &opts(&["--io-hz", "50", "--io-us", "100", "--refresh-hz=60"]).unwrap(),
        )
        .unwrap();
        assert_eq!((d.io.hz, d.io.us), (50, 100));
        assert_eq!((d.refresh.hz, d.refresh.us), (60, DEFAULT.refresh.us));
        assert_eq!(d.threads().map(|p| p.name), ["io", "refresh"]);
        assert_eq!(d.io.work(), Duration::from_micros(100));
        assert_eq!(d.refresh.period(), Duration::from_nanos(16_666_666));
    }

    #[test]
    fn rejects_bad_rates() {
        for bad in [
            &["--io-hz", "0"][..],
            &["--refresh-hz", "1001"],
            &["--refresh-hz", "30", "--refresh-us", "33334"],
            &["--io-us", "x"],
        ] {
            assert!(
                Desktop::from_opts(&opts(bad).unwrap()).is_err(),
                "{bad:?} accepted"
            );
        }
        // Just under one period is allowed.
        assert!(Desktop::from_opts(&opts(&["--io-hz", "10", "--io-us", "99999"]).unwrap()).is_ok());
    }

    #[test]
    fn late_threads_do_not_catch_up() {
        let t = Instant::now();
        let p = Duration::from_millis(33);
        assert_eq!(next_due(t, t + Duration::from_millis(1), p), t + p);
        // Within one period late: keep the schedule.
        assert_eq!(next_due(t, t + Duration::from_millis(50), p), t + p);
        // Several periods late: restart from now.
        let now = t + Duration::from_millis(200);
        assert_eq!(next_due(t, now, p), now + p);
    }
}
