// SPDX-License-Identifier: GPL-2.0
//! `vmfair-top`'s library: reading vmfair's per-VM files, the figures computed from two samples,
//! sorting, and the two output formats (aligned columns and one JSON object per line).
//!
//! Everything reads below a root directory (`--root`, `/` by default), so the tests run on a
//! fake tree. See `Documentation/vmfair/vmfair-top.rst`.

use std::collections::{BTreeMap, HashMap};
use std::fmt::{self, Write as _};
use std::io;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// vmfair's sysctl directory, below the root.
pub const VMFAIR_DIR: &str = "proc/sys/kernel/vmfair";

/// One VM as one sample saw it. Fields the module did not report are `None`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Vm {
    /// The VMM's pid (its thread group).
    pub pid: u32,
    /// `/proc/<pid>/comm`, `-` when it could not be read.
    pub name: String,
    /// `/proc/<pid>/cmdline` with the NULs turned into spaces.
    pub cmdline: String,
    pub vcpus: Option<u32>,
    pub weight: Option<u32>,
    /// Reserved CPUs (`0.00` is none).
    pub reservation: Option<f64>,
    /// CPU limit in CPUs (`0.00` is none).
    pub limit: Option<f64>,
    pub threads: Option<u64>,
    /// CPU time of all the VMM's threads, exited ones included (ns, monotonic).
    pub cpu_ns: Option<u64>,
    /// Run-queue wait of the VMM's live threads (ns).
    pub wait_ns: Option<u64>,
    /// The process's start time (`/proc/<pid>/stat` field 22), to tell a reused pid.
    pub start: Option<u64>,
    /// When its `stats` were read, on the sample's monotonic clock (the middle of the read);
    /// `None`: at the sample's `mono`.
    pub at: Option<f64>,
}

/// Every VM at one moment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sample {
    /// A monotonic clock, seconds: the deltas are over this.
    pub mono: f64,
    /// Wall-clock time, seconds since the Unix epoch: the timestamp shown.
    pub wall: f64,
    pub vms: Vec<Vm>,
}

/// Why no sample could be read.
#[derive(Debug)]
pub enum ReadError {
    /// vmfair's directory is missing: the module is not loaded.
    NotLoaded(PathBuf),
    /// Another error reading the VM list.
    Io(PathBuf, io::Error),
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::NotLoaded(p) => {
                write!(f, "vmfair is not loaded ({} is missing)", p.display())
            }
            ReadError::Io(p, e) => write!(f, "{}: {e}", p.display()),
        }
    }
}

/// `key value` pairs of a token list; a trailing key without a value is dropped.
fn pairs<'a>(tokens: impl Iterator<Item = &'a str>) -> BTreeMap<&'a str, &'a str> {
    let t: Vec<&str> = tokens.collect();
    t.chunks_exact(2).map(|c| (c[0], c[1])).collect()
}

/// One line of `vms`: `PID key value…`; `None` for a line without a pid.
pub fn parse_vms_line(line: &str) -> Option<(u32, BTreeMap<&str, &str>)> {
    let mut it = line.split_whitespace();
    let pid = it.next()?.parse().ok()?;
    Some((pid, pairs(it)))
}

/// A `stats` file: one `key value` pair a line.
pub fn parse_stats(text: &str) -> BTreeMap<&str, &str> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            Some((it.next()?, it.next()?))
        })
        .collect()
}

