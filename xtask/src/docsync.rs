//! The documentation exists twice: as the repository's
//! `Documentation/admin-guide/vmfair.rst` and `Documentation/scheduler/vmfair.rst`,
//! and as the new files patch 0004 adds to the kernel. The repository files
//! are the source; `scripts/series.sh export` folds them into the patch.
//! These tests fail when the two copies differ, and when a hunk of any patch
//! in the series has a header whose line counts do not match its body (a
//! hand-edited patch that `git am` would reject).
#![cfg(test)]

use std::path::{Path, PathBuf};

/// One hunk: its header's counts and its body's lines, without the prefix.
#[derive(Debug)]
struct Hunk {
    /// 1-based line of the `@@` header in the patch.
    line: usize,
    old_start: usize,
    new_start: usize,
    /// Body lines with their first character (' ', '+', '-' or '\\').
    body: Vec<String>,
}

/// One `diff --git` section.
#[derive(Debug)]
struct FileDiff {
    path: String,
    new_file: bool,
    hunks: Vec<Hunk>,
}

impl FileDiff {
    fn added(&self) -> usize {
        self.count('+')
    }

    fn deleted(&self) -> usize {
        self.count('-')
    }

    fn count(&self, c: char) -> usize {
        self.hunks
            .iter()
            .flat_map(|h| &h.body)
            .filter(|l| l.starts_with(c))
            .count()
    }

    /// The content of a new file, as `git apply` would write it.
    fn new_content(&self) -> String {
        let mut text = String::new();
        for l in self.hunks.iter().flat_map(|h| &h.body) {
            if l.starts_with('\\') {
                // "\ No newline at end of file" applies to the line before.
                if text.ends_with('\n') {
                    text.pop();
                }
            } else if let Some(rest) = l.strip_prefix('+') {
                text.push_str(rest);
                text.push('\n');
            }
        }
        text
    }
}

#[derive(Debug)]
struct Patch {
    /// `(path, changed lines)` from the diffstat, in order.
    diffstat: Vec<(String, usize)>,
    files: Vec<FileDiff>,
}

/// Parses `@@ -a[,b] +c[,d] @@` into `(a, b, c, d)`; a missing count is 1.
fn hunk_header(line: &str) -> Option<(usize, usize, usize, usize)> {
    let rest = line.strip_prefix("@@ -")?;
    let (ranges, _) = rest.split_once(" @@")?;
    let (old, new) = ranges.split_once(" +")?;
    let range = |r: &str| -> Option<(usize, usize)> {
        match r.split_once(',') {
            Some((s, n)) => Some((s.parse().ok()?, n.parse().ok()?)),
            None => Some((r.parse().ok()?, 1)),
        }
    };
    let (a, b) = range(old)?;
    let (c, d) = range(new)?;
    Some((a, b, c, d))
}

