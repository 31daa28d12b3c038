//! The kernel's own selftests, built static from the pinned source: the
//! KVM selftests and the cgroup selftests, for `make overhead` (`rseq_test`,
//! `xtask/src/overhead.rs`) and for the peer suites of `make test`
//! (`xtask/src/peers.rs`, Documentation/vmfair/peer-suites.rst).
//!
//! The cache's source tree is a build tree (checked out at whichever
//! series was built last) and must stay clean, so the selftests are built in
//! a scratch copy: `git archive` of the pristine base (`vmfair-base`) for
//! `tools/`, the UAPI headers from `make headers` of the source tree into a
//! scratch object directory (`O=`; the series changes no UAPI header), and
//! the kselftest makefiles with `LDFLAGS=-static`, one target at a time as
//! asked for. One scratch tree serves every request with the same source
//! edits (a smaller `NR_TASK_MIGRATIONS` in `rseq_test.c`: 100000 upstream,
//! 35–55 s a run under TCG): a second request builds only the targets the
//! first did not. The VFIO helper library (`libvfio`), which wants
//! kernel-internal headers and which no test built here uses, is left out
//! of the link (so `irq_test`, which needs it, cannot be built).
//! Binaries are stripped of their debug information: each one goes into an
//! initramfs, and a static KVM selftest is ~1.8 MB with it, ~1 MB without.

use crate::source;
use crate::util::{self, info, phase, Ctx, KeyHasher};
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Bump when the recipe below changes.
const RECIPE: &str = "vmfair-kselftest-2";
/// Where `rseq_test.c` sets its iteration count.
const MIGRATIONS_LINE: &str = "#define NR_TASK_MIGRATIONS 100000";
const RSEQ_C: &str = "tools/testing/selftests/kvm/rseq_test.c";

/// A kselftest directory under `tools/testing/selftests`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Suite {
    Kvm,
    Cgroup,
}

impl Suite {
    pub fn dir(self) -> &'static str {
        match self {
            Suite::Kvm => "kvm",
            Suite::Cgroup => "cgroup",
        }
    }

    /// Extra `make` variables of the suite.
    fn make_vars(self) -> &'static [&'static str] {
        match self {
            // No libvfio; the static link needs libdl spelled out.
            Suite::Kvm => &["LIBVFIO_O=", "LDLIBS=-ldl"],
            Suite::Cgroup => &[],
        }
    }
}

/// Lines of a source file replaced by another one.
#[derive(Clone, Debug)]
pub struct Edit {
    /// Path in the kernel tree.
    pub file: &'static str,
    pub from: String,
    pub to: String,
    /// How many lines are `from` (an error otherwise: the file changed
    /// upstream); each of them is replaced.
    pub lines: usize,
}

/// The `rseq_test.c` edit for `migrations` iterations.
pub fn rseq_migrations(migrations: u32) -> Edit {
    Edit {
        file: RSEQ_C,
        from: MIGRATIONS_LINE.into(),
        to: format!("#define NR_TASK_MIGRATIONS {migrations}"),
        lines: 1,
    }
}

/// A `#define NAME VALUE` of `file` (upstream `upstream`) set to `value`.
pub fn define(file: &'static str, name: &str, upstream: u32, value: u32) -> Edit {
    Edit {
        file,
        from: format!("#define {name} {upstream}"),
        to: format!("#define {name} {value}"),
        lines: 1,
    }
}

/// `source` with the one line that is `from` (up to the blanks between
/// words) replaced by `to`; an error unless exactly one line matches (the file
/// changed upstream).
#[cfg(test)]
fn replace_line(source: &str, from: &str, to: &str) -> Result<String> {
    replace_lines(source, from, to, 1)
}