/// Field 22 of `/proc/<pid>/stat` (start time in clock ticks), after the `(comm)`.
pub fn parse_start_time(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Reads one sample below `root`, stamped with the given clocks (every VM read at `mono`).
///
/// A VM listed in `vms` whose `stats` file is gone by the time it is read has just exited
/// and is left out.
pub fn read_sample(root: &Path, mono: f64, wall: f64) -> Result<Sample, ReadError> {
    read_sample_at(root, &mut || mono, wall)
}

/// Reads one sample below `root` as [`read_sample`] does, with the monotonic clock `clock`
/// (seconds): the sample's `mono` is the clock at the start, and each VM's `at` the middle of
/// the read of its `stats`, so that its `cpu_ns` and `wait_ns` are dated when they were read
/// however long the VMs before it took.
pub fn read_sample_at(
    root: &Path,
    clock: &mut dyn FnMut() -> f64,
    wall: f64,
) -> Result<Sample, ReadError> {
    let mono = clock();
    let dir = root.join(VMFAIR_DIR);
    if !dir.is_dir() {
        return Err(ReadError::NotLoaded(dir));
    }
    let list = dir.join("vms");
    let text = match std::fs::read_to_string(&list) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(ReadError::NotLoaded(dir)),
        Err(e) => return Err(ReadError::Io(list, e)),
    };
    let mut vms = Vec::new();
    for line in text.lines() {
        let Some((pid, listed)) = parse_vms_line(line) else {
            continue;
        };
        let before = clock();
        let Ok(stats) = std::fs::read_to_string(dir.join(format!("vm/{pid}/stats"))) else {
            continue;
        };
        let at = (before + clock()) / 2.0;
        let st = parse_stats(&stats);
        // The stats file is read last, so its value wins over the list's when it parses.
        let num = |k: &str| field(&st, &listed, k, |v| v.parse::<u64>().ok());
        let small = |k: &str| field(&st, &listed, k, |v| v.parse::<u32>().ok());
        let cpus = |k: &str| {
            field(&st, &listed, k, |v| {
                v.parse::<f64>().ok().filter(|x| x.is_finite() && *x >= 0.0)
            })
        };
        let proc_dir = root.join(format!("proc/{pid}"));
        let name = std::fs::read_to_string(proc_dir.join("comm"))
            .map(|s| s.trim_end_matches('\n').to_string())
            .unwrap_or_else(|_| "-".into());
        let cmdline = std::fs::read(proc_dir.join("cmdline"))
            .map(|b| cmdline_text(&b))
            .unwrap_or_default();
        let start = std::fs::read_to_string(proc_dir.join("stat"))
            .ok()
            .and_then(|s| parse_start_time(&s));
        vms.push(Vm {
            pid,
            name,
            cmdline,
            vcpus: small("vcpus"),
            weight: small("weight"),
            reservation: cpus("reservation"),
            limit: cpus("limit"),
            threads: num("threads"),
            cpu_ns: num("cpu_ns"),
            wait_ns: num("wait_ns"),
            start,
            at: Some(at),
        });
    }
    Ok(Sample { mono, wall, vms })
}

/// `key` parsed from the first of two maps that has a value for it that parses.
fn field<T>(
    first: &BTreeMap<&str, &str>,
    second: &BTreeMap<&str, &str>,
    key: &str,
    parse: impl Fn(&str) -> Option<T>,
) -> Option<T> {
    first
        .get(key)
        .and_then(|v| parse(v))
        .or_else(|| second.get(key).and_then(|v| parse(v)))
}

/// A NUL-separated command line as one string, arguments separated by spaces.
pub fn cmdline_text(raw: &[u8]) -> String {
    let raw = raw.strip_suffix(&[0]).unwrap_or(raw);
    String::from_utf8_lossy(raw).replace('\0', " ")
}

/// One VM with its figures over the last interval.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub vm: Vm,
    /// Δcpu_ns / Δt × 100: 100 is one CPU's worth.
    pub used_pct: Option<f64>,
    /// Δwait_ns / Δt / vcpus × 100: ready time per vCPU.
    pub rdy_pct: Option<f64>,
}

/// Whether `cur` is not the process `prev` was: a different start time, or a CPU time that went
/// backwards (it counts exited threads too, so only a new process makes it shrink).
fn reused(prev: &Vm, cur: &Vm) -> bool {
    let differ = |a: Option<u64>, b: Option<u64>| matches!((a, b), (Some(a), Some(b)) if a != b);
    let back = |a: Option<u64>, b: Option<u64>| matches!((a, b), (Some(a), Some(b)) if b < a);
    differ(prev.start, cur.start) || back(prev.cpu_ns, cur.cpu_ns)
}

