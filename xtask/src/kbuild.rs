//! Patch, config and build steps.
//!
//! Patches: every patch named in `patches/series` is applied in order with
//! `git apply --cached` to a scratch index starting from the pristine base
//! and committed (subject, body and author from the patch via `git
//! mailinfo`); the work tree is then switched to the result with one `git
//! checkout`, which rewrites only the files that differ, so kbuild rebuilds
//! only what the series touches. A hunk that does not apply stops the build
//! naming the patch, and the work tree is left as it was.
//!
//! Build directory: `build/<key>`, key = hash of the series, the config
//! fragments and the kernel version. A new key starts as a copy of the most
//! recently built directory (when there is one), so a changed patch or
//! fragment is an incremental build rather than a cold one.

use crate::source;
use crate::util::{self, info, phase, Ctx, KeyHasher};
use anyhow::{anyhow, bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Bump to invalidate every build directory (changed build recipe).
const RECIPE: &str = "vmfair-kbuild-1";
/// How many build directories to keep.
const KEEP_BUILDS: usize = 3;

/// What to build: the patch directory and the config fragments.
#[derive(Clone, Debug)]
pub struct Inputs {
    pub patches: PathBuf,
    pub fragments: Vec<PathBuf>,
}

impl Inputs {
    /// The project's own series and fragments. `kconfig/debug.config` is
    /// only used when `VMFAIR_DEBUG=1`.
    pub fn project(ctx: &Ctx) -> Result<Self> {
        let debug = std::env::var("VMFAIR_DEBUG")
            .map(|v| v == "1")
            .unwrap_or(false);
        let mut fragments: Vec<PathBuf> = std::fs::read_dir(ctx.root.join("kconfig"))
            .context("cannot read kconfig/")?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("config"))
            .filter(|p| debug || p.file_name().and_then(|n| n.to_str()) != Some("debug.config"))
            .collect();
        fragments.sort();
        Ok(Inputs {
            patches: ctx.root.join("patches"),
            fragments,
        })
    }

    /// Patch files in series order.
    pub fn series(&self) -> Result<Vec<PathBuf>> {
        let series = self.patches.join("series");
        let text = match std::fs::read_to_string(&series) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(anyhow!("cannot read {}: {e}", series.display())),
        };
        let mut out = Vec::new();
        for line in text.lines() {
            let name = line.split('#').next().unwrap_or("").trim();
            if name.is_empty() {
                continue;
            }
            let p = self.patches.join(name);
            if !p.is_file() {
                bail!("{} names {name}, which does not exist", series.display());
            }
            out.push(p);
        }
        Ok(out)
    }

    pub fn series_key(&self) -> Result<String> {
        let mut h = KeyHasher::default();
        for p in self.series()? {
            h.file(&file_name(&p), &p)?;
        }
        Ok(h.finish())
    }

    pub fn key(&self) -> Result<String> {
        let mut h = KeyHasher::default();
        h.part("recipe", RECIPE.as_bytes());
        h.part("series", self.series_key()?.as_bytes());
        for f in &self.fragments {
            h.file(&file_name(f), f)?;
        }
        Ok(h.finish())
    }
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn git(src: &Path) -> Command {
    let mut c = Command::new("git");
    c.current_dir(src).args([
        "-c",
        "user.name=vmfair",
        "-c",
        "user.email=vmfair@localhost",
    ]);
    c
}

