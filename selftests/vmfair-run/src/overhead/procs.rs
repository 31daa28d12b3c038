// SPDX-License-Identifier: GPL-2.0
//! The benchmarks of ordinary processes: `pipe` (optionally in a VM group), `fork`,
//! `hackbench`.

use super::*;

/// `pipe`: round trips of one byte between two threads over two pipes.
pub(super) fn pipe(env: &Env) -> Result<Run, String> {
    let mut run = Run::default();
    let in_vm = env.opts.num("vm", 0u32)? != 0;
    // `--cgroup NAME`: the process (both threads) in a cpu cgroup of its own, one level below
    // the root like a VM group; `--cgroup-mode M` its share computation, for this run only.
    let cgroup = match env.opts.get("cgroup") {
        Some(n) => Some(OwnCgroup::enter(n)?),
        None => None,
    };
    let _mode = match env.opts.get("cgroup-mode") {
        Some(m) => Some(super::vms::SchedMode::set(m)?),
        None => None,
    };
    let _vm = if in_vm {
        let vm = tiny_vm(&HLT_LOOP, env)?;
        expect_hlt(vm.vcpu.run())?;
        if env.loaded {
            let ok = wait_grouped(std::process::id(), env.group_timeout).is_some();
            run.grouped("this process", ok, env.group_timeout);
        }
        Some(vm)
    } else {
        None
    };
    let (ping_r, ping_w) = std::io::pipe().map_err(err("pipe"))?;
    let (pong_r, pong_w) = std::io::pipe().map_err(err("pipe"))?;
    let ponger = std::thread::Builder::new()
        .name("pong".into())
        .spawn(move || {
            let mut b = [0u8; 1];
            while matches!((&ping_r).read(&mut b), Ok(1)) {
                if (&pong_w).write_all(&b).is_err() {
                    break;
                }
            }
        })
        .map_err(err("spawn"))?;
    let round_trip = || -> Result<(), String> {
        let mut b = [1u8; 1];
        (&ping_w).write_all(&b).map_err(err("pipe write"))?;
        (&pong_r).read_exact(&mut b).map_err(err("pipe read"))
    };
    for _ in 0..100 {
        round_trip()?;
    }
    if let Some(cg) = &cgroup {
        run.groups = thread_groups(std::process::id())?;
        run.problems
            .extend(placement_problem(&run.groups, &format!("/{}", cg.0)));
    } else if in_vm {
        // Both threads, the one created after the VM included: in the process's VM group
        // under vmfair, in the root group otherwise.
        run.groups = thread_groups(std::process::id())?;
        let want = if env.loaded { "vm" } else { "/" };
        run.problems.extend(placement_problem(&run.groups, want));
    }
    let mut samples = Vec::new();
    let end = env.deadline();
    while Instant::now() < end {
        let t0 = Instant::now();
        round_trip()?;
        samples.push(t0.elapsed().as_nanos() as f64);
    }
    drop(ping_w);
    let _ = ponger.join();
    run.samples = samples.len() as u64;
    let s = sorted(samples);
    if let Some(v) = percentile(&s, 50.0) {
        run.push("rtt_p50", "ns", Kind::Cost, v);
    }
    if let Some(v) = percentile(&s, 99.0) {
        run.push("rtt_p99", "ns", Kind::Info, v);
    }
    Ok(run)
}

/// This process in `/sys/fs/cgroup/NAME` (cpu controller on) until dropped, then back in the
/// root cgroup and the cgroup removed.
struct OwnCgroup(String);

impl OwnCgroup {
    fn enter(name: &str) -> Result<OwnCgroup, String> {
        crate::runner::cpu_controller()?;
        let dir = format!("/sys/fs/cgroup/{name}");
        let _ = std::fs::remove_dir(&dir);
        std::fs::create_dir(&dir).map_err(err(&dir))?;
        let procs = format!("{dir}/cgroup.procs");
        std::fs::write(&procs, std::process::id().to_string()).map_err(err(&procs))?;
        Ok(OwnCgroup(name.to_string()))
    }
}

impl Drop for OwnCgroup {
    fn drop(&mut self) {
        let _ = std::fs::write(
            "/sys/fs/cgroup/cgroup.procs",
            std::process::id().to_string(),
        );
        let _ = std::fs::remove_dir(format!("/sys/fs/cgroup/{}", self.0));
    }
}

/// One fork + `_exit` + waitpid; its duration in ns.
pub(super) fn fork_once() -> Result<f64, String> {
    let t0 = Instant::now();
    let mut p = sys::fork_call(|| 0).map_err(err("fork"))?;
    match p.wait().map_err(err("waitpid"))? {
        ProcExit::Code(0) => Ok(t0.elapsed().as_nanos() as f64),
        st => Err(format!("forked child: {st}")),
    }
}

