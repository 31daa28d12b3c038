//! Kernel source step: find the pinned `linux-source-7.3` package, verify
//! it, extract it once into the cache and make it a git tree whose first
//! commit (tag `vmfair-base`) is the pristine source.
//!
//! Where the package comes from, in order: `$VMFAIR_KERNEL_DEB`, the
//! pinned copy in `../shared/kernel/`, a copy already downloaded into the
//! cache, and last Debian's archive through a private apt configuration
//! derived from this system's own apt sources (the system's sources are
//! never edited, and no host name is written into the project).

use crate::util::{self, info, phase, Ctx, DEB_PACKAGE, DEB_SHA256, DEB_SUITE, DEB_VERSION};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

const BASE_TAG: &str = "vmfair-base";

/// Make sure `ctx.src()` holds the pristine tree as a git repository.
pub fn ensure(ctx: &Ctx) -> Result<()> {
    let src = ctx.src();
    let stamp = ctx.cache.join("src/.extracted");
    if stamp.exists() && src.join(".git").exists() {
        return Ok(());
    }
    phase("kernel source");
    let deb = locate_deb(ctx)?;
    verify(&deb)?;
    if src.exists() {
        info(&format!("removing incomplete tree {}", src.display()));
        std::fs::remove_dir_all(&src)?;
    }
    let tmp = ctx.cache.join("src/.extract-tmp");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)?;
    }
    std::fs::create_dir_all(&tmp)?;
    info("extracting the package (~30 s)");
    util::run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&tmp))?;
    let tarball = tmp.join(format!("usr/src/{DEB_PACKAGE}.tar.xz"));
    if !tarball.exists() {
        bail!(
            "{} does not contain usr/src/{DEB_PACKAGE}.tar.xz",
            deb.display()
        );
    }
    util::run(
        Command::new("tar")
            .arg("-xf")
            .arg(&tarball)
            .arg("-C")
            .arg(&tmp)
            .env("XZ_OPT", "-T0"),
    )?;
    std::fs::rename(tmp.join(DEB_PACKAGE), &src)
        .with_context(|| format!("cannot move the extracted tree to {}", src.display()))?;
    std::fs::remove_dir_all(&tmp)?;
    info("making it a git tree (~1 min)");
    let git = |args: &[&str]| -> Result<()> {
        util::run(
            Command::new("git")
                .current_dir(&src)
                .args([
                    "-c",
                    "user.name=vmfair",
                    "-c",
                    "user.email=vmfair@localhost",
                ])
                .args(args),
        )
    };
    git(&["init", "-q"])?;
    git(&["config", "core.autocrlf", "false"])?;
    git(&["config", "gc.auto", "0"])?;
    git(&["add", "-A", "-f", "."])?;
    git(&[
        "commit",
        "-q",
        "--no-verify",
        "-m",
        &format!(
            "Linux {} (Debian {DEB_PACKAGE} {DEB_VERSION})",
            util::KERNEL_VERSION
        ),
    ])?;
    git(&["tag", BASE_TAG])?;
    util::write(&stamp, DEB_VERSION)?;
    info(&format!("pristine tree at {}", src.display()));
    Ok(())
}

/// The base commit every patch series is applied to.
pub fn base_rev() -> &'static str {
    BASE_TAG
}

fn locate_deb(ctx: &Ctx) -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("VMFAIR_KERNEL_DEB").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        if !p.is_file() {
            bail!(
                "VMFAIR_KERNEL_DEB points to {}, which is not a file",
                p.display()
            );
        }
        info(&format!("using $VMFAIR_KERNEL_DEB = {}", p.display()));
        return Ok(p);
    }
    let shared = ctx
        .root
        .join("../shared/kernel")
        .join(util::deb_file_name());
    if shared.is_file() {
        info(&format!("using the pinned copy {}", shared.display()));
        return Ok(shared);
    }
    let dl = ctx.cache.join("dl").join(util::deb_file_name());
    if dl.is_file() && util::sha256_file(&dl)? == DEB_SHA256 {
        info(&format!("using the downloaded copy {}", dl.display()));
        return Ok(dl);
    }
    download(ctx, &dl)?;
    Ok(dl)
}

/// Download the pinned package from Debian's archive into the cache and
/// verify it, whatever other copies exist (`cargo xtask source
/// --from-archive`: checks the fallback path a machine without
/// ../shared/kernel takes).
pub fn fetch_from_archive(ctx: &Ctx) -> Result<PathBuf> {
    let dl = ctx.cache.join("dl").join(util::deb_file_name());
    let _ = std::fs::remove_file(&dl);
    download(ctx, &dl)?;
    verify(&dl)?;
    info(&format!("{} downloaded and verified", dl.display()));
    Ok(dl)
}

fn verify(deb: &Path) -> Result<()> {
    let got = util::sha256_file(deb)?;
    if got != DEB_SHA256 {
        bail!(
            "{} has SHA-256 {got}, but the pinned {DEB_PACKAGE} {DEB_VERSION} has {DEB_SHA256}",
            deb.display()
        );
    }
    info("SHA-256 verified");
    Ok(())
}

