// SPDX-License-Identifier: GPL-2.0
//! `vmfair-run`: the guest-side program of vmfair's tests. A static binary with three roles:
//!
//! ```text
//! vmfair-run scenario FILE.toml
//! vmfair-run vmm --name N --vcpus K --load busy|idle|bursty|bench|desktop [--io-threads M] [--nice X]
//!                [--mem-file PATH] [--tick-hz H --burst-us U] [--io-hz H --io-us U --refresh-hz H --refresh-us U]
//! vmfair-run host --name N --threads T [--nice X] [--mem-file PATH]
//! vmfair-run overhead BENCH [--seconds S] [--attempts N] [--key value…]
//! vmfair-run qemu
//! vmfair-run scale --vms N [--busy K] [--parallel P] [--warmup S] [--window S]
//! vmfair-run stress [--minutes M | --seconds S] [--seed X] [--fail-percent P]
//! vmfair-run peers --list FILE [--log-dir DIR]
//! ```
//!
//! `scenario` runs a scenario (Documentation/vmfair/contract.rst) and prints the result as one line of JSON on
//! stdout, progress on stderr. It exits 0 when the run itself worked, even if the result is
//! marked invalid, 1 when it could not run the scenario, 2 on a usage error.
//! `qemu` checks vmfair against Debian's QEMU with `-accel kvm` (`realvmm.rs`).
//! `scale` starts N VMs and measures vmfair with them (`scale.rs`).
//! `stress` runs concurrent workloads against vmfair on a debug kernel, then checks for
//! reports and leaks (`stress/`).
//! `peers` runs the kernel's own KVM and cgroup selftests from a list (`peers.rs`).
//! `vmm` and `host` are the processes the runner starts; they run until SIGTERM, SIGINT or
//! SIGUSR1 and exit 0, or 3 (vmm) when a vCPU saw a bad exit, 1 on a setup error.
//! `overhead` runs one benchmark of `make overhead` and prints its figures as one line of JSON
//! (`overhead.rs`).

/// Prints one line on stderr with a single write, so that lines of the runner and of its VMM
/// and host processes, which share the console, do not interleave.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let line = format!("vmfair-run: {}\n", format_args!($($arg)*));
        let _ = std::io::stderr().write_all(line.as_bytes());
    }};
}

mod bench;
mod desktop;
mod guest;
mod host;
mod hostile;
mod identity;
mod knobs;
mod kvm;
mod layout;
mod overhead;
mod peers;
mod procfs;
mod realvmm;
mod runner;
mod scale;
mod status;
mod stress;
mod sys;
mod topcheck;
mod vmm;
mod wakelat;

use std::collections::BTreeMap;
use std::str::FromStr;

const USAGE: &str = "usage:
  vmfair-run scenario FILE.toml
  vmfair-run knobs        (check vmfair's sysctls against a running VM)
  vmfair-run qemu         (check vmfair against real QEMUs with -accel kvm)
  vmfair-run vmm --name N --vcpus K --load busy|idle|bursty|bench|desktop [--io-threads M]
                 [--nice X] [--mem-file PATH] [--tick-hz H --burst-us U]
                 [--io-hz H --io-us U --refresh-hz H --refresh-us U]   (desktop)
  vmfair-run host --name N --threads T [--nice X] [--mem-file PATH]
  vmfair-run overhead pipe|fork|hackbench|wakeup|vmlife|forklat|kvmexit|rseq [--seconds S]
                 [--attempts N] [--vm 1] [--groups G --fds F --loops L] [--vms V --workers W]
                 [--path P] [--cgroup NAME] [--group-timeout-ms T]
  vmfair-run scale --vms N [--busy K] [--parallel P] [--warmup S] [--window S]
  vmfair-run stress [--minutes M | --seconds S] [--seed X] [--fail-percent P]
  vmfair-run peers --list FILE [--log-dir DIR]   (the kernel's own selftests)";

/// `--key value` (or `--key=value`) options of a subcommand.
pub struct Opts(BTreeMap<String, String>);

impl Opts {
    fn parse(args: &[String], allowed: &[&str]) -> Result<Opts, String> {
        let mut map = BTreeMap::new();
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let Some(key) = arg.strip_prefix("--") else {
                return Err(format!("unexpected argument {arg:?}"));
            };
            let (key, value) = match key.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => {
                    let v = it.next().ok_or_else(|| format!("--{key} needs a value"))?;
                    (key.to_string(), v.clone())
                }
            };
            if !allowed.contains(&key.as_str()) {
                return Err(format!("unknown option --{key}"));
            }
            map.insert(key, value);
        }
        Ok(Opts(map))
    }

    /// The value of `--key`, if given.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// The value of `--key` as a number, or `default`.
    pub fn num<T: FromStr>(&self, key: &str, default: T) -> Result<T, String> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| format!("--{key}: {v:?} is not a valid number")),
        }
    }
}

