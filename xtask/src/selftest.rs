//! `make test`: host unit tests, toolchain, kernel + module build, the
//! pipeline's own failure paths, KUnit in the guest, module loading,
//! scenario smoke tests with real KVM VMs, and the fairness scenarios judged
//! against their entitlement. Every check is counted; the last line is
//! `N passed, N failed`.

use crate::kbuild::{self, Built, Inputs};
use crate::qemu::{self, Boot};
use crate::scenario;
use crate::util::{self, info, phase, Ctx};
use crate::{fairness, guest, kunit, peers, realvmm, toolchain};
use anyhow::Result;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// How many times a scenario test is run before an invalid (corrupted
/// test bed) result counts as a failure; see Documentation/vmfair/contract.rst.
const SCENARIO_TRIES: u32 = 3;

#[derive(Default)]
struct Tally {
    passed: u32,
    failed: u32,
    failures: Vec<String>,
}

impl Tally {
    fn check(&mut self, name: &str, ok: bool, detail: &str) {
        if ok {
            self.passed += 1;
            println!("ok     {name}");
        } else {
            self.failed += 1;
            println!("FAILED {name}: {detail}");
            self.failures.push(format!("{name}: {detail}"));
        }
    }
    fn result<T>(&mut self, name: &str, r: &Result<T>) -> bool {
        match r {
            Ok(_) => self.check(name, true, ""),
            Err(e) => self.check(name, false, &format!("{e:#}")),
        }
        r.is_ok()
    }
}

/// Run `cargo test` for the host crates, counting each test.
fn host_tests(ctx: &Ctx, t: &mut Tally) {
    phase("host unit tests (cargo test --workspace)");
    let out = Command::new("cargo")
        .current_dir(&ctx.root)
        .args([
            "test",
            "--workspace",
            "--release",
            "--locked",
            "--",
            "--test-threads=2",
        ])
        .output();
    let Ok(out) = out else {
        t.check("host: cargo test", false, "cannot run cargo");
        return;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let mut seen = 0;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("test ") {
            if let Some((name, status)) = rest.rsplit_once(" ... ") {
                match status.trim() {
                    "ok" => t.check(&format!("host: {name}"), true, ""),
                    "FAILED" => t.check(&format!("host: {name}"), false, "see cargo test output"),
                    _ => continue,
                }
                seen += 1;
            }
        }
    }
    if !out.status.success() || seen == 0 {
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = err.lines().rev().take(20).collect();
        t.check(
            "host: cargo test ran",
            false,
            &format!(
                "status {}, {seen} tests seen; stderr tail:\n{}",
                out.status,
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            ),
        );
    }
}

/// A patch that cannot apply must stop the build naming it, and leave the
/// work tree alone.
fn broken_patch(ctx: &Ctx, t: &mut Tally) {
    let name = "9999-vmfair-selftest-broken.patch";
    let r = (|| -> Result<String> {
        let tmp = ctx.cache.join("selftest/patches");
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp)?;
        let project = Inputs::project(ctx)?;
        let mut series = String::new();
        for p in project.series()? {
            let n = p.file_name().unwrap().to_string_lossy().into_owned();
            std::fs::copy(&p, tmp.join(&n))?;
            series.push_str(&n);
            series.push('\n');
        }
        series.push_str(name);
        series.push('\n');
        util::write(&tmp.join("series"), series)?;
        util::write(
            &tmp.join(name),
            "From: vmfair selftest <vmfair@localhost>\nSubject: [PATCH] selftest: a hunk that cannot apply\n\n---\n\
             diff --git a/Makefile b/Makefile\n--- a/Makefile\n+++ b/Makefile\n@@ -1,3 +1,3 @@\n\
              this line is not in the kernel's Makefile\n-VERSION = 99\n+VERSION = 100\n \
             neither is this one\n",
        )?;
        let head_before = util::output(
            Command::new("git")
                .current_dir(ctx.src())
                .args(["rev-parse", "HEAD"]),
        )?;
        let inputs = Inputs {
            patches: tmp,
            fragments: project.fragments,
        };
        let res = kbuild::series_commit(ctx, &inputs);
        let head_after = util::output(
            Command::new("git")
                .current_dir(ctx.src())
                .args(["rev-parse", "HEAD"]),
        )?;
        if head_before != head_after {
            anyhow::bail!("the failed series moved the work tree");
        }
        match res {
            Ok(_) => anyhow::bail!("a broken patch applied"),
            Err(e) => Ok(format!("{e:#}")),
        }
    })();
    match r {
        Ok(msg) => t.check(
            "pipeline: a broken patch stops the build naming it",
            msg.contains(name),
            &format!("error did not name the patch: {msg}"),
        ),
        Err(e) => t.check(
            "pipeline: a broken patch stops the build naming it",
            false,
            &format!("{e:#}"),
        ),
    }
}