/// The rows of `cur`, with figures where `prev` saw the same VM one interval before.
///
/// The interval of a VM is from its `at` in `prev` to its `at` in `cur` (the samples' `mono`
/// for a VM without one).
///
/// A VM new since `prev` (or a reused pid) has no figures yet. `%RDY` is also left out when
/// `wait_ns` went down: it covers live threads only, so an exited thread takes its wait with
/// it and the interval's ready time cannot be told.
pub fn compute(prev: Option<&Sample>, cur: &Sample) -> Vec<Row> {
    let before: HashMap<u32, &Vm> = prev
        .map(|p| p.vms.iter().map(|v| (v.pid, v)).collect())
        .unwrap_or_default();
    let prev_mono = prev.map_or(0.0, |p| p.mono);
    cur.vms
        .iter()
        .map(|vm| {
            let old = before.get(&vm.pid).filter(|old| !reused(old, vm));
            let dt_ns = old.map_or(0.0, |old| {
                (vm.at.unwrap_or(cur.mono) - old.at.unwrap_or(prev_mono)) * 1e9
            });
            let old = old.filter(|_| dt_ns > 0.0);
            let delta = |f: fn(&Vm) -> Option<u64>| {
                let (a, b) = (f(old?)?, f(vm)?);
                (b >= a).then(|| (b - a) as f64)
            };
            let used_pct = delta(|v| v.cpu_ns).map(|d| d / dt_ns * 100.0);
            let rdy_pct = match vm.vcpus {
                Some(n) if n > 0 => delta(|v| v.wait_ns).map(|d| d / dt_ns / f64::from(n) * 100.0),
                _ => None,
            };
            Row {
                vm: vm.clone(),
                used_pct,
                rdy_pct,
            }
        })
        .collect()
}

/// What the rows are sorted by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortKey {
    Used,
    Rdy,
    Pid,
    Weight,
    Vcpus,
}

impl SortKey {
    pub fn name(self) -> &'static str {
        match self {
            SortKey::Used => "used",
            SortKey::Rdy => "rdy",
            SortKey::Pid => "pid",
            SortKey::Weight => "weight",
            SortKey::Vcpus => "vcpus",
        }
    }
}

impl FromStr for SortKey {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "used" => SortKey::Used,
            "rdy" => SortKey::Rdy,
            "pid" => SortKey::Pid,
            "weight" => SortKey::Weight,
            "vcpus" => SortKey::Vcpus,
            _ => {
                return Err(format!(
                    "unknown sort key {s:?} (used|rdy|pid|weight|vcpus)"
                ))
            }
        })
    }
}

/// Sorts by `key`: pid ascending, everything else descending, unknown values (`-`) last, ties
/// by pid.
pub fn sort_rows(rows: &mut [Row], key: SortKey) {
    let value = |r: &Row| -> Option<f64> {
        match key {
            SortKey::Used => r.used_pct,
            SortKey::Rdy => r.rdy_pct,
            SortKey::Weight => r.vm.weight.map(f64::from),
            SortKey::Vcpus => r.vm.vcpus.map(f64::from),
            SortKey::Pid => Some(-f64::from(r.vm.pid)),
        }
    };
    rows.sort_by(|a, b| {
        let by_value = match (value(a), value(b)) {
            (Some(x), Some(y)) => y.total_cmp(&x),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => std::cmp::Ordering::Equal,
        };
        by_value.then(a.vm.pid.cmp(&b.vm.pid))
    });
}

/// Column titles, in order.
pub const COLUMNS: [&str; 10] = [
    "PID", "NAME", "VCPUS", "WEIGHT", "RESV", "LIMIT", "%USED", "%RDY", "THR", "CMD",
];

fn opt<T: fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "-".into(), |v| v.to_string())
}

fn fixed(v: Option<f64>, places: usize) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.places$}"))
}

/// The cells of one row, as [`COLUMNS`].
pub fn cells(r: &Row) -> [String; 10] {
    let v = &r.vm;
    [
        v.pid.to_string(),
        v.name.clone(),
        opt(v.vcpus),
        opt(v.weight),
        fixed(v.reservation, 2),
        fixed(v.limit, 2),
        fixed(r.used_pct, 1),
        fixed(r.rdy_pct, 1),
        opt(v.threads),
        v.cmdline.clone(),
    ]
}

