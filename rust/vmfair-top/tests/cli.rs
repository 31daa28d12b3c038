// SPDX-License-Identifier: GPL-2.0
//! The `vmfair-top` binary on a fake `--root` tree: exit codes, batch and JSON output.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn fake_root(name: &str, loaded: bool) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vmfair-top-cli-{}-{name}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(dir.join("proc")).unwrap();
    if loaded {
        let w = |rel: &str, text: &str| {
            let p = dir.join(rel);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, text).unwrap();
        };
        w(
            "proc/sys/kernel/vmfair/vms",
            "42 vcpus 2 weight 300 shares 3072 group 3 limit 1.50\n",
        );
        w(
            "proc/sys/kernel/vmfair/vm/42/stats",
            "pid 42\nvcpus 2\nweight 300\nthreads 4\ncpu_ns 1000\nwait_ns 10\n",
        );
        w("proc/42/comm", "qemu\n");
        w("proc/42/cmdline", "qemu\0-smp\x002\0");
    }
    dir
}

fn run(root: &Path, args: &[&str]) -> (Output, Duration) {
    let t = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_vmfair-top"))
        .args(args)
        .arg("--root")
        .arg(root)
        .output()
        .unwrap();
    (out, t.elapsed())
}

#[test]
fn json_lines_after_each_interval() {
    let root = fake_root("json", true);
    let (out, took) = run(&root, &["-b", "--json", "-n", "2", "-d", "0.1"]);
    assert!(out.status.success(), "{out:?}");
    assert!(took >= Duration::from_millis(200), "{took:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    for l in lines {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        let vm = &v["vms"][0];
        assert_eq!(vm["pid"], 42);
        assert_eq!(vm["name"], "qemu");
        assert_eq!(vm["cmdline"], "qemu -smp 2");
        assert_eq!(
            (vm["vcpus"].clone(), vm["weight"].clone()),
            (2.into(), 300.into())
        );
        assert_eq!(vm["limit"].as_f64(), Some(1.5));
        assert!(vm["reservation"].is_null());
        // The counters did not move: zero, not unknown.
        assert_eq!(vm["used_pct"].as_f64(), Some(0.0));
        assert_eq!(vm["rdy_pct"].as_f64(), Some(0.0));
        assert!(v["t"].as_f64().unwrap() > 1e9);
    }
    let _ = fs::remove_dir_all(root);
}

#[test]
fn batch_block() {
    let root = fake_root("batch", true);
    let (out, _) = run(&root, &["-b", "-d", "0.05"]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("vmfair-top ") && lines[0].contains(" UTC "),
        "{text}"
    );
    assert!(lines[1].starts_with("PID"), "{text}");
    let cells: Vec<&str> = lines[2].split_whitespace().collect();
    assert_eq!(
        cells,
        ["42", "qemu", "2", "300", "-", "1.50", "0.0", "0.0", "4", "qemu", "-smp", "2"]
    );
    let _ = fs::remove_dir_all(root);
}

#[test]
fn not_loaded_and_usage_errors() {
    let root = fake_root("none", false);
    let (out, took) = run(&root, &["-b", "-d", "5"]);
    assert_eq!(out.status.code(), Some(1));
    // Said at once, not after an interval.
    assert!(took < Duration::from_secs(5));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("vmfair is not loaded"), "{err}");
    for bad in [&["-d", "0"][..], &["-q"], &["--json"], &["-s", "cpu"]] {
        let (out, _) = run(&root, bad);
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
        assert!(out.stdout.is_empty());
        assert!(String::from_utf8_lossy(&out.stderr).contains("usage: vmfair-top"));
    }
    let (out, _) = run(&root, &["-h"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("usage: vmfair-top"));
    let _ = fs::remove_dir_all(root);
}
