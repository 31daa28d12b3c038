//! Shared plumbing: paths, the kernel toolchain environment, running
//! commands with progress, hashing.

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Linux release the series is written against.
pub const KERNEL_VERSION: &str = "7.3.4";
/// Debian package that carries the source tarball.
pub const DEB_PACKAGE: &str = "linux-source-7.3";
/// Pinned package version (suite trixie-backports).
pub const DEB_VERSION: &str = "7.3.4-1~bpo13+1";
/// Suite of the pinned package in Debian's archive.
pub const DEB_SUITE: &str = "trixie-backports";
/// SHA-256 of the pinned package: every copy, wherever it comes from, must match it.
pub const DEB_SHA256: &str = "703e369ddd4cce971452f5a593ee55df3a5c10c83caf0fa0df039633ed181ee3";
/// Pinned bindgen-cli, installed with `cargo install --locked`.
pub const BINDGEN_VERSION: &str = "0.73.0";
/// libclang the kernel's bindgen needs (clang 14 from bookworm is too old).
pub const LIBCLANG_PATH: &str = "/usr/lib/llvm-22/lib";

pub fn deb_file_name() -> String {
    format!("{DEB_PACKAGE}_{DEB_VERSION}_all.deb")
}

/// Where everything lives.
#[derive(Clone, Debug)]
pub struct Ctx {
    /// Top of the vmfair repository.
    pub root: PathBuf,
    /// Build cache outside the repository (`$VMFAIR_CACHE`, default `~/.cache/vmfair`).
    pub cache: PathBuf,
    /// Parallel jobs for make.
    pub jobs: usize,
    /// `CI=true` in the environment.
    pub ci: bool,
}

impl Ctx {
    pub fn new() -> Result<Self> {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .context("xtask has no parent directory")?
            .to_path_buf();
        let cache = match std::env::var_os("VMFAIR_CACHE") {
            Some(p) if !p.is_empty() => PathBuf::from(p),
            _ => {
                let home = std::env::var_os("HOME").context("HOME is not set")?;
                PathBuf::from(home).join(".cache/vmfair")
            }
        };
        std::fs::create_dir_all(&cache)
            .with_context(|| format!("cannot create cache directory {}", cache.display()))?;
        let jobs = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        let ci = std::env::var("CI").map(|v| v == "true").unwrap_or(false);
        Ok(Ctx {
            root,
            cache,
            jobs,
            ci,
        })
    }

    /// The git tree holding the pristine, extracted kernel source.
    pub fn src(&self) -> PathBuf {
        self.cache.join(format!("src/linux-{KERNEL_VERSION}"))
    }

    pub fn tools_bin(&self) -> PathBuf {
        self.cache.join("tools/bin")
    }

    pub fn bindgen(&self) -> PathBuf {
        self.tools_bin().join("bindgen")
    }

    pub fn results(&self) -> PathBuf {
        self.root.join("results")
    }

    /// `make` with the toolchain pinned: Debian's rustc (which has
    /// rust-src) even when rustup's rustc comes first on PATH.
    pub fn kmake(&self, build: &Path) -> Command {
        let mut c = Command::new("make");
        c.current_dir(self.src())
            .arg(format!("O={}", build.display()))
            .arg("RUSTC=/usr/bin/rustc")
            .arg("HOSTRUSTC=/usr/bin/rustc")
            .arg("RUSTDOC=/usr/bin/rustdoc")
            .arg(format!("BINDGEN={}", self.bindgen().display()))
            .env("LIBCLANG_PATH", LIBCLANG_PATH);
        c
    }
}

/// Print a phase header.
pub fn phase(msg: &str) {
    eprintln!("==> {msg}");
}

/// Print a progress or information line.
pub fn info(msg: &str) {
    eprintln!("    {msg}");
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Run a command, inheriting stdio; fail with the command line on error.
pub fn run(cmd: &mut Command) -> Result<()> {
    let st = cmd
        .status()
        .with_context(|| format!("cannot start `{}`", describe(cmd)))?;
    if !st.success() {
        bail!("`{}` failed ({st})", describe(cmd));
    }
    Ok(())
}

/// Run a command and capture stdout; stderr is returned in the error.
pub fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot start `{}`", describe(cmd)))?;
    if !out.status.success() {
        bail!(
            "`{}` failed ({}): {}",
            describe(cmd),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Run a long command with its output going to `log`, showing a progress
/// line every few seconds (lines seen, elapsed time, estimate when a
/// previous run's line count is known). On failure, print the log's tail.
pub fn run_logged(
    cmd: &mut Command,
    log: &Path,
    what: &str,
    expected_lines: Option<u64>,
) -> Result<u64> {
    let mut f =
        std::fs::File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start `{}`", describe(cmd)))?;
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let mut readers = Vec::new();
    for stream in [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .flatten()
    {
        let tx = tx.clone();
        readers.push(std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        }));
    }
    drop(tx);
    let start = Instant::now();
    let mut last_report = Instant::now();
    let mut lines = 0u64;
    let mut last = String::new();
    let interactive = std::env::var_os("CI").is_none();
    loop {
        match rx.recv_timeout(Duration::from_millis(500)) {
            Ok(l) => {
                writeln!(f, "{l}").ok();
                lines += 1;
                last = l;
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        }
        let every = if interactive { 5 } else { 30 };
        if last_report.elapsed() >= Duration::from_secs(every) {
            last_report = Instant::now();
            let pct = expected_lines
                .filter(|&e| e > 0)
                .map(|e| format!(" ~{}%", (lines * 100 / e).min(99)))
                .unwrap_or_default();
            let short: String = last.trim().chars().take(70).collect();
            info(&format!(
                "{what}: {}s, {lines} lines{pct} | {short}",
                start.elapsed().as_secs()
            ));
        }
    }
    for r in readers {
        let _ = r.join();
    }
    let st = child.wait()?;
    if !st.success() {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(40).collect();
        eprintln!("---- last lines of {} ----", log.display());
        for l in tail.iter().rev() {
            eprintln!("{l}");
        }
        eprintln!("----");
        bail!("{what} failed ({st}); full log: {}", log.display());
    }
    info(&format!("{what}: done in {}s", start.elapsed().as_secs()));
    Ok(lines)
}

/// SHA-256 of a file, hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Incremental hasher over named parts (file names and contents).
#[derive(Default)]
pub struct KeyHasher(Sha256);

impl KeyHasher {
    pub fn part(&mut self, name: &str, data: &[u8]) {
        self.0.update((name.len() as u64).to_le_bytes());
        self.0.update(name.as_bytes());
        self.0.update((data.len() as u64).to_le_bytes());
        self.0.update(data);
    }
    pub fn file(&mut self, name: &str, path: &Path) -> Result<()> {
        let data =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        self.part(name, &data);
        Ok(())
    }
    pub fn finish(self) -> String {
        hex(&self.0.finalize())[..16].to_string()
    }
}

/// Is `prog` on PATH (or an existing path)?
pub fn have(prog: impl AsRef<OsStr>) -> bool {
    let p = Path::new(prog.as_ref());
    if p.components().count() > 1 {
        return p.exists();
    }
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|d| d.join(p).is_file()))
        .unwrap_or(false)
}

pub fn write(path: &Path, data: impl AsRef<[u8]>) -> Result<()> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d)?;
    }
    std::fs::write(path, data).with_context(|| format!("cannot write {}", path.display()))
}

pub fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}