/// An option olddefconfig drops must fail the config step naming it.
fn dropped_option(ctx: &Ctx, t: &mut Tally) {
    let name =
        "pipeline: a fragment option that olddefconfig drops fails the config step naming it";
    let r = (|| -> Result<String> {
        let mut inputs = Inputs::project(ctx)?;
        let frag = ctx.cache.join("selftest/impossible.config");
        // SCHED_CLASS_EXT needs BPF_SYSCALL, BPF_JIT and DEBUG_INFO_BTF,
        // none of which the fragments enable: olddefconfig drops it.
        util::write(&frag, "CONFIG_SCHED_CLASS_EXT=y\n")?;
        inputs.fragments.push(frag);
        let dir = ctx.cache.join("selftest/config-build");
        let _ = std::fs::remove_dir_all(&dir);
        let res = kbuild::configure(ctx, &inputs, &dir);
        let _ = std::fs::remove_dir_all(&dir);
        match res {
            Ok(_) => anyhow::bail!("the config step accepted a dropped option"),
            Err(e) => Ok(format!("{e:#}")),
        }
    })();
    match r {
        Ok(msg) => t.check(name, msg.contains("CONFIG_SCHED_CLASS_EXT"), &msg),
        Err(e) => t.check(name, false, &format!("{e:#}")),
    }
}