/// Build the commit for the series (without touching the work tree) and
/// return its id. Fails naming the first patch that does not apply.
pub fn series_commit(ctx: &Ctx, inputs: &Inputs) -> Result<String> {
    let src = ctx.src();
    let key = inputs.series_key()?;
    let refname = format!("refs/vmfair/series/{key}");
    if let Ok(c) = util::output(git(&src).args(["rev-parse", "--verify", "-q", &refname])) {
        return Ok(c.trim().to_string());
    }
    let index = ctx.cache.join(format!("src/.index-{key}"));
    let _ = std::fs::remove_file(&index);
    let mut parent = util::output(git(&src).args(["rev-parse", source::base_rev()]))?
        .trim()
        .to_string();
    util::run(
        git(&src)
            .env("GIT_INDEX_FILE", &index)
            .args(["read-tree", &parent]),
    )?;
    let scratch = ctx.cache.join("src/.mailinfo");
    std::fs::create_dir_all(&scratch)?;
    for p in inputs.series()? {
        let name = file_name(&p);
        let out = git(&src)
            .env("GIT_INDEX_FILE", &index)
            .args(["apply", "--cached", "--whitespace=nowarn"])
            .arg(&p)
            .output()?;
        if !out.status.success() {
            let _ = std::fs::remove_file(&index);
            bail!(
                "patch {name} does not apply to Linux {}:\n{}",
                util::KERNEL_VERSION,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let tree = util::output(git(&src).env("GIT_INDEX_FILE", &index).arg("write-tree"))?;
        let (msgf, patchf) = (scratch.join("msg"), scratch.join("patch"));
        let o = git(&src)
            .arg("mailinfo")
            .arg(&msgf)
            .arg(&patchf)
            .stdin(std::fs::File::open(&p)?)
            .output()?;
        if !o.status.success() {
            bail!("git mailinfo cannot read patch {name}");
        }
        let header = String::from_utf8_lossy(&o.stdout).into_owned();
        let field = |k: &str| {
            header
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{k}: ")))
                .map(str::to_string)
        };
        let subject = field("Subject").unwrap_or_else(|| name.clone());
        let body = std::fs::read_to_string(&msgf).unwrap_or_default();
        let message = if body.trim().is_empty() {
            subject
        } else {
            format!("{subject}\n\n{body}")
        };
        let mut ct = git(&src);
        ct.args(["commit-tree", tree.trim(), "-p", &parent, "-F", "-"]);
        if let (Some(a), Some(e)) = (field("Author"), field("Email")) {
            ct.env("GIT_AUTHOR_NAME", a).env("GIT_AUTHOR_EMAIL", e);
        }
        if let Some(d) = field("Date") {
            ct.env("GIT_AUTHOR_DATE", d);
        }
        let mut child = ct
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()?;
        {
            use std::io::Write;
            child
                .stdin
                .take()
                .context("no stdin")?
                .write_all(message.as_bytes())?;
        }
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!("git commit-tree failed for {name}");
        }
        parent = String::from_utf8_lossy(&out.stdout).trim().to_string();
        info(&format!("applied {name}"));
    }
    let _ = std::fs::remove_file(&index);
    util::run(git(&src).args(["update-ref", &refname, &parent]))?;
    Ok(parent)
}

/// Apply the series and check the work tree out at it.
pub fn patch(ctx: &Ctx, inputs: &Inputs) -> Result<()> {
    phase(&format!("patches ({} in series)", inputs.series()?.len()));
    let commit = series_commit(ctx, inputs)?;
    let src = ctx.src();
    let head = util::output(git(&src).args(["rev-parse", "HEAD"]))?;
    if head.trim() != commit {
        util::run(git(&src).args(["checkout", "-q", "-f", "--detach", &commit]))?;
    }
    // A kernel tree used with O= must be clean.
    let dirty = util::output(git(&src).args(["status", "--porcelain", "--untracked-files=no"]))?;
    if !dirty.trim().is_empty() {
        util::run(git(&src).args(["checkout", "-q", "-f", "--detach", &commit]))?;
    }
    info(&format!("source at {} ({})", &commit[..12], src.display()));
    Ok(())
}

/// A requested option and its wanted value (`None`: "is not set").
#[derive(Debug, PartialEq)]
pub struct Want {
    pub name: String,
    pub value: Option<String>,
    pub from: String,
}

/// Parse `CONFIG_X=v` and `# CONFIG_X is not set` lines of fragments.
pub fn parse_fragment(text: &str, from: &str) -> Vec<Want> {
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("# CONFIG_") {
            if let Some(name) = rest.strip_suffix(" is not set") {
                out.push(Want {
                    name: format!("CONFIG_{name}"),
                    value: None,
                    from: from.to_string(),
                });
            }
        } else if line.starts_with("CONFIG_") {
            if let Some((n, v)) = line.split_once('=') {
                out.push(Want {
                    name: n.to_string(),
                    value: Some(v.to_string()),
                    from: from.to_string(),
                });
            }
        }
    }
    out
}