/// `s` cut to at most `width` characters.
pub fn truncate(s: &str, width: usize) -> &str {
    match s.char_indices().nth(width) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// The header and one line per row, in aligned columns (numbers right-aligned, NAME and CMD
/// left-aligned, CMD last and unpadded); each line cut to `width` characters if given.
pub fn table(rows: &[Row], width: Option<usize>) -> Vec<String> {
    let mut grid: Vec<[String; 10]> = vec![COLUMNS.map(String::from)];
    grid.extend(rows.iter().map(cells));
    let mut w = [0usize; 10];
    for line in &grid {
        for (i, c) in line.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    grid.iter()
        .map(|line| {
            let mut s = String::new();
            for (i, c) in line.iter().enumerate() {
                let _ = match i {
                    1 => write!(s, "{c:<0$}  ", w[i]),
                    9 => write!(s, "{c}"),
                    _ => write!(s, "{c:>0$}  ", w[i]),
                };
            }
            let s = s.trim_end().to_string();
            match width {
                Some(n) => truncate(&s, n).to_string(),
                None => s,
            }
        })
        .collect()
}

/// Days since 1970-01-01 as (year, month, day) in the proleptic Gregorian calendar.
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Unix time as `YYYY-MM-DD HH:MM:SS UTC`.
pub fn utc(secs: f64) -> String {
    let s = secs.floor() as i64;
    let (y, mo, d) = civil(s.div_euclid(86_400));
    let t = s.rem_euclid(86_400);
    format!(
        "{y:04}-{mo:02}-{d:02} {:02}:{:02}:{:02} UTC",
        t / 3600,
        t / 60 % 60,
        t % 60
    )
}

/// One batch block: a header line with the timestamp, the table, an empty line.
pub fn batch_block(cur: &Sample, rows: &[Row], interval: f64) -> String {
    let mut s = format!(
        "vmfair-top {}  interval {interval:.2} s  {} VMs\n",
        utc(cur.wall),
        rows.len()
    );
    for line in table(rows, None) {
        s.push_str(&line);
        s.push('\n');
    }
    s.push('\n');
    s
}

/// What the live screen shows.
#[derive(Clone, Debug)]
pub enum View {
    /// Before the first interval has passed.
    Waiting,
    /// The rows of the sample taken at this wall-clock time.
    Rows(f64, Vec<Row>),
    /// No sample could be read (the module is not loaded): the time and why.
    Error(f64, String),
}

/// The live screen for a terminal of `width` × `height`: a title line, the column header (in
/// reverse video) and as many rows as fit, each line cut to `width`. Clears the screen first;
/// leaves the last terminal line empty so nothing scrolls.
pub fn live_screen(
    view: &View,
    sort: SortKey,
    interval: f64,
    width: usize,
    height: usize,
) -> String {
    let mut lines = Vec::new();
    let title = |when: Option<f64>, what: &str| {
        // The time of day only: the title has to fit 80 columns.
        let when = when.map_or_else(String::new, |w| format!(" {}", &utc(w)[11..]));
        format!(
            "vmfair-top{when}  {what}  every {interval:.2} s  sort {}  q quits",
            sort.name()
        )
    };
    match view {
        View::Waiting => {
            lines.push(title(None, "sampling"));
            lines.push("the first figures come after one interval".into());
        }
        View::Error(when, why) => {
            lines.push(title(Some(*when), "no VMs"));
            lines.push(format!("{why}; waiting for it"));
        }
        View::Rows(when, rows) => {
            let mut rows = rows.clone();
            sort_rows(&mut rows, sort);
            let total = rows
                .iter()
                .filter_map(|r| r.used_pct)
                .fold(0.0, |a, b| a + b);
            lines.push(title(
                Some(*when),
                &format!("{} VMs  %USED {total:.1}", rows.len()),
            ));
            lines.extend(table(&rows, Some(width)));
        }
    }
    lines.truncate(height.saturating_sub(1).max(1));
    let mut s = String::from("\x1b[H\x1b[2J");
    for (i, line) in lines.iter().enumerate() {
        let line = truncate(line, width);
        if i > 0 {
            s.push('\n');
        }
        if i == 1 && matches!(view, View::Rows(..)) {
            s.push_str(&format!("\x1b[7m{line:<width$}\x1b[0m"));
        } else {
            s.push_str(line);
        }
    }
    s
}

/// `s` as a JSON string literal.
pub fn json_str(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\t' => o.push_str("\\t"),
            '\r' => o.push_str("\\r"),
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

fn json_num<T: fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "null".into(), |v| v.to_string())
}

fn json_fixed(v: Option<f64>, places: usize) -> String {
    v.map_or_else(|| "null".into(), |v| format!("{v:.places$}"))
}

/// One JSON object (one line, no newline) for one iteration.
pub fn json_line(cur: &Sample, rows: &[Row]) -> String {
    let vms: Vec<String> = rows
        .iter()
        .map(|r| {
            let v = &r.vm;
            format!(
                "{{\"pid\":{},\"name\":{},\"vcpus\":{},\"weight\":{},\"reservation\":{},\
                 \"limit\":{},\"used_pct\":{},\"rdy_pct\":{},\"threads\":{},\"cmdline\":{}}}",
                v.pid,
                json_str(&v.name),
                json_num(v.vcpus),
                json_num(v.weight),
                json_fixed(v.reservation, 2),
                json_fixed(v.limit, 2),
                json_fixed(r.used_pct, 2),
                json_fixed(r.rdy_pct, 2),
                json_num(v.threads),
                json_str(&v.cmdline),
            )
        })
        .collect();
    format!("{{\"t\":{:.3},\"vms\":[{}]}}", cur.wall, vms.join(","))
}

/// The command line.
#[derive(Clone, Debug, PartialEq)]
pub struct Options {
    /// Seconds between samples.
    pub interval: f64,
    pub batch: bool,
    /// Outputs to print; `None`: 1 in batch mode, until `q` in live mode.
    pub iterations: Option<u64>,
    pub sort: SortKey,
    pub json: bool,
    /// Prefix of `/proc`.
    pub root: PathBuf,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            interval: 2.0,
            batch: false,
            iterations: None,
            sort: SortKey::Used,
            json: false,
            root: PathBuf::from("/"),
        }
    }
}