/// Parses a `git format-patch` file. Every hunk must hold exactly the
/// lines its header counts, and be followed by another hunk, another file,
/// the `-- ` signature line or the end; the error names the patch line.
fn parse_patch(name: &str, text: &str) -> Result<Patch, String> {
    let lines: Vec<&str> = text.lines().collect();
    let first_diff = lines
        .iter()
        .position(|l| l.starts_with("diff --git "))
        .ok_or_else(|| format!("{name}: no diff"))?;

    // The diffstat sits between the last "---" line and the first diff.
    let sep = lines[..first_diff]
        .iter()
        .rposition(|l| *l == "---")
        .ok_or_else(|| format!("{name}: no '---' line before the first diff"))?;
    let mut diffstat = Vec::new();
    for l in &lines[sep + 1..first_diff] {
        if let Some((path, rest)) = l.split_once(" | ") {
            let n = rest.split_whitespace().next().unwrap_or("");
            let n: usize = n
                .parse()
                .map_err(|_| format!("{name}: cannot read diffstat line {l:?}"))?;
            diffstat.push((path.trim().to_string(), n));
        }
    }

    let mut files = Vec::new();
    let mut i = first_diff;
    while i < lines.len() {
        let l = lines[i];
        if l == "-- " {
            break;
        }
        let Some(paths) = l.strip_prefix("diff --git ") else {
            return Err(format!(
                "{name}: line {}: expected a diff, found {l:?}",
                i + 1
            ));
        };
        let path = paths
            .split_once(" b/")
            .map(|(_, b)| b.to_string())
            .ok_or_else(|| format!("{name}: line {}: cannot read {l:?}", i + 1))?;
        let mut file = FileDiff {
            path,
            new_file: false,
            hunks: Vec::new(),
        };
        i += 1;
        while i < lines.len() && !lines[i].starts_with("@@") && !lines[i].starts_with("diff --git ")
        {
            if lines[i] == "-- " {
                break;
            }
            file.new_file |= lines[i].starts_with("new file mode ");
            i += 1;
        }
        while i < lines.len() && lines[i].starts_with("@@") {
            let (old_start, mut old, new_start, mut new) = hunk_header(lines[i])
                .ok_or_else(|| format!("{name}: line {}: bad hunk header", i + 1))?;
            let mut hunk = Hunk {
                line: i + 1,
                old_start,
                new_start,
                body: Vec::new(),
            };
            let header = lines[i];
            i += 1;
            while old > 0 || new > 0 {
                let Some(&b) = lines.get(i) else {
                    return Err(format!(
                        "{name}: hunk at line {} ({header}) ends at the end of the patch, \
                         {old} old and {new} new lines short",
                        hunk.line
                    ));
                };
                let (o, n) = match b.chars().next() {
                    Some('+') => (0, 1),
                    Some('-') => (1, 0),
                    Some(' ') | None => (1, 1),
                    Some('\\') => (0, 0),
                    _ => {
                        return Err(format!(
                            "{name}: line {}: hunk at line {} ({header}) has fewer lines than \
                             its header says ({old} old and {new} new lines short)",
                            i + 1,
                            hunk.line
                        ))
                    }
                };
                if o > old || n > new {
                    return Err(format!(
                        "{name}: line {}: hunk at line {} ({header}) has more {} lines than \
                         its header says",
                        i + 1,
                        hunk.line,
                        if o > old { "old" } else { "new" }
                    ));
                }
                old -= o;
                new -= n;
                hunk.body
                    .push(if b.is_empty() { " " } else { b }.to_string());
                i += 1;
            }
            if let Some(b) = lines.get(i).filter(|b| b.starts_with('\\')) {
                hunk.body.push(b.to_string());
                i += 1;
            }
            if let Some(next) = lines.get(i) {
                if !(next.starts_with("@@") || next.starts_with("diff --git ") || *next == "-- ") {
                    return Err(format!(
                        "{name}: line {}: hunk at line {} ({header}) has more lines than \
                         its header says: {next:?}",
                        i + 1,
                        hunk.line
                    ));
                }
            }
            file.hunks.push(hunk);
        }
        files.push(file);
    }
    Ok(Patch { diffstat, files })
}

/// Checks what the diffstat says against the diffs themselves.
fn check_diffstat(name: &str, patch: &Patch) -> Vec<String> {
    let mut errs = Vec::new();
    if patch.diffstat.len() != patch.files.len() {
        errs.push(format!(
            "{name}: the diffstat lists {} files, the patch changes {}",
            patch.diffstat.len(),
            patch.files.len()
        ));
    }
    for ((path, n), file) in patch.diffstat.iter().zip(&patch.files) {
        // git shortens a long name to ".../tail".
        let same = match path.strip_prefix("...") {
            Some(tail) => file.path.ends_with(tail),
            None => *path == file.path,
        };
        let real = file.added() + file.deleted();
        if !same {
            errs.push(format!(
                "{name}: the diffstat names {path}, the diff {}",
                file.path
            ));
        } else if *n != real {
            errs.push(format!(
                "{name}: the diffstat gives {path} {n} changed lines, the diff has {real}"
            ));
        }
    }
    errs
}

