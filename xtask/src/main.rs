//! `cargo xtask`: vmfair's orchestration. The top-level Makefile is a thin
//! front door over these commands.

mod docsync;
mod experiment;
mod fairness;
mod guest;
mod kbuild;
mod kselftest;
mod kunit;
mod overhead;
mod overhead_report;
mod peers;
mod qemu;
mod readers;
mod realvmm;
mod scale;
mod scale_monitor;
mod scenario;
mod selftest;
mod source;
mod stats;
mod stress;
mod svg;
mod toolchain;
mod util;

use anyhow::{bail, Result};
use std::path::{Path, PathBuf};
use util::{info, phase, Ctx};

const USAGE: &str = "usage: cargo xtask <command>
  toolchain          check and install the build toolchain
  source             fetch, verify and extract the kernel source
  source --from-archive  download the pinned package from Debian's archive
  patch              apply patches/series to the source tree
  config             generate and check the kernel config
  kernel             build bzImage (incremental)
  module             build the kernel, then the vmfair module
  initramfs          build everything the guest needs
  boot [STEP…]       boot the guest with a plan (default: info kunit)
  qemu               the real-VMM test alone: vmfair against QEMU -accel kvm in the guest
  scenario FILE…     run scenarios in the guest, write results/<name>.json
  judge FILE…        judge results/<name>.json of scenarios against their entitlement
  test               the full test suite; ends with 'N passed, N failed'
  demo               the main job: the study's sweep and VMs of different sizes, weights and reservations, into results/demo/
  bench [--report]   the full sweep into results/bench/ (--report: redraw from its JSON)
  report [DIR]       redraw DIR's report (default results/demo/), write Documentation/vmfair/results.rst
  overhead [--runs N] [--only V,…] [--no-stock] [--report]
                     what vmfair costs a host, into results/overhead/; last line: worst ratio
  scale [--vms 1,64,…] [--busy K] [--report]  vmfair with 1 to 1024 VMs into results/scale/
  debug-kernel       build the debug kernel (kconfig/debug.config) and the module for it
  stress [--minutes N] [--seed X] [--fail-percent P] [--report]
                     vmfair under concurrent load on the debug kernel; last line: the verdict
  peers [--slow] [--tests T,…] [--timeout S] [--passes off,vmfair] [-v]
                     the kernel's KVM and cgroup cpu selftests without and with vmfair
  check              rustfmt, clippy, checkpatch.pl";