fn smoke_scenarios(ctx: &Ctx) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(ctx.root.join("qemu-test/scenarios"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("smoke-") && n.ends_with(".toml"))
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// The guest boot: info, KUnit, modprobe/rmmod, the knobs against a VM, dmesg.
fn guest_boot(ctx: &Ctx, built: &Built, base: &Path, t: &mut Tally) {
    let boot = Boot {
        name: "test-guest".into(),
        built,
        base_cpio: base,
        cpus: 2,
        mem_mib: 2048,
        plan: ["info", "kunit", "modcheck", "knobs", "dmesg"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        files: vec![],
        timeout: Duration::from_secs(300),
        icount: false,
        silence: Duration::from_secs(120),
    };
    let out = match boot.run(ctx) {
        Ok(o) => o,
        Err(e) => {
            t.check(
                "guest: boots and finishes its plan",
                false,
                &format!("{e:#}"),
            );
            return;
        }
    };
    t.check(
        "guest: boots and finishes its plan",
        out.done.is_some(),
        &out.verdict(),
    );
    let info_block = out
        .block("info", "guest")
        .map(|b| b.payload.clone())
        .unwrap_or_default();
    t.check(
        "guest: /dev/kvm exists",
        info_block.lines().any(|l| l == "dev_kvm=yes"),
        &info_block,
    );
    t.check(
        "guest: kvm_amd is loaded",
        info_block.lines().any(|l| l == "kvm_amd=loaded"),
        &info_block,
    );
    match out.block("kunit", "vmfair") {
        None => t.check(
            "kunit: vmfair suites ran",
            false,
            "no KUnit record from the guest",
        ),
        Some(b) => {
            t.check(
                "kunit: modprobe vmfair",
                b.rc == Some(0),
                &format!("rc={:?}", b.rc),
            );
            match kunit::parse(ctx, &b.payload) {
                Ok(cases) => {
                    for c in cases {
                        t.check(
                            &format!("kunit: {}", c.name),
                            c.status == "PASS" || c.status == "SKIP",
                            &c.status,
                        );
                    }
                }
                Err(e) => t.check("kunit: vmfair suites ran", false, &format!("{e:#}")),
            }
        }
    }
    match out.block("modcheck", "vmfair") {
        None => t.check("guest: modprobe/rmmod vmfair", false, "no record"),
        Some(b) => t.check("guest: modprobe/rmmod vmfair", b.rc == Some(0), &b.payload),
    }
    match out.block("knobs", "vmfair") {
        None => t.check("knobs: vmfair-run knobs ran", false, "no record"),
        Some(b) => {
            // A non-zero exit must be explained by a FAIL line.
            let (lines, ran) = qemu::check_lines("knobs", &b.payload, b.rc);
            for (name, ok, detail) in lines {
                t.check(&name, ok, &detail);
            }
            if let Some(detail) = ran {
                t.check("knobs: vmfair-run knobs ran", false, &detail);
            }
        }
    }
    let (clean, detail) = out.dmesg_clean();
    t.check("guest: no kernel warnings", clean, &detail);
}

/// Scenario smoke tests: every VM and host group got CPU and did work.
fn scenario_smoke(ctx: &Ctx, built: &Built, base: &Path, t: &mut Tally) {
    for file in smoke_scenarios(ctx) {
        let meta = match scenario::meta(&file) {
            Ok(m) => m,
            Err(e) => {
                t.check(
                    &format!("scenario: {}", file.display()),
                    false,
                    &format!("{e:#}"),
                );
                continue;
            }
        };
        let test = format!(
            "scenario: {} (every group gets CPU and does work)",
            meta.name
        );
        let out_dir = ctx.cache.join("selftest/results");
        let mut last = String::new();
        let mut ok = false;
        for attempt in 1..=SCENARIO_TRIES {
            let r = scenario::run_many(
                ctx,
                built,
                base,
                std::slice::from_ref(&meta),
                &out_dir,
                &format!("test-{}", meta.name),
            );
            let (ran, out) = match r {
                Ok(x) => x,
                Err(e) => {
                    last = format!("{e:#}");
                    continue;
                }
            };
            let Some(r) = ran.into_iter().next() else {
                continue;
            };
            let Some(v) = r.json else {
                last = format!("{}; {}", r.error.unwrap_or_default(), out.verdict());
                info(&format!("attempt {attempt}: {last}"));
                continue;
            };
            scenario::print_table(&meta.name, &v);
            // The result must parse with the contract's own types; it is read through them.
            let res = match vmfair_scenario::ScenarioResult::from_json_str(&v.to_string()) {
                Ok(res) => res,
                Err(e) => {
                    last = format!("result does not follow the contract: {e}");
                    break;
                }
            };
            if !res.valid {
                last = format!("invalid run (test bed): {:?}", res.problems);
                info(&format!("attempt {attempt}: {last}; rerunning"));
                continue;
            }
            let bad: Vec<String> = res
                .groups
                .iter()
                .filter(|g| !(g.cpu_s > 0.0 && g.work > 0))
                .map(|g| {
                    format!(
                        "{:?}#{} cpu_s={} work={}",
                        g.name, g.instance, g.cpu_s, g.work
                    )
                })
                .collect();
            let expected: u32 = meta.vms;
            let vms = res
                .groups
                .iter()
                .filter(|g| g.kind == vmfair_scenario::GroupKind::Vm)
                .count() as u32;
            if vms != expected {
                last = format!("{vms} VM results, expected {expected}");
            } else if !bad.is_empty() {
                last = format!("groups without CPU or work: {}", bad.join(", "));
            } else {
                ok = true;
            }
            break;
        }
        t.check(&test, ok, &last);
    }
}

/// The issue-3 acceptance scenarios: vmfair's scenarios and the module life
/// cycle under eight VMs; and issue 10's reservations and limits
/// (`alloc-*.toml`).
fn fairness_files(ctx: &Ctx) -> Vec<PathBuf> {
    let dir = ctx.root.join("qemu-test/scenarios");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                        (n.starts_with("core-")
                            && (n.ends_with("-vmfair.toml") || n == "core-lifecycle.toml"))
                            || (n.starts_with("alloc-") && n.ends_with(".toml"))
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Fairness scenarios judged by `fairness::judge` (shares within ±10% of the
/// entitlement computed by vmfair-policy, weight-change settling, module life
/// cycle checks), all in one boot; scenarios with an invalid or failing
/// result are run again, in a new boot, up to SCENARIO_TRIES times in all, and
/// only the last attempt counts. Every boot's dmesg must be free of warnings.
fn fairness_scenarios(ctx: &Ctx, built: &Built, base: &Path, t: &mut Tally) {
    let mut pending = Vec::new();
    for f in fairness_files(ctx) {
        let loaded = util::read(&f).and_then(|text| {
            vmfair_scenario::Scenario::from_toml_str(&text)
                .map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))
        });
        match (scenario::meta(&f), loaded) {
            (Ok(m), Ok(s)) => pending.push((m, s)),
            (Err(e), _) | (_, Err(e)) => t.check(
                &format!("fairness: {}", f.display()),
                false,
                &format!("{e:#}"),
            ),
        }
    }
    if pending.is_empty() {
        t.check("fairness: scenarios found", false, "no core-*-vmfair.toml");
        return;
    }
    let out_dir = ctx.cache.join("selftest/results");
    let mut last: std::collections::BTreeMap<String, Vec<fairness::Verdict>> = Default::default();
    let mut warnings = Vec::new();
    for attempt in 1..=SCENARIO_TRIES {
        if pending.is_empty() {
            break;
        }
        let metas: Vec<scenario::Meta> = pending.iter().map(|(m, _)| m.clone()).collect();
        info(&format!(
            "fairness attempt {attempt}: {} scenario(s) in one boot",
            metas.len()
        ));
        let r = scenario::run_many(
            ctx,
            built,
            base,
            &metas,
            &out_dir,
            &format!("test-fairness-{attempt}"),
        );
        let (ran, out) = match r {
            Ok(x) => x,
            Err(e) => {
                for (m, _) in &pending {
                    last.insert(
                        m.name.clone(),
                        vec![fairness::Verdict {
                            name: "the boot ran".into(),
                            ok: false,
                            detail: format!("{e:#}"),
                        }],
                    );
                }
                continue;
            }
        };
        let dmesg = out
            .block("dmesg", "all")
            .map(|b| b.payload.clone())
            .unwrap_or_default();
        warnings.extend(qemu::kernel_warnings(&dmesg));
        if dmesg.is_empty() {
            warnings.push(format!(
                "boot {attempt}: no dmesg record ({})",
                out.verdict()
            ));
        }
        let mut again = Vec::new();
        for ((m, s), r) in pending.into_iter().zip(ran) {
            let verdicts = match r
                .json
                .as_ref()
                .map(|v| vmfair_scenario::ScenarioResult::from_json_str(&v.to_string()))
            {
                Some(Ok(res)) => {
                    scenario::print_table(&m.name, r.json.as_ref().unwrap());
                    fairness::judge(&s, &res)
                }
                Some(Err(e)) => vec![fairness::Verdict {
                    name: "result follows the contract".into(),
                    ok: false,
                    detail: e,
                }],
                None => vec![fairness::Verdict {
                    name: "a result".into(),
                    ok: false,
                    detail: r.error.unwrap_or_default(),
                }],
            };
            for v in verdicts.iter().filter(|v| !v.ok) {
                info(&format!(
                    "attempt {attempt}: {}: {}: {}",
                    m.name, v.name, v.detail
                ));
            }
            let failed = verdicts.iter().any(|v| !v.ok);
            last.insert(m.name.clone(), verdicts);
            if failed {
                again.push((m, s));
            }
        }
        pending = again;
    }
    for (name, verdicts) in &last {
        for v in verdicts {
            t.check(&format!("fairness: {name}: {}", v.name), v.ok, &v.detail);
        }
    }
    t.check(
        "fairness: no kernel warnings in the scenario boots",
        warnings.is_empty(),
        &warnings.join("\n"),
    );
}

/// The kernel's own KVM and cgroup cpu selftests, without and with vmfair,
/// in a boot of their own (xtask/src/peers.rs).
fn peer_suites(ctx: &Ctx, built: &Built, base: &Path, t: &mut Tally) {
    let all = peers::peers();
    let list: Vec<&peers::Peer> = all.iter().collect();
    match peers::run_boot(ctx, built, base, &list, &["off", "vmfair"], "test-peers") {
        Err(e) => t.check("peers: the boot ran both passes", false, &format!("{e:#}")),
        Ok(p) => {
            let names: Vec<String> = list.iter().map(|x| peers::name_of(x.target)).collect();
            print!("{}", peers::table(&p, &names));
            for (name, ok, detail) in peers::checks(&p, &list) {
                t.check(&name, ok, &detail);
            }
        }
    }
}

/// A guest that panics must fail the run within the timeout and show it.
fn panic_run(ctx: &Ctx, built: &Built, base: &Path, t: &mut Tally) {
    let name = "pipeline: a guest panic fails the run within the timeout and shows the panic";
    let timeout = Duration::from_secs(120);
    let boot = Boot {
        name: "test-panic".into(),
        built,
        base_cpio: base,
        cpus: 1,
        mem_mib: 512,
        plan: vec!["panic".into()],
        files: vec![],
        timeout,
        icount: false,
        silence: Duration::from_secs(60),
    };
    match boot.run(ctx) {
        Err(e) => t.check(name, false, &format!("{e:#}")),
        Ok(out) => {
            let v = out.verdict();
            let ok = out.done.is_none()
                && out.killed.is_none()
                && out.elapsed < timeout
                && v.contains("Kernel panic");
            t.check(name, ok, &v);
        }
    }
}

/// Run a command as one check; its output is the failure detail.
fn command_check(t: &mut Tally, name: &str, cmd: &mut Command) {
    match cmd.output() {
        Ok(o) => {
            let mut detail = String::from_utf8_lossy(&o.stdout).into_owned();
            detail.push_str(&String::from_utf8_lossy(&o.stderr));
            let detail: String = detail.chars().take(3000).collect();
            t.check(name, o.status.success(), &detail);
        }
        Err(e) => t.check(name, false, &format!("cannot run: {e}")),
    }
}

/// rustfmt, clippy and checkpatch.pl.
fn checks(ctx: &Ctx, t: &mut Tally) {
    phase("style checks");
    command_check(
        t,
        "style: cargo fmt --check (host crates)",
        Command::new("cargo")
            .current_dir(&ctx.root)
            .args(["fmt", "--all", "--", "--check"]),
    );
    let kmod: Vec<PathBuf> = std::fs::read_dir(ctx.root.join("rust/vmfair"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "rs"))
                .collect()
        })
        .unwrap_or_default();
    if !kmod.is_empty() {
        command_check(
            t,
            "style: rustfmt --check rust/vmfair (module)",
            Command::new("rustfmt")
                .args(["--check", "--edition", "2021"])
                .args(&kmod),
        );
    }
    command_check(
        t,
        "style: cargo clippy -D warnings (host crates)",
        Command::new("cargo").current_dir(&ctx.root).args([
            "clippy",
            "--workspace",
            "--release",
            "--locked",
            "--quiet",
            "--",
            "-D",
            "warnings",
        ]),
    );
    let patches: Vec<PathBuf> = Inputs::project(ctx)
        .and_then(|i| i.series())
        .unwrap_or_default();
    let cp = ctx.src().join("scripts/checkpatch.pl");
    if !patches.is_empty() && cp.exists() {
        command_check(
            t,
            "style: checkpatch.pl --strict patches/",
            Command::new("perl")
                .arg(&cp)
                .args(["--no-tree", "--terse", "--show-types", "--strict"])
                .args(&patches),
        );
    }
}