/// The Debian mirror this system already uses, read from its apt sources
/// (deb822 `.sources` files or one-line `sources.list`).
pub fn system_mirror() -> Result<String> {
    let mut texts = Vec::new();
    if let Ok(t) = std::fs::read_to_string("/etc/apt/sources.list") {
        texts.push(("list", t));
    }
    if let Ok(rd) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut names: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
        names.sort();
        for p in names {
            let kind = match p.extension().and_then(|e| e.to_str()) {
                Some("sources") => "sources",
                Some("list") => "list",
                _ => continue,
            };
            if let Ok(t) = std::fs::read_to_string(&p) {
                texts.push((kind, t));
            }
        }
    }
    for (kind, text) in &texts {
        if let Some(m) = mirror_from(kind, text) {
            return Ok(m);
        }
    }
    bail!("no Debian main archive found in this system's apt sources (/etc/apt/sources.list, /etc/apt/sources.list.d)")
}

/// Pick the first `deb` entry for Debian's main archive (not security,
/// not a third-party repository: its suites are Debian code names).
pub fn mirror_from(kind: &str, text: &str) -> Option<String> {
    let debian_suite = |s: &str| {
        let base = s.split('-').next().unwrap_or(s);
        [
            "bookworm", "trixie", "forky", "stable", "testing", "unstable", "sid",
        ]
        .contains(&base)
            && !s.ends_with("-security")
    };
    if kind == "list" {
        for line in text.lines() {
            let mut w = line.split_whitespace();
            if w.next() != Some("deb") {
                continue;
            }
            let mut w = w.peekable();
            if w.peek().is_some_and(|t| t.starts_with('[')) {
                // Skip the bracketed options, which may span several words.
                for t in w.by_ref() {
                    if t.ends_with(']') {
                        break;
                    }
                }
            }
            if let (Some(uri), Some(suite)) = (w.next(), w.next()) {
                if debian_suite(suite) {
                    return Some(uri.trim_end_matches('/').to_string());
                }
            }
        }
        return None;
    }
    for stanza in text.split("\n\n") {
        let field = |name: &str| {
            stanza
                .lines()
                .find(|l| l.starts_with(&format!("{name}:")))
                .map(|l| l[name.len() + 1..].trim().to_string())
        };
        if field("Enabled").as_deref() == Some("no") {
            continue;
        }
        if !field("Types").is_some_and(|t| t.split_whitespace().any(|t| t == "deb")) {
            continue;
        }
        let Some(uris) = field("URIs") else { continue };
        let Some(suites) = field("Suites") else {
            continue;
        };
        if suites.split_whitespace().any(debian_suite) {
            if let Some(u) = uris.split_whitespace().next() {
                return Some(u.trim_end_matches('/').to_string());
            }
        }
    }
    None
}

/// `apt-get download` through a private configuration under the cache.
fn download(ctx: &Ctx, dest: &Path) -> Result<()> {
    phase(&format!(
        "downloading {DEB_PACKAGE} {DEB_VERSION} from Debian's archive"
    ));
    let mirror = system_mirror()?;
    let dir = ctx.cache.join("apt");
    for d in ["lists/partial", "cache/archives/partial", "parts", "prefs"] {
        std::fs::create_dir_all(dir.join(d))?;
    }
    util::write(&dir.join("status"), "")?;
    util::write(
        &dir.join("sources.list"),
        format!(
            "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] {mirror} {DEB_SUITE} main\n"
        ),
    )?;
    let apt = |args: &[&str]| {
        let mut c = Command::new("apt-get");
        c.current_dir(dest.parent().unwrap_or(Path::new("/tmp")))
            .arg("-q")
            .arg("-o")
            .arg(format!(
                "Dir::Etc::SourceList={}",
                dir.join("sources.list").display()
            ))
            .arg("-o")
            .arg(format!(
                "Dir::Etc::SourceParts={}",
                dir.join("parts").display()
            ))
            .arg("-o")
            .arg(format!(
                "Dir::Etc::PreferencesParts={}",
                dir.join("prefs").display()
            ))
            .arg("-o")
            .arg(format!("Dir::State::Lists={}", dir.join("lists").display()))
            .arg("-o")
            .arg(format!(
                "Dir::State::status={}",
                dir.join("status").display()
            ))
            .arg("-o")
            .arg(format!("Dir::Cache={}", dir.join("cache").display()))
            .arg("-o")
            .arg("APT::Sandbox::User=root")
            .args(args);
        c
    };
    std::fs::create_dir_all(dest.parent().context("bad destination")?)?;
    util::run(&mut apt(&["update"]))
        .context("apt-get update with the private configuration failed")?;
    util::run(&mut apt(&[
        "download",
        &format!("{DEB_PACKAGE}={DEB_VERSION}"),
    ]))
    .with_context(|| format!("apt-get download {DEB_PACKAGE}={DEB_VERSION} failed"))?;
    if !dest.is_file() {
        bail!(
            "apt-get download finished but {} is not there",
            dest.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::mirror_from;

    #[test]
    fn deb822_main_archive_is_found_and_security_skipped() {
        let t = "Types: deb\nURIs: http://m.example/debian-security\nSuites: bookworm-security\n\n\
                 Types: deb\nURIs: http://m.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\n";
        assert_eq!(
            mirror_from("sources", t).as_deref(),
            Some("http://m.example/debian")
        );
    }

    #[test]
    fn one_line_format_with_options() {
        let t =
            "# comment\ndeb [arch=amd64 signed-by=/x.gpg] http://m.example/debian/ bookworm main\n";
        assert_eq!(
            mirror_from("list", t).as_deref(),
            Some("http://m.example/debian")
        );
    }

    #[test]
    fn third_party_repository_is_not_a_mirror() {
        let t = "Types: deb\nURIs: https://vendor.example/apt\nSuites: nodistro\n";
        assert_eq!(mirror_from("sources", t), None);
    }
}