/// `source` with each of the `n` lines that are `from` (up to the blanks
/// between words) replaced by `to`; an error unless exactly `n` match.
pub fn replace_lines(source: &str, from: &str, to: &str, n: usize) -> Result<String> {
    let is_from = |l: &str| l.split_whitespace().eq(from.split_whitespace());
    let found = source.lines().filter(|l| is_from(l)).count();
    if found != n {
        bail!("{found} lines `{from}`, expected {n}");
    }
    Ok(source
        .lines()
        .map(|l| if is_from(l) { to } else { l })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n")
}

/// `rseq_test.c` with `NR_TASK_MIGRATIONS` set to `migrations`.
#[cfg(test)]
fn with_migrations(source: &str, migrations: u32) -> Result<String> {
    let e = rseq_migrations(migrations);
    replace_line(source, &e.from, &e.to).context("rseq_test.c")
}

/// Builds the `targets` (suite, target path inside the suite's directory,
/// such as `x86/cpuid_test`) with the source `edits` applied, once per base
/// and edits; returns target → static binary.
pub fn build(
    ctx: &Ctx,
    targets: &[(Suite, &str)],
    edits: &[Edit],
) -> Result<BTreeMap<String, PathBuf>> {
    let src = ctx.src();
    let base = util::output(
        Command::new("git")
            .current_dir(&src)
            .args(["rev-parse", source::base_rev()]),
    )?;
    let mut h = KeyHasher::default();
    h.part("recipe", RECIPE.as_bytes());
    h.part("base", base.trim().as_bytes());
    for e in edits {
        h.part(
            "edit",
            format!("{}\n{}\n{}\n{}", e.file, e.from, e.to, e.lines).as_bytes(),
        );
    }
    let dir = ctx.cache.join("kselftest").join(h.finish());
    let bin_of = |s: Suite, t: &str| dir.join("out").join(s.dir()).join(t);
    let mut missing: BTreeMap<Suite, Vec<&str>> = BTreeMap::new();
    for &(s, t) in targets {
        if !bin_of(s, t).exists() {
            missing.entry(s).or_default().push(t);
        }
    }
    if missing.is_empty() {
        phase(&format!(
            "kselftests up to date ({} in {})",
            targets.len(),
            dir.display()
        ));
    } else {
        let n: usize = missing.values().map(Vec::len).sum();
        phase(&format!(
            "kselftests: {n} of {} to build (static)",
            targets.len()
        ));
        let tree = dir.join("tree");
        if !dir.join("tree.done").exists() {
            scratch_tree(ctx, &dir, &tree, edits)?;
        }
        for (suite, list) in &missing {
            make_targets(ctx, &dir, &tree, *suite, list)?;
        }
    }
    let mut out = BTreeMap::new();
    for &(s, t) in targets {
        out.insert(t.to_string(), bin_of(s, t));
    }
    Ok(out)
}

/// The scratch tree: `tools/` of the base, UAPI headers, the edits.
fn scratch_tree(ctx: &Ctx, dir: &Path, tree: &Path, edits: &[Edit]) -> Result<()> {
    let src = ctx.src();
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(tree)?;
    info("git archive tools/ of the base, make headers");
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
    util::run(Command::new("tar").arg("-x").arg("-C").arg(tree).stdin(out))?;
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
    let _ = std::fs::remove_dir_all(&hdr);
    for e in edits {
        let path = tree.join(e.file);
        let text = util::read(&path)?;
        let new =
            replace_lines(&text, &e.from, &e.to, e.lines).with_context(|| e.file.to_string())?;
        util::write(&path, new)?;
    }
    util::write(&dir.join("tree.done"), "")?;
    Ok(())
}

/// `make` the `targets` of one suite, check that they are static, strip them.
fn make_targets(ctx: &Ctx, dir: &Path, tree: &Path, suite: Suite, targets: &[&str]) -> Result<()> {
    let out_dir = dir.join("out").join(suite.dir());
    std::fs::create_dir_all(&out_dir)?;
    let bins: Vec<PathBuf> = targets.iter().map(|t| out_dir.join(t)).collect();
    info(&format!("make {}: {}", suite.dir(), targets.join(" ")));
    util::run_logged(
        Command::new("make")
            .current_dir(tree.join("tools/testing/selftests").join(suite.dir()))
            .arg(format!("OUTPUT={}", out_dir.display()))
            .args(suite.make_vars())
            .arg(format!("-j{}", ctx.jobs))
            .args(&bins)
            // The makefiles append -pthread and -no-pie to it.
            .env("LDFLAGS", "-static"),
        &dir.join(format!("build-{}.log", suite.dir())),
        &format!("make {} selftests", suite.dir()),
        None,
    )?;
    for bin in &bins {
        let file = util::output(Command::new("file").arg("-b").arg(bin)).unwrap_or_default();
        if !file.contains("statically linked") {
            bail!("{} is not statically linked: {file}", bin.display());
        }
        util::run(Command::new("strip").arg("--strip-debug").arg(bin))?;
    }
    Ok(())
}

/// Builds (once per base and iteration count) and returns the static
/// `rseq_test`.
pub fn rseq_test(ctx: &Ctx, migrations: u32) -> Result<PathBuf> {
    let mut bins = build(
        ctx,
        &[(Suite::Kvm, "rseq_test")],
        &[rseq_migrations(migrations)],
    )?;
    let bin = bins.remove("rseq_test").context("rseq_test not built")?;
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
        let tabs = "#define NR_ITERATIONS\t\t512\n";
        let e = define("f.c", "NR_ITERATIONS", 512, 16);
        assert_eq!(
            replace_line(tabs, &e.from, &e.to).unwrap(),
            "#define NR_ITERATIONS 16\n"
        );
        let two = "a(x, 10);\nb;\n  a(x,  10);\n";
        assert_eq!(
            replace_lines(two, "a(x, 10);", "a(x, 50);", 2).unwrap(),
            "a(x, 50);\nb;\na(x, 50);\n"
        );
        assert!(replace_lines(two, "a(x, 10);", "a(x, 50);", 1).is_err());
        assert!(replace_lines(two, "a(x, 10);", "a(x, 50);", 3).is_err());
    }
}