/// Compares a new file's content in the patch with the repository's copy;
/// the error names the file and the first line that differs.
fn compare(path: &str, in_patch: &str, in_repo: &str) -> Result<(), String> {
    if in_patch == in_repo {
        return Ok(());
    }
    let p: Vec<&str> = in_patch.split_inclusive('\n').collect();
    let r: Vec<&str> = in_repo.split_inclusive('\n').collect();
    for (n, (a, b)) in p.iter().zip(&r).enumerate() {
        if a != b {
            return Err(format!(
                "{path}: line {} differs\n  patch:      {a:?}\n  repository: {b:?}",
                n + 1
            ));
        }
    }
    Err(format!(
        "{path}: the patch has {} lines, the repository file {}; first missing line {}: {:?}",
        p.len(),
        r.len(),
        p.len().min(r.len()) + 1,
        p.get(r.len()).or(r.get(p.len())).copied().unwrap_or("")
    ))
}

/// Every new file a patch adds under Documentation/ must equal the file of
/// the same path under `root`. Returns the paths checked and the errors.
fn check_docs(name: &str, patch: &Patch, root: &Path) -> (Vec<String>, Vec<String>) {
    let mut checked = Vec::new();
    let mut errs = Vec::new();
    for f in patch
        .files
        .iter()
        .filter(|f| f.new_file && f.path.starts_with("Documentation/"))
    {
        checked.push(f.path.clone());
        if f.hunks.len() != 1 || f.hunks[0].old_start != 0 || f.hunks[0].new_start != 1 {
            errs.push(format!(
                "{name}: {}: a new file should have one hunk @@ -0,0 +1,N @@",
                f.path
            ));
            continue;
        }
        let repo_file = root.join(&f.path);
        match std::fs::read(&repo_file) {
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(text) => {
                    if let Err(e) = compare(&f.path, &f.new_content(), &text) {
                        errs.push(format!("{name}: {e}"));
                    }
                }
                Err(_) => errs.push(format!("{}: not UTF-8", repo_file.display())),
            },
            Err(e) => errs.push(format!(
                "{name} adds {}, but the repository has no such file ({e})",
                f.path
            )),
        }
    }
    (checked, errs)
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask has a parent directory")
        .to_path_buf()
}

/// `(name, text)` of each patch in `patches/series`, in order.
fn series() -> Vec<(String, String)> {
    let dir = root().join("patches");
    let list = std::fs::read_to_string(dir.join("series")).expect("patches/series");
    list.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|n| {
            let text =
                std::fs::read_to_string(dir.join(n)).unwrap_or_else(|e| panic!("patches/{n}: {e}"));
            (n.to_string(), text)
        })
        .collect()
}

const FIX: &str = "edit the repository files, then run scripts/series.sh (checkout, export)";

#[test]
fn patches_carry_the_repository_documentation() {
    let root = root();
    let mut checked = Vec::new();
    let mut errs = Vec::new();
    for (name, text) in series() {
        let patch = parse_patch(&name, &text).unwrap_or_else(|e| panic!("{e}"));
        let (c, e) = check_docs(&name, &patch, &root);
        checked.extend(c);
        errs.extend(e);
    }
    for want in [
        "Documentation/admin-guide/vmfair.rst",
        "Documentation/scheduler/vmfair.rst",
    ] {
        assert!(
            checked.iter().any(|c| c == want),
            "no patch in the series adds {want} (checked: {checked:?})"
        );
    }
    assert!(errs.is_empty(), "{}\n({FIX})", errs.join("\n"));
}

#[test]
fn hunk_headers_and_diffstats_match_the_diffs() {
    let mut errs = Vec::new();
    for (name, text) in series() {
        match parse_patch(&name, &text) {
            Ok(patch) => errs.extend(check_diffstat(&name, &patch)),
            Err(e) => errs.push(e),
        }
    }
    assert!(errs.is_empty(), "{}", errs.join("\n"));
}