/// A subcommand's parsed options and its entry point.
type Subcommand = (Result<Opts, String>, fn(&Opts) -> Result<i32, String>);

fn usage_error(msg: &str) -> i32 {
    eprintln!("vmfair-run: {msg}\n{USAGE}");
    2
}

fn real_main() -> i32 {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((cmd, rest)) = args.split_first() else {
        return usage_error("missing subcommand");
    };
    let (opts, f): Subcommand = match cmd.as_str() {
        "scenario" => {
            return match rest {
                [file] => runner::main(file),
                _ => usage_error("scenario takes one FILE.toml"),
            }
        }
        "knobs" => {
            return match rest {
                [] => knobs::main(),
                _ => usage_error("knobs takes no arguments"),
            }
        }
        "qemu" => {
            return match rest {
                [] => realvmm::main(),
                _ => usage_error("qemu takes no arguments"),
            }
        }
        "overhead" => {
            return match rest.split_first() {
                Some((bench, opts)) if overhead::BENCHES.contains(&bench.as_str()) => {
                    match Opts::parse(opts, overhead::OPTIONS) {
                        Ok(o) => overhead::main(bench, &o).unwrap_or_else(|e| {
                            eprintln!("vmfair-run overhead: error: {e}");
                            1
                        }),
                        Err(e) => usage_error(&e),
                    }
                }
                _ => usage_error("overhead takes a benchmark name"),
            }
        }
        "vmm" => (Opts::parse(rest, vmm::OPTIONS), vmm::main),
        "host" => (Opts::parse(rest, host::OPTIONS), host::main),
        "scale" => (Opts::parse(rest, scale::OPTIONS), scale::main),
        "stress" => (Opts::parse(rest, stress::OPTIONS), stress::main),
        "peers" => (Opts::parse(rest, peers::OPTIONS), peers::main),
        "-h" | "--help" | "help" => {
            println!("{USAGE}");
            return 0;
        }
        other => return usage_error(&format!("unknown subcommand {other:?}")),
    };
    let opts = match opts {
        Ok(o) => o,
        Err(e) => return usage_error(&e),
    };
    match f(&opts) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("vmfair-run {cmd}: error: {e}");
            1
        }
    }
}

fn main() {
    std::process::exit(real_main());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn options() {
        let o = Opts::parse(&s(&["--name", "a", "--vcpus=2"]), &["name", "vcpus"]).unwrap();
        assert_eq!(o.get("name"), Some("a"));
        assert_eq!(o.num::<u32>("vcpus", 1).unwrap(), 2);
        assert_eq!(o.num::<u32>("nice", 7).unwrap(), 7);
        assert!(Opts::parse(&s(&["--bogus", "1"]), &["name"]).is_err());
        assert!(Opts::parse(&s(&["--name"]), &["name"]).is_err());
        assert!(Opts::parse(&s(&["name"]), &["name"]).is_err());
        let bad = Opts::parse(&s(&["--vcpus", "x"]), &["vcpus"]).unwrap();
        assert!(bad.num::<u32>("vcpus", 1).is_err());
    }
}
