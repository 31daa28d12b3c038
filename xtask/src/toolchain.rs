//! Toolchain step: check what building a Rust-enabled 7.3 kernel and
//! booting it needs, install what is missing, and otherwise fail with one
//! sentence naming the missing piece.

use crate::util::{self, info, phase, Ctx, BINDGEN_VERSION, LIBCLANG_PATH};
use anyhow::{bail, Context, Result};
use std::path::Path;
use std::process::Command;

/// Debian packages by name, with what each is for.
pub const DEB_PACKAGES: &[(&str, &str)] = &[
    (
        "rustc-web",
        "rustc 1.96 at /usr/bin/rustc for the kernel's Rust",
    ),
    (
        "rust-web-src",
        "the Rust standard library source the kernel builds `core` from",
    ),
    ("libclang1-22", "libclang for bindgen (clang 14 is too old)"),
    ("build-essential", "gcc and make"),
    ("flex", "kconfig lexer"),
    ("bison", "kconfig parser"),
    ("bc", "kernel build arithmetic"),
    ("libelf-dev", "objtool"),
    ("libssl-dev", "certificate tools"),
    ("cpio", "initramfs archives"),
    ("dwarves", "pahole"),
    ("zstd", "compression"),
    ("xz-utils", "the kernel source tarball"),
    ("kmod", "depmod for /lib/modules data"),
    ("git", "the kernel source tree and patch application"),
    ("python3", "kunit.py parse"),
    (
        "qemu-system-x86",
        "QEMU 7.2 with TCG to boot the test kernel",
    ),
    ("busybox-static", "the guest's userland"),
    (
        "seabios",
        "bios-256k.bin for the QEMU inside the guest (real-VMM test)",
    ),
    (
        "qemu-system-data",
        "multiboot and VAPIC option ROMs for the QEMU inside the guest",
    ),
    ("binutils", "as and ld for the real-VMM test's payload"),
];

fn installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        .unwrap_or(false)
}

fn is_root() -> bool {
    // Effective uid from /proc, so no libc dependency is needed.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// Set once the toolchain checked out in this process.
static CHECKED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Check and install everything; idempotent, and done once per process.
pub fn ensure(ctx: &Ctx) -> Result<()> {
    if CHECKED.load(std::sync::atomic::Ordering::Relaxed) {
        return Ok(());
    }
    phase("toolchain");
    let missing: Vec<&str> = DEB_PACKAGES
        .iter()
        .map(|(p, _)| *p)
        .filter(|p| !installed(p))
        .collect();
    if !missing.is_empty() {
        if !is_root() {
            bail!(
                "Debian packages {} are missing and installing them needs root: run `sudo apt-get install {}`",
                missing.join(", "),
                missing.join(" ")
            );
        }
        info(&format!(
            "installing Debian packages: {}",
            missing.join(" ")
        ));
        util::run(
            Command::new("apt-get")
                .arg("update")
                .arg("-q")
                .stdout(std::process::Stdio::null()),
        )
        .context("apt-get update failed")?;
        let st = Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(std::process::Stdio::null())
            .status()?;
        if !st.success() {
            let still: Vec<&str> = missing.iter().copied().filter(|p| !installed(p)).collect();
            bail!("apt-get could not install {}", still.join(", "));
        }
    }
    for (path, why) in [
        ("/usr/bin/rustc", "Debian's rustc (package rustc-web)"),
        ("/usr/bin/rustdoc", "Debian's rustdoc (package rustc-web)"),
        (
            "/usr/lib/rustlib/src/rust/library/core",
            "the Rust library source (package rust-web-src)",
        ),
        (LIBCLANG_PATH, "libclang 22 (package libclang1-22)"),
        ("/bin/busybox", "a static busybox (package busybox-static)"),
        (
            "/usr/bin/qemu-system-x86_64",
            "QEMU (package qemu-system-x86)",
        ),
    ] {
        if !Path::new(path).exists() {
            bail!("{why} is missing: {path} does not exist");
        }
    }
    ensure_bindgen(ctx)?;
    info("toolchain complete");
    CHECKED.store(true, std::sync::atomic::Ordering::Relaxed);
    Ok(())
}

fn bindgen_ok(ctx: &Ctx) -> bool {
    Command::new(ctx.bindgen())
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains(BINDGEN_VERSION))
        .unwrap_or(false)
}

fn ensure_bindgen(ctx: &Ctx) -> Result<()> {
    if bindgen_ok(ctx) {
        return Ok(());
    }
    if !util::have("cargo") {
        bail!("cargo is not on PATH, so bindgen-cli {BINDGEN_VERSION} cannot be installed");
    }
    info(&format!(
        "installing bindgen-cli {BINDGEN_VERSION} into {} (cargo install --locked, ~3 min)",
        ctx.cache.join("tools").display()
    ));
    let log = ctx.cache.join("bindgen-install.log");
    util::run_logged(
        Command::new("cargo")
            .args(["install", "--locked", "--force"])
            .arg(format!("bindgen-cli@{BINDGEN_VERSION}"))
            .arg("--root")
            .arg(ctx.cache.join("tools")),
        &log,
        "cargo install bindgen-cli",
        Some(120),
    )?;
    if !bindgen_ok(ctx) {
        bail!(
            "bindgen-cli {BINDGEN_VERSION} was installed but {} does not report that version",
            ctx.bindgen().display()
        );
    }
    Ok(())
}

/// `make rustavailable` in the kernel tree: the kernel's own verdict.
pub fn rust_available(ctx: &Ctx, build: &Path) -> Result<()> {
    let out = ctx
        .kmake(build)
        .arg("rustavailable")
        .output()
        .context("cannot run make rustavailable")?;
    if !out.status.success() {
        bail!(
            "the kernel says Rust is not available with this toolchain: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}