/// Check every requested option against the final `.config`.
pub fn check_config(config: &str, wants: &[Want]) -> Vec<String> {
    let mut have = std::collections::HashMap::new();
    for line in config.lines() {
        if let Some((n, v)) = line.split_once('=') {
            if n.starts_with("CONFIG_") {
                have.insert(n, v);
            }
        }
    }
    let mut errors = Vec::new();
    for w in wants {
        let got = have.get(w.name.as_str()).copied();
        let ok = match (&w.value, got) {
            (None, None) => true,
            (None, Some("n")) => true,
            (None, Some(_)) => false,
            (Some(v), Some(g)) => v == g,
            (Some(v), None) => v == "n",
        };
        if !ok {
            let want = w
                .value
                .as_ref()
                .map(|v| format!("{}={v}", w.name))
                .unwrap_or_else(|| format!("{} unset", w.name));
            let now = got
                .map(|g| format!("{}={g}", w.name))
                .unwrap_or_else(|| "is not set".into());
            errors.push(format!(
                "{want} (from {}) did not survive olddefconfig: now {now}",
                w.from
            ));
        }
    }
    errors
}

/// Generate `.config` in `build`: tinyconfig + fragments, then check.
pub fn configure(ctx: &Ctx, inputs: &Inputs, build: &Path) -> Result<()> {
    phase("config");
    std::fs::create_dir_all(build)?;
    let quiet = |c: &mut Command| -> Result<()> {
        let out = c.output()?;
        if !out.status.success() {
            bail!(
                "{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    };
    crate::toolchain::rust_available(ctx, build)?;
    quiet(ctx.kmake(build).arg("tinyconfig")).context("make tinyconfig failed")?;
    let mut merge = Command::new(ctx.src().join("scripts/kconfig/merge_config.sh"));
    merge
        .current_dir(ctx.src())
        .arg("-m")
        .arg("-O")
        .arg(build)
        .arg(build.join(".config"))
        .args(&inputs.fragments);
    quiet(&mut merge).context("merge_config.sh failed")?;
    quiet(ctx.kmake(build).arg("olddefconfig")).context("make olddefconfig failed")?;
    let config = util::read(&build.join(".config"))?;
    let mut wants = Vec::new();
    for f in &inputs.fragments {
        let name = format!("kconfig/{}", file_name(f));
        wants.extend(parse_fragment(&util::read(f)?, &name));
    }
    let errors = check_config(&config, &wants);
    if !errors.is_empty() {
        for e in &errors {
            eprintln!("    error: {e}");
        }
        bail!("config step failed: {}", errors.join("; "));
    }
    info(&format!(
        "{} requested options from {} fragments all present",
        wants.len(),
        inputs.fragments.len()
    ));
    Ok(())
}

/// Paths of a finished build.
#[derive(Clone, Debug)]
pub struct Built {
    pub dir: PathBuf,
    pub bzimage: PathBuf,
    pub release: String,
}

fn seed_from_latest(ctx: &Ctx, dir: &Path) -> Result<()> {
    let builds = ctx.cache.join("build");
    let mut done: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(&builds)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p != dir && p.join(".vmfair-built").exists())
        .filter_map(|p| {
            let t = std::fs::metadata(p.join(".vmfair-built"))
                .ok()?
                .modified()
                .ok()?;
            Some((t, p))
        })
        .collect();
    done.sort();
    if let Some((_, latest)) = done.last() {
        info(&format!(
            "seeding from {} for an incremental build",
            latest.display()
        ));
        let tmp = dir.with_extension("seed");
        let _ = std::fs::remove_dir_all(&tmp);
        util::run(
            Command::new("cp")
                .arg("-a")
                .arg("--reflink=auto")
                .arg(latest)
                .arg(&tmp),
        )?;
        let _ = std::fs::remove_file(tmp.join(".vmfair-built"));
        std::fs::rename(&tmp, dir)?;
    }
    // Keep the newest few.
    while done.len() >= KEEP_BUILDS {
        let (_, old) = done.remove(0);
        info(&format!("pruning old build {}", old.display()));
        let _ = std::fs::remove_dir_all(old);
    }
    Ok(())
}

/// Patch, configure and build bzImage + modules (incremental).
pub fn kernel(ctx: &Ctx, inputs: &Inputs) -> Result<Built> {
    crate::toolchain::ensure(ctx)?;
    source::ensure(ctx)?;
    patch(ctx, inputs)?;
    let key = inputs.key()?;
    let dir = ctx.cache.join("build").join(&key);
    std::fs::create_dir_all(ctx.cache.join("build"))?;
    if !dir.exists() {
        seed_from_latest(ctx, &dir)?;
    }
    let built = Built {
        bzimage: dir.join("arch/x86/boot/bzImage"),
        release: String::new(),
        dir: dir.clone(),
    };
    let stamp = dir.join(".vmfair-built");
    // The series commit is checked out; a stamp means this exact key built.
    if stamp.exists() && built.bzimage.exists() && built_from_head(ctx, &dir)? {
        phase(&format!("kernel up to date (build/{key})"));
        return finish(built);
    }
    configure(ctx, inputs, &dir)?;
    phase(&format!("kernel build (build/{key}, -j{})", ctx.jobs));
    let est = std::fs::read_to_string(ctx.cache.join("build/.lines"))
        .ok()
        .and_then(|s| s.trim().parse().ok());
    let lines = util::run_logged(
        ctx.kmake(&dir)
            .arg(format!("-j{}", ctx.jobs))
            .arg("bzImage")
            .arg("modules"),
        &dir.join("build.log"),
        "make bzImage modules",
        est,
    )?;
    if lines > 200 {
        util::write(&ctx.cache.join("build/.lines"), lines.to_string())?;
    }
    util::write(&stamp, &key)?;
    record_head(ctx, &built)?;
    finish(built)
}

/// Was this build directory last built from the commit the tree is at?
/// (`make -q` is not reliable for kbuild; another key's checkout in
/// between changes mtimes, and then make must run.)
fn built_from_head(ctx: &Ctx, dir: &Path) -> Result<bool> {
    let head = util::output(git(&ctx.src()).args(["rev-parse", "HEAD"]))?;
    let recorded = std::fs::read_to_string(dir.join(".vmfair-head")).unwrap_or_default();
    Ok(head.trim() == recorded.trim())
}

fn finish(mut b: Built) -> Result<Built> {
    b.release = util::read(&b.dir.join("include/config/kernel.release"))?
        .trim()
        .to_string();
    Ok(b)
}

/// Record the source commit a build directory was built from.
pub fn record_head(ctx: &Ctx, b: &Built) -> Result<()> {
    let head = util::output(git(&ctx.src()).args(["rev-parse", "HEAD"]))?;
    util::write(&b.dir.join(".vmfair-head"), head.trim())
}

/// Build the out-of-tree module from `rust/vmfair/` and install it with
/// depmod data into `<build>/stage/lib/modules/<release>/`.
pub fn module(ctx: &Ctx, b: &Built) -> Result<PathBuf> {
    phase("vmfair module");
    let msrc = ctx.root.join("rust/vmfair");
    let mdir = b.dir.join("vmfair-module");
    std::fs::create_dir_all(&mdir)?;
    // Copy sources (not host/), only when changed, to keep builds incremental.
    let mut wanted = std::collections::HashSet::new();
    for e in std::fs::read_dir(&msrc)?.flatten() {
        let p = e.path();
        let name = file_name(&p);
        if p.is_file()
            && (name == "Kbuild"
                || name == "Makefile"
                || name.ends_with(".rs")
                || name.ends_with(".c")
                || name.ends_with(".h"))
        {
            let dst = mdir.join(&name);
            let new = std::fs::read(&p)?;
            if std::fs::read(&dst).ok().as_deref() != Some(&new[..]) {
                std::fs::write(&dst, &new)?;
            }
            wanted.insert(name);
        }
    }
    if !wanted.contains("Kbuild") {
        bail!("rust/vmfair/Kbuild is missing");
    }
    for e in std::fs::read_dir(&mdir)?.flatten() {
        let name = file_name(&e.path());
        if name.ends_with(".rs") && !wanted.contains(&name) {
            std::fs::remove_file(e.path())?;
        }
    }
    util::run_logged(
        ctx.kmake(&b.dir)
            .arg(format!("M={}", mdir.display()))
            .arg(format!("-j{}", ctx.jobs))
            .arg("modules"),
        &b.dir.join("module.log"),
        "make M=rust/vmfair modules",
        None,
    )?;
    let stage = b.dir.join("stage");
    let _ = std::fs::remove_dir_all(&stage);
    std::fs::create_dir_all(&stage)?;
    util::run_logged(
        ctx.kmake(&b.dir)
            .arg(format!("M={}", mdir.display()))
            .arg(format!("INSTALL_MOD_PATH={}", stage.display()))
            .arg("DEPMOD=true")
            .arg("modules_install"),
        &b.dir.join("module-install.log"),
        "modules_install",
        None,
    )?;
    let moddir = stage.join("lib/modules").join(&b.release);
    // depmod wants the kernel's own lists too (modprobe of a built-in
    // module such as kvm_amd succeeds through modules.builtin).
    for f in [
        "modules.order",
        "modules.builtin",
        "modules.builtin.modinfo",
    ] {
        let from = b.dir.join(f);
        if from.exists() {
            std::fs::copy(&from, moddir.join(f))?;
        } else {
            util::write(&moddir.join(f), "")?;
        }
    }
    util::run(
        Command::new("/sbin/depmod")
            .arg("-b")
            .arg(&stage)
            .arg(&b.release),
    )?;
    let dep = util::read(&moddir.join("modules.dep"))?;
    if !dep.contains("vmfair.ko") {
        bail!(
            "modules.dep in {} does not list vmfair.ko",
            moddir.display()
        );
    }
    info(&format!("installed under {}", moddir.display()));
    Ok(stage)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fragment_lines_are_parsed() {
        let w = parse_fragment(
            "# c\nCONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=250\n",
            "f",
        );
        assert_eq!(w.len(), 3);
        assert_eq!(w[0].value.as_deref(), Some("y"));
        assert_eq!(w[1].name, "CONFIG_B");
        assert_eq!(w[1].value, None);
    }

    #[test]
    fn dropped_option_is_named() {
        let wants = parse_fragment(
            "CONFIG_A=y\nCONFIG_B=y\n# CONFIG_C is not set\n",
            "kconfig/x.config",
        );
        let errs = check_config("CONFIG_A=y\nCONFIG_C=y\n", &wants);
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(errs[0].contains("CONFIG_B=y") && errs[0].contains("kconfig/x.config"));
        assert!(errs[1].contains("CONFIG_C unset"));
    }

    #[test]
    fn satisfied_config_has_no_errors() {
        let wants = parse_fragment("CONFIG_A=y\n# CONFIG_B is not set\n", "f");
        assert!(check_config("CONFIG_A=y\n# CONFIG_B is not set\n", &wants).is_empty());
    }
}