fn main() {
    if let Err(e) = real_main() {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

/// Build everything a boot needs: kernel, module, guest programs, initramfs.
pub fn build_all(ctx: &Ctx) -> Result<(kbuild::Built, PathBuf)> {
    let inputs = kbuild::Inputs::project(ctx)?;
    let built = kbuild::kernel(ctx, &inputs)?;
    let stage = kbuild::module(ctx, &built)?;
    let bins = guest::programs(ctx)?;
    let base = guest::base_initramfs(ctx, &built, &stage, &bins)?;
    Ok((built, base))
}

fn real_main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = args.first() else {
        bail!("{USAGE}");
    };
    let rest = &args[1..];
    let ctx = Ctx::new()?;
    // One xtask at a time per cache: the kernel source tree is checked out
    // at the series being built, so a second run would switch it under
    // the first one's make. Held until this process exits.
    let lock = std::fs::File::create(ctx.cache.join(".lock"))?;
    if lock.try_lock().is_err() {
        info(&format!(
            "waiting for another cargo xtask using {}",
            ctx.cache.display()
        ));
        lock.lock()?;
    }
    let t0 = std::time::Instant::now();
    match cmd.as_str() {
        "toolchain" => toolchain::ensure(&ctx)?,
        "source" if rest.first().map(String::as_str) == Some("--from-archive") => {
            source::fetch_from_archive(&ctx)?;
        }
        "source" => source::ensure(&ctx)?,
        "patch" => {
            toolchain::ensure(&ctx)?;
            source::ensure(&ctx)?;
            kbuild::patch(&ctx, &kbuild::Inputs::project(&ctx)?)?
        }
        "config" => {
            toolchain::ensure(&ctx)?;
            source::ensure(&ctx)?;
            let inputs = kbuild::Inputs::project(&ctx)?;
            kbuild::patch(&ctx, &inputs)?;
            let dir = ctx.cache.join("build").join(inputs.key()?);
            kbuild::configure(&ctx, &inputs, &dir)?;
        }
        "kernel" => {
            let b = kbuild::kernel(&ctx, &kbuild::Inputs::project(&ctx)?)?;
            info(&format!("{} ({})", b.bzimage.display(), b.release));
        }
        "module" => {
            let b = kbuild::kernel(&ctx, &kbuild::Inputs::project(&ctx)?)?;
            kbuild::module(&ctx, &b)?;
        }
        "initramfs" => {
            let (_, base) = build_all(&ctx)?;
            info(&format!("{}", base.display()));
        }
        "boot" => {
            let (built, base) = build_all(&ctx)?;
            let plan: Vec<String> = if rest.is_empty() {
                vec!["info".into(), "kunit".into(), "dmesg".into()]
            } else {
                rest.iter().map(|s| s.replace(':', " ")).collect()
            };
            let out = qemu::Boot {
                name: "boot".into(),
                built: &built,
                base_cpio: &base,
                cpus: 2,
                mem_mib: 2048,
                plan,
                files: vec![],
                timeout: std::time::Duration::from_secs(300),
                icount: false,
                silence: std::time::Duration::from_secs(120),
            }
            .run(&ctx)?;
            for b in &out.blocks {
                println!("--- {} {} rc={:?}", b.kind, b.name, b.rc);
                if b.kind != "dmesg" && b.kind != "kunit" {
                    print!("{}", b.payload);
                }
            }
            println!("{}", out.verdict());
            if !out.ok() {
                bail!("the guest run failed");
            }
        }
        "qemu" => {
            let (built, base) = build_all(&ctx)?;
            let checks = realvmm::test(&ctx, &built, &base);
            let failed = checks.iter().filter(|c| !c.1).count();
            for (name, ok, detail) in &checks {
                if *ok {
                    println!("ok     {name}");
                } else {
                    println!("FAILED {name}: {detail}");
                }
            }
            println!("{} passed, {failed} failed", checks.len() - failed);
            if failed > 0 {
                bail!("{failed} real-VMM check(s) failed");
            }
        }
        "scenario" => {
            let files: Vec<PathBuf> = rest.iter().map(PathBuf::from).collect();
            scenario::cmd(&ctx, &files)?
        }
        "judge" => {
            let files: Vec<PathBuf> = rest.iter().map(PathBuf::from).collect();
            fairness::cmd(&ctx, &files)?
        }
        "test" => {
            let failed = selftest::run(&ctx)?;
            if failed > 0 {
                std::process::exit(1);
            }
        }
        "demo" => demo(&ctx)?,
        "bench" => experiment::cmd(&ctx, rest)?,
        "report" => {
            experiment::results_doc(&ctx, rest.first().map(Path::new))?;
        }
        "overhead" => {
            // The worst ratio is the last line printed.
            let last = overhead::cmd(&ctx, rest)?;
            phase(&format!("{cmd} finished in {}s", t0.elapsed().as_secs()));
            println!("{last}");
            return Ok(());
        }
        // Exits here: the summary must stay the last line.
        "scale" => std::process::exit(scale::cmd(&ctx, rest)?),
        "debug-kernel" => {
            let (b, _) = stress::build(&ctx)?;
            info(&format!("{} ({})", b.bzimage.display(), b.release));
        }
        // Exits here: the verdict must stay the last line.
        "stress" => std::process::exit(stress::cmd(&ctx, rest)?),
        "peers" => {
            let failed = peers::cmd(&ctx, rest)?;
            phase(&format!("{cmd} finished in {}s", t0.elapsed().as_secs()));
            std::process::exit(i32::from(failed > 0));
        }
        "check" => {
            let failed = selftest::check(&ctx)?;
            if failed > 0 {
                bail!("{failed} check(s) failed");
            }
        }
        "-h" | "--help" | "help" => println!("{USAGE}"),
        other => bail!("unknown command `{other}`\n{USAGE}"),
    }
    phase(&format!("{cmd} finished in {}s", t0.elapsed().as_secs()));
    Ok(())
}

/// The main job: the short version of the study's experiment
/// (`qemu-test/experiments/demo.toml`) into `results/demo/`.
fn demo(ctx: &Ctx) -> Result<()> {
    // The short version of the study's sweep (xtask/src/experiment/).
    let file = ctx.root.join("qemu-test/experiments/demo.toml");
    let out: &Path = &experiment::run(ctx, &file, false)?;
    info(&format!("results in {}", out.display()));
    Ok(())
}
