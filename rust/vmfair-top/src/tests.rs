// SPDX-License-Identifier: GPL-2.0
//! Tests on fake `--root` trees.

use super::*;
use std::fs;
use std::sync::atomic::{AtomicU32, Ordering};

/// A fake root: `proc/sys/kernel/vmfair/` and `proc/<pid>/`, removed on drop.
struct Fake {
    dir: PathBuf,
}

impl Fake {
    fn new() -> Fake {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "vmfair-top-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("proc")).unwrap();
        Fake { dir }
    }

    /// The module loaded with no VM.
    fn loaded() -> Fake {
        let f = Fake::new();
        f.write(&format!("{VMFAIR_DIR}/vms"), "");
        f
    }

    fn write(&self, rel: &str, text: &str) {
        let p = self.dir.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }

    /// Sets the `vms` list to these lines.
    fn vms(&self, lines: &[&str]) {
        let mut s = lines.join("\n");
        s.push('\n');
        self.write(&format!("{VMFAIR_DIR}/vms"), &s);
    }

    /// A VM's process files and a `stats` file with these counters.
    fn vm(&self, pid: u32, vcpus: u32, weight: u32, cpu_ns: u64, wait_ns: u64) {
        self.stats(
            pid,
            &format!(
                "pid {pid}\nvcpus {vcpus}\nweight {weight}\nweight_source default\nshares 1024\n\
                 group 7\nvms 1\nthreads {}\ncpu_ns {cpu_ns}\nwait_ns {wait_ns}\n",
                vcpus + 1
            ),
        );
        self.write(&format!("proc/{pid}/comm"), "qemu-system-x86\n");
        self.write(
            &format!("proc/{pid}/cmdline"),
            &format!("qemu-system-x86_64\0-name\0vm{pid}\0"),
        );
    }

    fn stats(&self, pid: u32, text: &str) {
        self.write(&format!("{VMFAIR_DIR}/vm/{pid}/stats"), text);
    }

