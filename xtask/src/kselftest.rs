//! The kernel's own KVM selftest `rseq_test`, built static from the pinned
//! source for `make overhead` (`xtask/src/overhead.rs`).
//!
//! The cache's source tree is a build tree (checked out at whichever
//! series was built last) and must stay clean, so the selftest is built in
//! a scratch copy: `git archive` of the pristine base (`vmfair-base`) for
//! `tools/`, the UAPI headers from `make headers` of the source tree into a
//! scratch object directory (`O=`; the series changes no UAPI header), and
//! the kselftest makefiles with `LDFLAGS=-static`. `rseq_test.c` gets a
//! smaller `NR_TASK_MIGRATIONS` (100000 upstream, 35–55 s a run under TCG).
//! The VFIO helper library (`libvfio`), which `rseq_test` does not use and
//! which wants kernel-internal headers, is left out of the link.

use crate::source;
use crate::util::{self, info, phase, Ctx, KeyHasher};
use anyhow::{bail, Context, Result};
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// Bump when the recipe below changes.
const RECIPE: &str = "vmfair-rseq-test-1";
/// Where `rseq_test.c` sets its iteration count.
const MIGRATIONS_LINE: &str = "#define NR_TASK_MIGRATIONS 100000";

/// `rseq_test.c` with `NR_TASK_MIGRATIONS` set to `migrations`; an error if
/// the define is not where this expects it (the test changed upstream).
pub fn with_migrations(source: &str, migrations: u32) -> Result<String> {
    let n = source
        .lines()
        .filter(|l| l.trim() == MIGRATIONS_LINE)
        .count();
    if n != 1 {
        bail!("rseq_test.c has {n} lines `{MIGRATIONS_LINE}`, expected one");
    }
    Ok(source
        .lines()
        .map(|l| {
            if l.trim() == MIGRATIONS_LINE {
                format!("#define NR_TASK_MIGRATIONS {migrations}")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n")
}

/// Builds (once per base and iteration count) and returns the static
/// `rseq_test`.
pub fn rseq_test(ctx: &Ctx, migrations: u32) -> Result<PathBuf> {
    let src = ctx.src();
    let base = util::output(
        Command::new("git")
            .current_dir(&src)
            .args(["rev-parse", source::base_rev()]),
    )?;
    let mut h = KeyHasher::default();
    h.part("recipe", RECIPE.as_bytes());
    h.part("base", base.trim().as_bytes());
    h.part("migrations", migrations.to_string().as_bytes());
    let dir = ctx.cache.join("kselftest").join(h.finish());
    let bin = dir.join("out/rseq_test");
    if bin.exists() {
        phase(&format!("rseq_test up to date ({})", bin.display()));
        return Ok(bin);
    }
    phase(&format!(
        "rseq_test (static, NR_TASK_MIGRATIONS {migrations})"
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let tree = dir.join("tree");
    std::fs::create_dir_all(&tree)?;
    // tools/ of the pristine base, unpacked into the scratch tree.
    let mut archive = Command::new("git")
        .current_dir(&src)
        .args([
            "archive",
            source::base_rev(),
            "tools",
            "scripts/subarch.include",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .context("git archive failed to start")?;
    let out = archive.stdout.take().context("no stdout")?;
    util::run(
        Command::new("tar")
            .arg("-x")
            .arg("-C")
            .arg(&tree)
            .stdin(out),
    )?;
    if !archive.wait()?.success() {
        bail!("git archive {} tools failed", source::base_rev());
    }
    // UAPI headers, where the kselftest makefiles look for them.
    let hdr = dir.join("headers");
    util::run_logged(
        ctx.kmake(&hdr).arg("headers"),
        &dir.join("headers.log"),
        "make headers",
        None,
    )?;
    util::run(
        Command::new("cp")
            .arg("-a")
            .arg(hdr.join("usr"))
            .arg(tree.join("usr")),
    )?;
    let test_c = tree.join("tools/testing/selftests/kvm/rseq_test.c");
    let text = util::read(&test_c)?;
    util::write(&test_c, with_migrations(&text, migrations)?)?;
    let out_dir = dir.join("out");
    util::run_logged(
        Command::new("make")
            .current_dir(tree.join("tools/testing/selftests/kvm"))
            .arg(format!("OUTPUT={}", out_dir.display()))
            .arg("LIBVFIO_O=")
            .arg("LDLIBS=-ldl")
            .arg(format!("-j{}", ctx.jobs))
            .arg(&bin)
            // The makefiles append -pthread and -no-pie to it.
            .env("LDFLAGS", "-static"),
        &dir.join("build.log"),
        "make rseq_test",
        None,
    )?;
    let file = util::output(Command::new("file").arg("-b").arg(&bin)).unwrap_or_default();
    if !file.contains("statically linked") {
        bail!("{} is not statically linked: {file}", bin.display());
    }
    let _ = std::fs::remove_dir_all(&hdr);
    info(&format!("{}", bin.display()));
    Ok(bin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iteration_count_is_replaced_once() {
        let src = "#include <x>\n#define NR_TASK_MIGRATIONS 100000\nint i;\n";
        let out = with_migrations(src, 5000).unwrap();
        assert_eq!(
            out,
            "#include <x>\n#define NR_TASK_MIGRATIONS 5000\nint i;\n"
        );
        assert!(with_migrations("int i;\n", 5000).is_err());
        let twice = format!("{src}{MIGRATIONS_LINE}\n");
        assert!(with_migrations(&twice, 5000).is_err());
    }
}
