// SPDX-License-Identifier: GPL-2.0
//! `vmfair-top`: a live per-VM view of vmfair's statistics, like esxtop or xentop.
//!
//! Live mode redraws the terminal every interval until `q` or Ctrl-C; `-b` prints plain
//! blocks (or, with `--json`, one JSON object per line) for scripts. Exits 0, 1 when vmfair is
//! not loaded (batch mode), 2 on a usage error. See `Documentation/vmfair/vmfair-top.rst`.

mod term;

use std::io::{self, Write};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use vmfair_top::{
    batch_block, compute, json_line, live_screen, parse_args, read_sample_at, sort_rows, Options,
    Parsed, ReadError, Sample, SortKey, View, USAGE,
};

fn main() {
    std::process::exit(real_main());
}

fn real_main() -> i32 {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match parse_args(&args) {
        Ok(Parsed::Help) => {
            println!("{USAGE}");
            0
        }
        Ok(Parsed::Run(o)) if o.batch => batch(&o),
        Ok(Parsed::Run(o)) => live(&o),
        Err(e) => {
            eprintln!("vmfair-top: {e}\n{USAGE}");
            2
        }
    }
}

/// One sample, its monotonic times in seconds since `start`.
fn take(o: &Options, start: Instant) -> Result<Sample, ReadError> {
    let wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    read_sample_at(&o.root, &mut || start.elapsed().as_secs_f64(), wall)
}

fn batch(o: &Options) -> i32 {
    let start = Instant::now();
    let mut prev = match take(o, start) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("vmfair-top: {e}");
            return 1;
        }
    };
    let mut out = io::stdout().lock();
    for _ in 0..o.iterations.unwrap_or(1) {
        // One interval after the previous sample, whatever printing it took.
        let wait = prev.mono + o.interval - start.elapsed().as_secs_f64();
        if wait > 0.0 {
            std::thread::sleep(Duration::from_secs_f64(wait));
        }
        let cur = match take(o, start) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("vmfair-top: {e}");
                return 1;
            }
        };
        let mut rows = compute(Some(&prev), &cur);
        sort_rows(&mut rows, o.sort);
        let text = if o.json {
            format!("{}\n", json_line(&cur, &rows))
        } else {
            batch_block(&cur, &rows, o.interval)
        };
        if out
            .write_all(text.as_bytes())
            .and_then(|()| out.flush())
            .is_err()
        {
            // The reader went away (a closed pipe): nothing more to do.
            return 0;
        }
        prev = cur;
    }
    0
}

fn live(o: &Options) -> i32 {
    if let Err(e) = term::catch_stop_signals() {
        eprintln!("vmfair-top: sigaction: {e}");
    }
    let raw = term::RawInput::new();
    let mut keys = raw.is_some();
    let mut out = io::stdout();
    let start = Instant::now();
    let interval = Duration::from_secs_f64(o.interval);
    let mut sort = o.sort;
    let mut prev = take(o, start).ok();
    let mut view = View::Waiting;
    let mut next = start + interval;
    let mut shown = 0u64;
    let mut redraw = true;
    loop {
        if redraw {
            let (w, h) = term::size();
            let screen = live_screen(&view, sort, o.interval, w, h);
            if out
                .write_all(screen.as_bytes())
                .and_then(|()| out.flush())
                .is_err()
            {
                break;
            }
            redraw = false;
        }
        if term::stopped() || o.iterations.is_some_and(|n| shown >= n) {
            break;
        }
        let now = Instant::now();
        if now >= next {
            view = match take(o, start) {
                Ok(cur) => {
                    let v = View::Rows(cur.wall, compute(prev.as_ref(), &cur));
                    prev = Some(cur);
                    v
                }
                Err(e) => {
                    prev = None;
                    let wall = SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .map_or(0.0, |d| d.as_secs_f64());
                    View::Error(wall, e.to_string())
                }
            };
            shown += 1;
            redraw = true;
            next += interval;
            if next < now {
                next = now + interval;
            }
            continue;
        }
        let (bytes, alive) = term::wait_keys(next - now, keys);
        keys = alive;
        for b in bytes {
            let key = match b {
                b'q' | b'Q' | 3 => return finish(&mut out, raw),
                b'u' => SortKey::Used,
                b'r' => SortKey::Rdy,
                b'p' => SortKey::Pid,
                b'w' => SortKey::Weight,
                b'v' => SortKey::Vcpus,
                _ => continue,
            };
            redraw |= key != sort;
            sort = key;
        }
    }
    finish(&mut out, raw)
}

/// Leaves the last screen on the terminal, the cursor below it, and the terminal as it was.
fn finish(out: &mut io::Stdout, raw: Option<term::RawInput>) -> i32 {
    let _ = out.write_all(b"\n");
    let _ = out.flush();
    drop(raw);
    0
}