    fn sample(&self, mono: f64) -> Sample {
        read_sample(&self.dir, mono, 1_764_669_451.0 + mono).unwrap()
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn row(rows: &[Row], pid: u32) -> &Row {
    rows.iter().find(|r| r.vm.pid == pid).expect("row for pid")
}

fn close(a: Option<f64>, b: f64) -> bool {
    a.is_some_and(|a| (a - b).abs() < 1e-9)
}

#[test]
fn reads_list_stats_and_process_files() {
    let f = Fake::loaded();
    f.vms(&[
        "100 vcpus 2 weight 300 shares 3072 group 5 reservation 1.50 limit 0.00 future 9",
        "not-a-pid vcpus 1",
        "",
    ]);
    f.vm(100, 2, 300, 5, 6);
    let s = f.sample(0.0);
    assert_eq!(s.vms.len(), 1);
    let v = &s.vms[0];
    assert_eq!(v.pid, 100);
    assert_eq!(v.name, "qemu-system-x86");
    assert_eq!(v.cmdline, "qemu-system-x86_64 -name vm100");
    assert_eq!(
        (v.vcpus, v.weight, v.threads),
        (Some(2), Some(300), Some(3))
    );
    assert_eq!((v.cpu_ns, v.wait_ns), (Some(5), Some(6)));
    assert_eq!(v.reservation, Some(1.5));
    assert_eq!(v.limit, Some(0.0));
}

#[test]
fn stats_win_over_the_list_and_absent_keys_stay_absent() {
    let f = Fake::loaded();
    f.vms(&["7 vcpus 1 weight 100 shares 1024 group 1"]);
    f.vm(7, 4, 250, 0, 0);
    let v = &f.sample(0.0).vms[0];
    assert_eq!((v.vcpus, v.weight), (Some(4), Some(250)));
    assert_eq!((v.reservation, v.limit), (None, None));
    let rows = compute(None, &f.sample(0.0));
    let c = cells(&rows[0]);
    assert_eq!((c[4].as_str(), c[5].as_str()), ("-", "-"));
    assert_eq!((c[6].as_str(), c[7].as_str()), ("-", "-"));
}

#[test]
fn used_and_ready_from_two_samples() {
    let f = Fake::loaded();
    f.vms(&["10 vcpus 2 weight 100", "11 vcpus 1 weight 100"]);
    f.vm(10, 2, 100, 1_000_000_000, 40_000_000);
    f.vm(11, 1, 100, 0, 0);
    let a = f.sample(10.0);
    // Over 2 s: VM 10 used 3 s of CPU (150 %) and waited 0.8 s over its 2 vCPUs (20 % each);
    // VM 11 used 0.5 s (25 %) and waited 0.3 s on its one vCPU (15 %).
    f.vm(10, 2, 100, 4_000_000_000, 840_000_000);
    f.vm(11, 1, 100, 500_000_000, 300_000_000);
    let b = f.sample(12.0);
    let rows = compute(Some(&a), &b);
    assert!(close(row(&rows, 10).used_pct, 150.0), "{rows:?}");
    assert!(close(row(&rows, 10).rdy_pct, 20.0), "{rows:?}");
    assert!(close(row(&rows, 11).used_pct, 25.0), "{rows:?}");
    assert!(close(row(&rows, 11).rdy_pct, 15.0), "{rows:?}");
}

#[test]
fn ready_time_is_per_vcpu() {
    let f = Fake::loaded();
    f.vms(&["1 vcpus 1", "2 vcpus 4"]);
    f.vm(1, 1, 100, 0, 0);
    f.vm(2, 4, 100, 0, 0);
    let a = f.sample(0.0);
    // The same 0.4 s of wait in 1 s: 40 % for one vCPU, 10 % for each of four.
    f.vm(1, 1, 100, 0, 400_000_000);
    f.vm(2, 4, 100, 0, 400_000_000);
    let rows = compute(Some(&a), &f.sample(1.0));
    assert!(close(row(&rows, 1).rdy_pct, 40.0), "{rows:?}");
    assert!(close(row(&rows, 2).rdy_pct, 10.0), "{rows:?}");
    // No vCPU (yet): no ready time per vCPU.
    f.vms(&["3 vcpus 0"]);
    f.vm(3, 0, 100, 0, 0);
    let a = f.sample(0.0);
    f.vm(3, 0, 100, 10, 10);
    let rows = compute(Some(&a), &f.sample(1.0));
    assert_eq!(row(&rows, 3).rdy_pct, None);
    assert!(close(row(&rows, 3).used_pct, 1e-6));
}

#[test]
fn first_sample_and_new_vms_have_no_figures() {
    let f = Fake::loaded();
    f.vms(&["1 vcpus 1"]);
    f.vm(1, 1, 100, 5, 5);
    let a = f.sample(0.0);
    assert!(compute(None, &a).iter().all(|r| r.used_pct.is_none()));
    f.vms(&["1 vcpus 1", "2 vcpus 1"]);
    f.vm(1, 1, 100, 1_000_000_005, 5);
    f.vm(2, 1, 100, 9_000_000_000, 5);
    let rows = compute(Some(&a), &f.sample(1.0));
    assert!(close(row(&rows, 1).used_pct, 100.0));
    assert_eq!(
        (row(&rows, 2).used_pct, row(&rows, 2).rdy_pct),
        (None, None)
    );
    // A zero interval gives no figures rather than infinities.
    let rows = compute(Some(&a), &f.sample(0.0));
    assert_eq!(row(&rows, 1).used_pct, None);
}

#[test]
fn reused_pid_is_a_new_vm() {
    let f = Fake::loaded();
    f.vms(&["5 vcpus 1"]);
    f.vm(5, 1, 100, 8_000_000_000, 1_000);
    let a = f.sample(0.0);
    // CPU time went backwards: another process.
    f.vm(5, 1, 100, 1_000_000_000, 2_000);
    let rows = compute(Some(&a), &f.sample(1.0));
    assert_eq!((rows[0].used_pct, rows[0].rdy_pct), (None, None));
    // A different start time: another process even though its counters grew.
    let stat = |start: u64| {
        format!("5 (qemu (x) y) S 1 5 5 0 -1 4194560 1 0 0 0 2 3 0 0 20 0 3 0 {start} 1 2\n")
    };
    f.write("proc/5/stat", &stat(111));
    let a = f.sample(0.0);
    assert_eq!(a.vms[0].start, Some(111));
    f.write("proc/5/stat", &stat(222));
    f.vm(5, 1, 100, 2_000_000_000, 3_000);
    let rows = compute(Some(&a), &f.sample(1.0));
    assert_eq!(rows[0].used_pct, None);
    // The same start time: the same process.
    f.write("proc/5/stat", &stat(222));
    let a = f.sample(0.0);
    f.vm(5, 1, 100, 2_500_000_000, 3_000);
    let rows = compute(Some(&a), &f.sample(1.0));
    assert!(close(rows[0].used_pct, 50.0), "{rows:?}");
}

#[test]
fn wait_going_down_hides_only_ready_time() {
    let f = Fake::loaded();
    f.vms(&["5 vcpus 2"]);
    f.vm(5, 2, 100, 1_000_000_000, 900_000_000);
    let a = f.sample(0.0);
    // A thread with a lot of wait exited: wait_ns shrank, cpu_ns still grew.
    f.vm(5, 2, 100, 1_500_000_000, 100_000_000);
    let rows = compute(Some(&a), &f.sample(1.0));
    assert!(close(rows[0].used_pct, 50.0));
    assert_eq!(rows[0].rdy_pct, None);
}

#[test]
fn missing_files() {
    // No vmfair directory: not loaded.
    let f = Fake::new();
    let e = read_sample(&f.dir, 0.0, 0.0).unwrap_err();
    assert!(matches!(e, ReadError::NotLoaded(_)));
    assert!(e.to_string().contains("not loaded"), "{e}");
    // The directory without a VM list: not loaded either (unloading).
    fs::create_dir_all(f.dir.join(VMFAIR_DIR)).unwrap();
    assert!(matches!(
        read_sample(&f.dir, 0.0, 0.0),
        Err(ReadError::NotLoaded(_))
    ));
    // Listed, but the stats are gone (it just exited): left out. No comm, cmdline, stat:
    // shown with "-" and an empty command line.
    f.vms(&["1 vcpus 1", "2 vcpus 1"]);
    f.stats(2, "vcpus 1\ncpu_ns 5\n");
    let s = f.sample(0.0);
    assert_eq!(s.vms.len(), 1);
    let v = &s.vms[0];
    assert_eq!((v.pid, v.name.as_str(), v.cmdline.as_str()), (2, "-", ""));
    assert_eq!((v.wait_ns, v.threads, v.start), (None, None, None));
    // Garbage values are unknown, not zero.
    f.stats(2, "vcpus x\ncpu_ns -3\nwait_ns\nlimit inf\n");
    let v = &f.sample(0.0).vms[0];
    assert_eq!(
        (v.vcpus, v.cpu_ns, v.wait_ns, v.limit),
        (Some(1), None, None, None)
    );
}

#[test]
fn vm_vanishing_between_samples() {
    let f = Fake::loaded();
    f.vms(&["1 vcpus 1", "2 vcpus 1"]);
    f.vm(1, 1, 100, 0, 0);
    f.vm(2, 1, 100, 0, 0);
    let a = f.sample(0.0);
    f.vms(&["1 vcpus 1"]);
    fs::remove_dir_all(f.dir.join(format!("{VMFAIR_DIR}/vm/2"))).unwrap();
    f.vm(1, 1, 100, 2_000_000_000, 0);
    let rows = compute(Some(&a), &f.sample(2.0));
    assert_eq!(rows.len(), 1);
    assert!(close(rows[0].used_pct, 100.0));
}

#[test]
fn each_vm_dated_when_its_stats_were_read() {
    let f = Fake::loaded();
    f.vms(&["10 vcpus 1", "11 vcpus 1"]);
    f.vm(10, 1, 100, 0, 0);
    f.vm(11, 1, 100, 0, 0);
    // A clock that gains 0.2 s at each reading: the sample starts at 0, VM 10's stats are
    // read from 0.2 to 0.4 s, VM 11's from 0.6 to 0.8 s (a slow first read).
    let clock = |start: f64, step: f64| {
        let mut now = start - step;
        move || {
            now += step;
            now
        }
    };
    let a = read_sample_at(&f.dir, &mut clock(0.0, 0.2), 0.0).unwrap();
    assert_eq!(a.mono, 0.0);
    let at: Vec<Option<f64>> = a.vms.iter().map(|v| v.at).collect();
    assert!(close(at[0], 0.3) && close(at[1], 0.7), "{at:?}");
    // One CPU's worth from each VM's read to its next one, 2.0 s later for both: the second
    // sample starts at 2.0 with a clock that does not move.
    f.vm(10, 1, 100, 2_000_000_000, 0);
    f.vm(11, 1, 100, 1_300_000_000, 0);
    let b = read_sample_at(&f.dir, &mut clock(2.0, 0.0), 0.0).unwrap();
    let rows = compute(Some(&a), &b);
    // VM 10: 2.0 s of CPU over 2.0 - 0.3 = 1.7 s; VM 11: 1.3 s over 1.3 s. Dated by the
    // samples' starts instead, both would be over 2.0 s (100 and 65).
    assert!(
        close(row(&rows, 10).used_pct, 2.0 / 1.7 * 100.0),
        "{rows:?}"
    );
    assert!(close(row(&rows, 11).used_pct, 100.0), "{rows:?}");
    // Without `at`, the samples' `mono`.
    let strip = |s: &Sample| Sample {
        vms: s
            .vms
            .iter()
            .map(|v| Vm {
                at: None,
                ..v.clone()
            })
            .collect(),
        ..s.clone()
    };
    let rows = compute(Some(&strip(&a)), &strip(&b));
    assert!(close(row(&rows, 10).used_pct, 100.0) && close(row(&rows, 11).used_pct, 65.0));
    // read_sample dates every VM at the sample's time.
    assert!(f.sample(5.0).vms.iter().all(|v| v.at == Some(5.0)));
}

fn sort_fixture() -> Vec<Row> {
    let r = |pid, vcpus, weight, used, rdy| Row {
        vm: Vm {
            pid,
            vcpus: Some(vcpus),
            weight: Some(weight),
            ..Vm::default()
        },
        used_pct: used,
        rdy_pct: rdy,
    };
    vec![
        r(30, 1, 100, Some(50.0), Some(1.0)),
        r(10, 4, 300, Some(199.0), Some(0.5)),
        r(20, 2, 100, None, None),
        r(40, 2, 50, Some(50.0), Some(9.0)),
    ]
}

fn order(rows: &[Row]) -> Vec<u32> {
    rows.iter().map(|r| r.vm.pid).collect()
}

#[test]
fn sorting() {
    let mut rows = sort_fixture();
    for (key, want) in [
        (SortKey::Used, [10, 30, 40, 20]),
        (SortKey::Rdy, [40, 30, 10, 20]),
        (SortKey::Pid, [10, 20, 30, 40]),
        (SortKey::Weight, [10, 20, 30, 40]),
        (SortKey::Vcpus, [10, 20, 40, 30]),
    ] {
        sort_rows(&mut rows, key);
        assert_eq!(order(&rows), want, "{key:?}");
        assert_eq!(key.name().parse::<SortKey>(), Ok(key));
    }
    assert!("cpu".parse::<SortKey>().is_err());
}

#[test]
fn json_shape() {
    let f = Fake::loaded();
    f.vms(&[
        "9 vcpus 2 weight 200 reservation 0.50",
        "8 vcpus 1 weight 100",
    ]);
    f.vm(9, 2, 200, 0, 0);
    f.vm(8, 1, 100, 0, 0);
    let a = f.sample(0.0);
    f.vm(9, 2, 200, 1_500_000_000, 100_000_000);
    f.write("proc/9/cmdline", "qemu\0-name\0\"a\\b\"\ttab\0");
    let b = f.sample(1.0);
    let mut rows = compute(Some(&a), &b);
    sort_rows(&mut rows, SortKey::Used);
    let line = json_line(&b, &rows);
    assert!(!line.contains('\n'));
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    let top = v.as_object().unwrap();
    assert_eq!(top.keys().collect::<Vec<_>>(), ["t", "vms"]);
    assert!((v["t"].as_f64().unwrap() - 1_764_669_452.0).abs() < 1e-6);
    let vms = v["vms"].as_array().unwrap();
    assert_eq!(vms.len(), 2);
    let keys = [
        "cmdline",
        "limit",
        "name",
        "pid",
        "rdy_pct",
        "reservation",
        "threads",
        "used_pct",
        "vcpus",
        "weight",
    ];
    for vm in vms {
        let mut k: Vec<&str> = vm.as_object().unwrap().keys().map(String::as_str).collect();
        k.sort();
        assert_eq!(k, keys);
    }
    let first = &vms[0];
    assert_eq!(first["pid"], 9);
    assert_eq!(first["name"], "qemu-system-x86");
    assert_eq!(first["cmdline"], "qemu -name \"a\\b\"\ttab");
    assert_eq!(
        (first["vcpus"].clone(), first["weight"].clone()),
        (2.into(), 200.into())
    );
    assert_eq!(first["reservation"].as_f64(), Some(0.5));
    assert!(first["limit"].is_null());
    assert_eq!(first["used_pct"].as_f64(), Some(150.0));
    assert_eq!(first["rdy_pct"].as_f64(), Some(5.0));
    assert_eq!(first["threads"], 3);
    // VM 8 did nothing: zeros, not nulls.
    assert_eq!(vms[1]["used_pct"].as_f64(), Some(0.0));
    // Without a previous sample: nulls.
    let line = json_line(&b, &compute(None, &b));
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert!(v["vms"][0]["used_pct"].is_null() && v["vms"][0]["rdy_pct"].is_null());
    assert_eq!(json_str("\u{1}"), "\"\\u0001\"");
}

#[test]
fn table_columns() {
    let f = Fake::loaded();
    f.vms(&[
        "12345 vcpus 16 weight 1000 limit 2.00",
        "7 vcpus 1 weight 50",
    ]);
    f.vm(12345, 16, 1000, 0, 0);
    f.vm(7, 1, 50, 0, 0);
    let a = f.sample(0.0);
    f.vm(12345, 16, 1000, 2_469_000_000, 0);
    let b = f.sample(1.0);
    let mut rows = compute(Some(&a), &b);
    sort_rows(&mut rows, SortKey::Used);
    let t = table(&rows, None);
    assert_eq!(t.len(), 3);
    let words = |l: &str| l.split_whitespace().map(String::from).collect::<Vec<_>>();
    assert_eq!(words(&t[0]), COLUMNS);
    assert_eq!(
        words(&t[1])[..9],
        [
            "12345",
            "qemu-system-x86",
            "16",
            "1000",
            "-",
            "2.00",
            "246.9",
            "0.0",
            "17"
        ]
    );
    assert_eq!(words(&t[2])[0], "7");
    // Right-aligned numbers: every line's %USED ends in the same column.
    let end = |l: &str, cell: &str| l.find(cell).unwrap() + cell.len();
    assert_eq!(end(&t[0], "%USED"), end(&t[1], "246.9"));
    assert_eq!(end(&t[0], "%USED"), end(&t[2], "0.0"));
    assert_eq!(end(&t[0], "%RDY"), t[2].rfind("0.0").unwrap() + 3);
    // CMD is last and left-aligned.
    assert!(t[1].ends_with("qemu-system-x86_64 -name vm12345"));
    assert_eq!(t[0].find("CMD"), t[1].find("qemu-system-x86_64"));
    // Cut to a width.
    for l in table(&rows, Some(40)) {
        assert!(l.chars().count() <= 40);
    }
    assert_eq!(truncate("aéb", 2), "aé");
    let block = batch_block(&b, &rows, 2.0);
    assert!(block.starts_with("vmfair-top 2025-12-02 09:57:32 UTC  interval 2.00 s  2 VMs\n"));
}

#[test]
fn dates() {
    assert_eq!(utc(0.0), "1970-01-01 00:00:00 UTC");
    assert_eq!(utc(951_782_400.5), "2000-02-29 00:00:00 UTC");
    assert_eq!(utc(1_764_669_451.0), "2025-12-02 09:57:31 UTC");
    assert_eq!(utc(4_102_444_799.0), "2099-12-31 23:59:59 UTC");
}

fn args(v: &[&str]) -> Result<Parsed, String> {
    parse_args(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>())
}

#[test]
fn options() {
    assert_eq!(args(&[]), Ok(Parsed::Run(Options::default())));
    let Ok(Parsed::Run(o)) = args(&[
        "-b", "-d", "0.5", "-n", "3", "-s", "rdy", "--json", "--root", "/x",
    ]) else {
        panic!()
    };
    assert!(o.batch && o.json);
    assert_eq!(
        (o.interval, o.iterations, o.sort),
        (0.5, Some(3), SortKey::Rdy)
    );
    assert_eq!(o.root, PathBuf::from("/x"));
    let Ok(Parsed::Run(o)) = args(&["-d2.5", "-n1", "-spid", "--root=/y"]) else {
        panic!()
    };
    assert_eq!(
        (o.interval, o.iterations, o.sort),
        (2.5, Some(1), SortKey::Pid)
    );
    assert_eq!(o.root, PathBuf::from("/y"));
    assert_eq!(args(&["-h"]), Ok(Parsed::Help));
    assert_eq!(args(&["-b", "--help"]), Ok(Parsed::Help));
    for bad in [
        &["-d", "0"][..],
        &["-d", "-1"],
        &["-d", "nan"],
        &["-d", "x"],
        &["-d"],
        &["-n", "0"],
        &["-n", "1.5"],
        &["-s", "cpu"],
        &["--json"],
        &["-x"],
        &["--bogus"],
        &["extra"],
        &["-bn"],
        &["--root"],
    ] {
        assert!(args(bad).is_err(), "{bad:?}");
    }
}

/// The visible text of a screen line: without the escape sequences.
fn visible(line: &str) -> String {
    let mut out = String::new();
    let mut esc = false;
    for c in line.chars() {
        match (esc, c) {
            (false, '\x1b') => esc = true,
            (true, c) if c.is_ascii_alphabetic() => esc = false,
            (true, _) => {}
            (false, c) => out.push(c),
        }
    }
    out
}

#[test]
fn live_screen_fits_the_terminal() {
    let f = Fake::loaded();
    let pids: Vec<u32> = (1..=30).collect();
    let lines: Vec<String> = pids.iter().map(|p| format!("{p} vcpus 1")).collect();
    f.vms(&lines.iter().map(String::as_str).collect::<Vec<_>>());
    for &p in &pids {
        f.vm(p, 1, 100, 0, 0);
    }
    let a = f.sample(0.0);
    for &p in &pids {
        f.vm(p, 1, 100, u64::from(p) * 10_000_000, 0);
    }
    let b = f.sample(1.0);
    let view = View::Rows(b.wall, compute(Some(&a), &b));
    let s = live_screen(&view, SortKey::Used, 2.0, 50, 10);
    assert!(s.starts_with("\x1b[H\x1b[2J"));
    let lines: Vec<String> = s.split('\n').map(visible).collect();
    // Title, header, 7 rows: the last terminal line stays empty.
    assert_eq!(lines.len(), 9, "{lines:?}");
    assert!(lines.iter().all(|l| l.chars().count() <= 50), "{lines:?}");
    assert!(lines[0].contains("30 VMs"), "{}", lines[0]);
    assert!(lines[0].contains("%USED 465.0"), "{}", lines[0]);
    assert!(lines[1].starts_with("PID"));
    // Busiest first: pid 30 used 30 %.
    assert!(lines[2].trim_start().starts_with("30 "), "{}", lines[2]);
    let s = live_screen(&view, SortKey::Pid, 2.0, 50, 10);
    assert!(visible(s.split('\n').nth(2).unwrap())
        .trim_start()
        .starts_with("1 "));
    let s = live_screen(
        &View::Error(0.0, "vmfair is not loaded".into()),
        SortKey::Used,
        2.0,
        80,
        24,
    );
    assert!(s.contains("vmfair is not loaded; waiting for it"));
}
