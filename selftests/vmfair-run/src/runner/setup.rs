// SPDX-License-Identifier: GPL-2.0
//! The policy, sysctls and cgroups a scenario asks for, and the module tools.

use super::{log, AUTOGROUP_SYSCTL, CGROUP_ROOT};
use crate::procfs;
use crate::sys::{self, ChildSetup};
use std::fs;
use std::path::Path;
use vmfair_scenario::{Policy, Scenario};

/// The thread ids of process `pid`.
pub(super) fn thread_ids(pid: u32) -> Vec<u32> {
    procfs::tasks(Some(pid)).into_keys().collect()
}

pub(super) fn write_file(path: &str, value: &str) -> Result<(), String> {
    fs::write(path, value).map_err(|e| format!("write {value:?} to {path}: {e}"))
}

/// `modprobe vmfair`, with modprobe found on PATH.
pub(crate) fn modprobe_argv() -> Vec<String> {
    let path = std::env::var("PATH").unwrap_or_else(|_| "/sbin:/bin:/usr/sbin:/usr/bin".into());
    vec![
        find_tool(&path, "modprobe", |p| Path::new(p).exists()),
        "vmfair".into(),
    ]
}

/// The first `DIR/name` for the directories of `path` (a `PATH` value) that `exists`, else
/// `/sbin/name`.
fn find_tool(path: &str, name: &str, exists: impl Fn(&str) -> bool) -> String {
    path.split(':')
        .map(|d| format!("{d}/{name}"))
        .find(|p| exists(p))
        .unwrap_or_else(|| format!("/sbin/{name}"))
}

/// The file of sysctl `key` (`kernel.sched_autogroup_enabled`).
pub(super) fn sysctl_path(key: &str) -> String {
    format!("/proc/sys/{}", key.replace('.', "/"))
}

/// Whether a `cgroup.controllers` text lists the cpu controller.
fn has_cpu(controllers: &str) -> bool {
    controllers.split_whitespace().any(|c| c == "cpu")
}

/// `rmmod vmfair`, with rmmod found on PATH.
pub(crate) fn rmmod_argv() -> Vec<String> {
    let mut argv = modprobe_argv();
    argv[0] = argv[0].replace("modprobe", "rmmod");
    argv
}

/// Runs a tool to completion; Err names it and how it ended.
pub(crate) fn run_tool(argv: &[String]) -> Result<(), String> {
    let st = sys::spawn(argv, ChildSetup::default())
        .and_then(|mut p| p.wait())
        .map_err(|e| format!("cannot run {}: {e}", argv.join(" ")))?;
    if st.success() {
        Ok(())
    } else {
        Err(format!("{} failed: {st}", argv.join(" ")))
    }
}

/// Mounts cgroup v2 if needed and enables the cpu controller for the root's children.
pub(crate) fn cpu_controller() -> Result<(), String> {
    let controllers = format!("{CGROUP_ROOT}/cgroup.controllers");
    if !Path::new(&controllers).exists() {
        sys::mount("cgroup2", CGROUP_ROOT)
            .map_err(|e| format!("mount cgroup2 on {CGROUP_ROOT}: {e}"))?;
    }
    let have = fs::read_to_string(&controllers).map_err(|e| format!("{controllers}: {e}"))?;
    if !has_cpu(&have) {
        return Err(format!(
            "cgroup v2 has no cpu controller (controllers: {:?})",
            have.trim()
        ));
    }
    write_file(&format!("{CGROUP_ROOT}/cgroup.subtree_control"), "+cpu")
}

pub(super) fn setup_policy(scn: &Scenario) -> Result<(), String> {
    let autogroup = Path::new(AUTOGROUP_SYSCTL).exists();
    match scn.policy {
        Policy::Autogroup => {
            if !autogroup {
                return Err(format!(
                    "policy autogroup needs {AUTOGROUP_SYSCTL} (CONFIG_SCHED_AUTOGROUP)"
                ));
            }
            write_file(AUTOGROUP_SYSCTL, "1")?;
        }
        Policy::Stock | Policy::Cgroup | Policy::Vmfair => {
            if autogroup {
                write_file(AUTOGROUP_SYSCTL, "0")?;
            }
        }
    }
    if scn.policy == Policy::Cgroup || scn.vm.iter().any(|v| v.cpu_max.is_some()) {
        cpu_controller()?;
    }
    if scn.policy == Policy::Vmfair && !Path::new("/sys/module/vmfair").exists() {
        log("modprobe vmfair");
        run_tool(&modprobe_argv())?;
    }
    for (key, value) in &scn.sysctl {
        let path = sysctl_path(key);
        write_file(&path, &value.to_string()).map_err(|e| format!("sysctl {key}: {e}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tools_found_on_path() {
        let exists = |p: &str| p == "/usr/sbin/modprobe" || p == "/bin/modprobe";
        assert_eq!(
            find_tool("/usr/local/bin:/usr/sbin:/bin", "modprobe", exists),
            "/usr/sbin/modprobe"
        );
        assert_eq!(
            find_tool("/bin:/usr/sbin", "modprobe", exists),
            "/bin/modprobe"
        );
        assert_eq!(find_tool("/opt/bin", "modprobe", exists), "/sbin/modprobe");
        assert_eq!(find_tool("", "rmmod", |_| false), "/sbin/rmmod");
    }

    #[test]
    fn sysctl_paths() {
        assert_eq!(
            sysctl_path("kernel.sched_autogroup_enabled"),
            "/proc/sys/kernel/sched_autogroup_enabled"
        );
        assert_eq!(
            sysctl_path("kernel.vmfair.period_us"),
            "/proc/sys/kernel/vmfair/period_us"
        );
    }

    #[test]
    fn cpu_controller_listed() {
        assert!(has_cpu("cpuset cpu io memory pids\n"));
        assert!(has_cpu("cpu"));
        assert!(!has_cpu("cpuset io memory pids\n"));
        assert!(!has_cpu(""));
    }
}