/// What the command line asks for.
#[derive(Debug, PartialEq)]
pub enum Parsed {
    Run(Options),
    Help,
}

pub const USAGE: &str =
    "usage: vmfair-top [-b [--json]] [-d SECS] [-n N] [-s used|rdy|pid|weight|vcpus] [--root DIR]
  -d SECS     seconds between samples (default 2; the first output comes after one interval)
  -b          batch mode: plain columns, one block per iteration, no screen control
  -n N        iterations (batch default 1; live default: until q or Ctrl-C)
  -s KEY      sort by used (default), rdy, weight, vcpus (descending) or pid (ascending)
  --json      with -b: one JSON object per line per iteration
  --root DIR  read DIR/proc instead of /proc
  -h, --help  this text
live mode keys: q quits; u r p w v sort by used, rdy, pid, weight, vcpus";

/// Parses the arguments (without the program name); `Err` is a usage error.
pub fn parse_args(args: &[String]) -> Result<Parsed, String> {
    let mut o = Options::default();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        // `-d2` and `--root=DIR` as well as `-d 2` and `--root DIR`.
        let (flag, inline) = match arg.as_str() {
            a if a.starts_with("--") => match a.split_once('=') {
                Some((f, v)) => (f, Some(v)),
                None => (a, None),
            },
            a if a.len() > 2 && a.starts_with('-') => (&a[..2], Some(&a[2..])),
            a => (a, None),
        };
        let mut value = |what: &str| -> Result<&str, String> {
            match inline {
                Some(v) => Ok(v),
                None => it
                    .next()
                    .map(String::as_str)
                    .ok_or_else(|| format!("{flag} needs {what}")),
            }
        };
        match flag {
            "-h" | "--help" => return Ok(Parsed::Help),
            "-b" | "--json" if inline.is_some() => {
                return Err(format!("{flag} takes no value"));
            }
            "-b" => o.batch = true,
            "--json" => o.json = true,
            "-d" => {
                let v = value("a number of seconds")?;
                o.interval = v
                    .parse::<f64>()
                    .ok()
                    .filter(|d| d.is_finite() && *d > 0.0 && *d <= 86_400.0)
                    .ok_or_else(|| format!("-d: {v:?} is not a number of seconds > 0"))?;
            }
            "-n" => {
                let v = value("a count")?;
                o.iterations = Some(
                    v.parse::<u64>()
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or_else(|| format!("-n: {v:?} is not a count > 0"))?,
                );
            }
            "-s" => o.sort = value("a sort key")?.parse()?,
            "--root" => o.root = PathBuf::from(value("a directory")?),
            other => return Err(format!("unknown option {other:?}")),
        }
    }
    if o.json && !o.batch {
        return Err("--json needs -b (batch mode)".into());
    }
    Ok(Parsed::Run(o))
}

#[cfg(test)]
mod tests;