pub fn check(ctx: &Ctx) -> Result<u32> {
    let mut t = Tally::default();
    checks(ctx, &mut t);
    println!("{} passed, {} failed", t.passed, t.failed);
    Ok(t.failed)
}

/// The whole suite; returns the number of failed checks.
pub fn run(ctx: &Ctx) -> Result<u32> {
    let t0 = Instant::now();
    let mut t = Tally::default();
    host_tests(ctx, &mut t);
    let tc = toolchain::ensure(ctx);
    t.result("toolchain: packages, Rust source, libclang, bindgen", &tc);
    let inputs = Inputs::project(ctx);
    let built = match (tc, inputs) {
        (Ok(()), Ok(inputs)) => kbuild::kernel(ctx, &inputs),
        (Err(e), _) | (_, Err(e)) => Err(e),
    };
    t.result(
        "kernel: series applies, config checks out, bzImage builds",
        &built,
    );
    let guest_ready = built.as_ref().ok().map(|b| {
        let stage = kbuild::module(ctx, b);
        t.result(
            "module: vmfair.ko builds and installs with depmod data",
            &stage,
        );
        let bins = guest::programs(ctx);
        t.result("guest programs: static vmfair-run builds", &bins);
        match (stage, bins) {
            (Ok(stage), Ok(bins)) => {
                let base = guest::base_initramfs(ctx, b, &stage, &bins);
                t.result("initramfs builds", &base);
                base.ok()
            }
            _ => None,
        }
    });
    if built.is_ok() {
        broken_patch(ctx, &mut t);
        dropped_option(ctx, &mut t);
    }
    checks(ctx, &mut t);
    match (built.as_ref().ok(), guest_ready.flatten()) {
        (Some(b), Some(base)) => {
            guest_boot(ctx, b, &base, &mut t);
            for (name, ok, detail) in realvmm::test(ctx, b, &base) {
                t.check(&name, ok, &detail);
            }
            scenario_smoke(ctx, b, &base, &mut t);
            fairness_scenarios(ctx, b, &base, &mut t);
            peer_suites(ctx, b, &base, &mut t);
            panic_run(ctx, b, &base, &mut t);
        }
        _ => t.check("guest tests", false, "not run: the build failed"),
    }
    println!();
    if !t.failures.is_empty() {
        println!("failures:");
        for f in &t.failures {
            println!("  {}", f.lines().next().unwrap_or(""));
        }
    }
    println!("wall time: {}s", t0.elapsed().as_secs());
    println!("{} passed, {} failed", t.passed, t.failed);
    Ok(t.failed)
}