/// Lines (1-based) that end in white space.
fn trailing_whitespace(text: &str) -> Vec<usize> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| l.ends_with([' ', '\t']))
        .map(|(i, _)| i + 1)
        .collect()
}

/// The patches are stored with blank context lines empty (not one space) and without
/// format-patch's "-- " signature: checkpatch.pl checks a relative path that git tracks as a
/// source file, not as a patch, so `checkpatch.pl patches/*.patch` run in this repository
/// would report every such line as trailing white space. `git am` and `git apply` read an
/// empty line in a hunk as an empty context line.
#[test]
fn patches_have_no_trailing_whitespace() {
    let mut errs = Vec::new();
    for (name, text) in series() {
        let lines = trailing_whitespace(&text);
        if !lines.is_empty() {
            errs.push(format!("{name}: trailing white space on lines {lines:?}"));
        }
    }
    assert!(errs.is_empty(), "{}", errs.join("\n"));
    // The format-patch form has it: the check can fail.
    assert_eq!(trailing_whitespace(SAMPLE), [29]);
    assert_eq!(trailing_whitespace("a\n\nb\t\n"), [3]);
}

const SAMPLE: &str = "From 0 Mon Sep 17 00:00:00 2001
Subject: [PATCH] Documentation: x

---
 Documentation/a.rst | 3 +++
 b.c                 | 3 ++-
 2 files changed, 5 insertions(+), 1 deletion(-)
 create mode 100644 Documentation/a.rst

diff --git a/Documentation/a.rst b/Documentation/a.rst
new file mode 100644
index 000000000..111111111
--- /dev/null
+++ b/Documentation/a.rst
@@ -0,0 +1,3 @@
+one
+
+three
diff --git a/b.c b/b.c
index 222222222..333333333 100644
--- a/b.c
+++ b/b.c
@@ -1,3 +1,4 @@
 int a;
-int b;
+int b = 1;
+int c;
 int d;
-- 
2.47.3
";

/// A scratch directory under the system's temporary directory, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("xtask-docsync-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("Documentation")).expect("scratch directory");
        Scratch(dir)
    }

    fn write(&self, rel: &str, text: &str) {
        let p = self.0.join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, text).expect("write");
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn sample_patch_is_read() {
    let p = parse_patch("s", SAMPLE).expect("parses");
    assert_eq!(p.files.len(), 2);
    assert!(p.files[0].new_file && !p.files[1].new_file);
    assert_eq!(p.files[0].new_content(), "one\n\nthree\n");
    assert_eq!((p.files[1].added(), p.files[1].deleted()), (2, 1));
    assert!(check_diffstat("s", &p).is_empty());
    let s = Scratch::new("same");
    s.write("Documentation/a.rst", "one\n\nthree\n");
    let (checked, errs) = check_docs("s", &p, &s.0);
    assert_eq!(checked, ["Documentation/a.rst"]);
    assert!(errs.is_empty(), "{errs:?}");
}

#[test]
fn a_changed_repository_file_is_named_with_its_line() {
    let p = parse_patch("s", SAMPLE).expect("parses");
    let s = Scratch::new("changed");
    s.write("Documentation/a.rst", "one\n\nthree!\n");
    let (_, errs) = check_docs("s", &p, &s.0);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].contains("Documentation/a.rst: line 3 differs") && errs[0].contains("three!"),
        "{}",
        errs[0]
    );

    // A missing final newline is a difference too.
    s.write("Documentation/a.rst", "one\n\nthree");
    let (_, errs) = check_docs("s", &p, &s.0);
    assert!(errs[0].contains("line 3 differs"), "{errs:?}");

    // A line more in the repository.
    s.write("Documentation/a.rst", "one\n\nthree\nfour\n");
    let (_, errs) = check_docs("s", &p, &s.0);
    assert!(
        errs[0].contains("first missing line 4") && errs[0].contains("four"),
        "{errs:?}"
    );

    // No repository copy at all.
    std::fs::remove_file(s.0.join("Documentation/a.rst")).expect("rm");
    let (_, errs) = check_docs("s", &p, &s.0);
    assert!(errs[0].contains("no such file"), "{errs:?}");
}