/// `fork`: fork + `_exit` + waitpid of an ordinary process.
pub(super) fn fork(env: &Env) -> Result<Run, String> {
    let mut run = Run::default();
    let (mut samples, t0, end) = (Vec::new(), Instant::now(), env.deadline());
    while Instant::now() < end {
        samples.push(fork_once()?);
    }
    let total = t0.elapsed().as_secs_f64();
    run.samples = samples.len() as u64;
    if !samples.is_empty() {
        run.push(
            "us_per_op",
            "us",
            Kind::Cost,
            total * 1e6 / samples.len() as f64,
        );
    }
    if let Some(v) = percentile(&sorted(samples), 50.0) {
        run.push("fork_p50", "us", Kind::Info, v / 1e3);
    }
    Ok(run)
}

/// Bytes per hackbench message.
const HB_MSG: usize = 100;

/// `hackbench`: `groups` × (`fds` senders → `fds` receivers) over pipes, processes.
pub(super) fn hackbench(env: &Env) -> Result<Run, String> {
    let groups: usize = env.opts.num("groups", 2)?;
    let fds: usize = env.opts.num("fds", 10)?;
    let loops: usize = env.opts.num("loops", 50)?;
    if groups == 0 || fds == 0 || loops == 0 || groups * fds > 100 {
        return Err("--groups, --fds and --loops must be positive, groups × fds ≤ 100".into());
    }
    let (ready_r, ready_w) = std::io::pipe().map_err(err("pipe"))?;
    let (wake_r, wake_w) = std::io::pipe().map_err(err("pipe"))?;
    let mut procs = Vec::new();
    // Start all children before any of them begins: each says "ready", then waits for a byte.
    let start = |procs: &mut Vec<Proc>, body: &dyn Fn() -> i32| -> Result<(), String> {
        let child = sys::fork_call(|| {
            let mut b = [0u8; 1];
            if (&ready_w).write_all(&b).is_err() || (&wake_r).read_exact(&mut b).is_err() {
                return 1;
            }
            body()
        })
        .map_err(err("fork"))?;
        procs.push(child);
        Ok(())
    };
    for _ in 0..groups {
        let pipes: Vec<_> = (0..fds)
            .map(|_| std::io::pipe())
            .collect::<Result<_, _>>()
            .map_err(err("pipe"))?;
        for (r, _) in &pipes {
            start(&mut procs, &|| {
                let (mut buf, mut left) = ([0u8; HB_MSG], fds * loops * HB_MSG);
                while left > 0 {
                    match (&*r).read(&mut buf[..left.min(HB_MSG)]) {
                        Ok(0) | Err(_) => return 1,
                        Ok(n) => left -= n,
                    }
                }
                0
            })?;
        }
        for _ in 0..fds {
            start(&mut procs, &|| {
                let msg = [0x5au8; HB_MSG];
                for _ in 0..loops {
                    for (_, w) in &pipes {
                        if (&*w).write_all(&msg).is_err() {
                            return 1;
                        }
                    }
                }
                0
            })?;
        }
    }
    let mut b = vec![0u8; procs.len()];
    (&ready_r).read_exact(&mut b).map_err(err("ready pipe"))?;
    let t0 = Instant::now();
    (&wake_w).write_all(&b).map_err(err("wake-up pipe"))?;
    let mut run = Run::default();
    for p in &mut procs {
        match p.wait().map_err(err("waitpid"))? {
            ProcExit::Code(0) => {}
            st => run
                .problems
                .push(format!("hackbench child {}: {st}", p.id())),
        }
    }
    run.samples = (groups * fds * fds * loops) as u64;
    run.push("seconds", "s", Kind::Cost, t0.elapsed().as_secs_f64());
    Ok(run)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Opts;

    #[test]
    fn fork_and_hackbench_run_here() {
        // The pure-process benchmarks also run on the build host; a tiny hackbench checks
        // that every message arrives (a receiver short of bytes would never exit).
        let opts = Opts::parse(
            &["--groups", "1", "--fds", "3", "--loops", "5"].map(String::from),
            OPTIONS,
        )
        .unwrap();
        let env = Env {
            opts: &opts,
            loaded: false,
            seconds: 0.05,
            group_timeout: Duration::from_millis(10),
            epoch: Instant::now(),
        };
        let run = hackbench(&env).unwrap();
        assert!(run.problems.is_empty(), "{:?}", run.problems);
        assert_eq!(run.samples, 45);
        let run = fork(&env).unwrap();
        assert!(run.samples > 0 && run.metrics[0].value > 0.0);
        let run = pipe(&env).unwrap();
        assert!(run.samples > 0 && run.metrics[0].name == "rtt_p50");
    }
}
