//! Guest side: static test programs from `selftests/` and the initramfs.
//!
//! The initramfs is two `newc` archives concatenated (the kernel unpacks
//! both): a base archive (busybox, `init`, test programs, modules with
//! depmod data) that changes only when they do, and a small per-run archive
//! with the run plan and scenario files.

use crate::kbuild::Built;
use crate::util::{self, info, phase, Ctx};
use anyhow::{bail, Context, Result};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Static guest programs (name, cargo package), installed as `/bin/NAME` in the initramfs
/// (on the `PATH` that `qemu-test/init` sets).
const GUEST_BINS: &[(&str, &str)] = &[("vmfair-run", "vmfair-run"), ("vmfair-top", "vmfair-top")];

/// Build the static guest programs; returns (name, path).
pub fn programs(ctx: &Ctx) -> Result<Vec<(String, PathBuf)>> {
    phase("guest programs (static)");
    let target_dir = ctx.root.join("target/guest");
    let mut out = Vec::new();
    for (name, pkg) in GUEST_BINS {
        util::run(
            Command::new("cargo")
                .current_dir(&ctx.root)
                .args(["build", "--quiet", "--release", "--locked", "-p", pkg])
                .args(["--target", "x86_64-unknown-linux-gnu"])
                .arg("--target-dir")
                .arg(&target_dir)
                .env("RUSTFLAGS", "-C target-feature=+crt-static"),
        )
        .with_context(|| format!("building the guest program {name} failed"))?;
        let bin = target_dir
            .join("x86_64-unknown-linux-gnu/release")
            .join(name);
        let file = util::output(Command::new("file").arg("-b").arg(&bin)).unwrap_or_default();
        if !file.is_empty() && file.contains("dynamically linked") {
            bail!(
                "{} is dynamically linked; the guest has no shared libraries",
                bin.display()
            );
        }
        out.push((name.to_string(), bin));
    }
    Ok(out)
}

/// One entry of a `gen_init_cpio` list.
pub struct Spec(String);

impl Spec {
    pub fn new() -> Self {
        Spec(String::new())
    }
    pub fn dir(&mut self, path: &str) -> &mut Self {
        let _ = writeln!(self.0, "dir {path} 0755 0 0");
        self
    }
    pub fn file(&mut self, path: &str, from: &Path, mode: u32) -> &mut Self {
        let _ = writeln!(self.0, "file {path} {} {mode:o} 0 0", from.display());
        self
    }
    pub fn node(&mut self, path: &str, kind: char, major: u32, minor: u32) -> &mut Self {
        let _ = writeln!(self.0, "nod {path} 0600 0 0 {kind} {major} {minor}");
        self
    }
    pub fn slink(&mut self, path: &str, target: &str) -> &mut Self {
        let _ = writeln!(self.0, "slink {path} {target} 0777 0 0");
        self
    }

    /// Write the archive with the kernel's own `usr/gen_init_cpio` (no
    /// root needed for device nodes).
    pub fn write(&self, b: &Built, list: &Path, out: &Path) -> Result<()> {
        util::write(list, &self.0)?;
        let tool = b.dir.join("usr/gen_init_cpio");
        if !tool.exists() {
            bail!(
                "{} is missing (CONFIG_BLK_DEV_INITRD builds it)",
                tool.display()
            );
        }
        let data = Command::new(&tool)
            .arg(list)
            .output()
            .context("gen_init_cpio failed to start")?;
        if !data.status.success() {
            bail!(
                "gen_init_cpio failed: {}",
                String::from_utf8_lossy(&data.stderr)
            );
        }
        util::write(out, &data.stdout)
    }
}

fn add_tree(spec: &mut Spec, host: &Path, guest: &str) -> Result<()> {
    spec.dir(guest);
    let mut entries: Vec<PathBuf> = std::fs::read_dir(host)?
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    for p in entries {
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        let g = format!("{guest}/{name}");
        let meta = std::fs::symlink_metadata(&p)?;
        if meta.is_dir() {
            add_tree(spec, &p, &g)?;
        } else if meta.file_type().is_symlink() {
            let t = std::fs::read_link(&p)?;
            spec.slink(&g, &t.to_string_lossy());
        } else {
            spec.file(&g, &p, 0o644);
        }
    }
    Ok(())
}

/// Build the base initramfs for a kernel build.
pub fn base_initramfs(
    ctx: &Ctx,
    b: &Built,
    stage: &Path,
    bins: &[(String, PathBuf)],
) -> Result<PathBuf> {
    phase("initramfs");
    let mut s = Spec::new();
    for d in [
        "/dev", "/proc", "/sys", "/tmp", "/run", "/bin", "/sbin", "/etc", "/root", "/lib",
        "/vmfair",
    ] {
        s.dir(d);
    }
    s.node("/dev/console", 'c', 5, 1)
        .node("/dev/null", 'c', 1, 3)
        .node("/dev/ttyS0", 'c', 4, 64)
        .node("/dev/ttyS1", 'c', 4, 65);
    s.file("/bin/busybox", Path::new("/bin/busybox"), 0o755);
    s.file("/init", &ctx.root.join("qemu-test/init"), 0o755);
    for (name, path) in bins {
        s.file(&format!("/bin/{name}"), path, 0o755);
    }
    let mods = stage.join("lib/modules");
    if mods.exists() {
        add_tree(&mut s, &mods, "/lib/modules")?;
    }
    let out = b.dir.join("initramfs-base.cpio");
    s.write(b, &b.dir.join("initramfs-base.list"), &out)?;
    let size = std::fs::metadata(&out)?.len();
    info(&format!("{} ({} KiB)", out.display(), size / 1024));
    Ok(out)
}