#[test]
fn a_modified_copy_of_the_real_documentation_fails() {
    // The real patch against a scratch repository that holds its files,
    // then against one in which a line of the admin guide changed.
    let (name, text) = series()
        .into_iter()
        .find(|(n, _)| n.starts_with("0004-"))
        .expect("patch 0004 in the series");
    let patch = parse_patch(&name, &text).expect("parses");
    let s = Scratch::new("real");
    for f in patch.files.iter().filter(|f| f.new_file) {
        s.write(&f.path, &f.new_content());
    }
    let (checked, errs) = check_docs(&name, &patch, &s.0);
    assert_eq!(checked.len(), 2);
    assert!(errs.is_empty(), "{errs:?}");

    let rel = "Documentation/admin-guide/vmfair.rst";
    let t = std::fs::read_to_string(s.0.join(rel)).expect("copy");
    let mut lines: Vec<&str> = t.split_inclusive('\n').collect();
    lines[9] = "an edit the patch does not have\n";
    s.write(rel, &lines.concat());
    let (_, errs) = check_docs(&name, &patch, &s.0);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].contains(&format!("{rel}: line 10 differs")),
        "{}",
        errs[0]
    );
}

#[test]
fn a_hunk_with_a_wrong_count_is_caught() {
    // One line too few for the header.
    let short = SAMPLE.replace("+\n+three\n", "+three\n");
    let e = parse_patch("s", &short).unwrap_err();
    assert!(
        e.contains("line 18: hunk at line 15") && e.contains("fewer lines"),
        "{e}"
    );

    // One line too many.
    let long = SAMPLE.replace("+three\n", "+three\n+four\n");
    let e = parse_patch("s", &long).unwrap_err();
    assert!(
        e.contains("line 19: hunk at line 15") && e.contains("more"),
        "{e}"
    );

    // In the last hunk, an extra line is caught before the signature.
    let long = SAMPLE.replace(" int d;\n", " int d;\n+int e;\n");
    let e = parse_patch("s", &long).unwrap_err();
    assert!(e.contains("hunk at line 23"), "{e}");

    // A header that claims one line more than there is: the signature
    // line "-- " would be an old line, then "2.47.3" is no hunk line.
    let long = SAMPLE.replace("@@ -1,3 +1,4 @@", "@@ -1,4 +1,5 @@");
    let e = parse_patch("s", &long).unwrap_err();
    assert!(e.contains("hunk at line 23"), "{e}");

    // The real admin guide hunk with one line dropped.
    let (name, text) = series()
        .into_iter()
        .find(|(n, _)| n.starts_with("0004-"))
        .expect("patch 0004 in the series");
    let i = text.find("\n+Requirements\n").expect("a line to drop");
    let cut = format!("{}{}", &text[..i], &text[i + "\n+Requirements".len()..]);
    let e = parse_patch(&name, &cut).unwrap_err();
    assert!(e.contains("fewer lines") || e.contains("more"), "{e}");
}

#[test]
fn a_wrong_diffstat_is_caught() {
    let p = parse_patch("s", &SAMPLE.replace("| 3 +++", "| 4 ++++")).expect("parses");
    let errs = check_diffstat("s", &p);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].contains("Documentation/a.rst 4 changed lines, the diff has 3"),
        "{errs:?}"
    );
}

#[test]
fn hunk_headers_are_read() {
    assert_eq!(hunk_header("@@ -0,0 +1,230 @@"), Some((0, 0, 1, 230)));
    assert_eq!(hunk_header("@@ -5 +5,2 @@ fn x()"), Some((5, 1, 5, 2)));
    assert_eq!(hunk_header("@@ -a +1 @@"), None);
}
