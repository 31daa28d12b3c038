//! The documentation exists twice: as the repository's
//! `Documentation/admin-guide/vmfair.rst` and `Documentation/scheduler/vmfair.rst`,
//! and as the new files the documentation patch of the series adds to the kernel. The
//! repository files are the source; `scripts/series.sh export` folds them into the patch
//! with `git format-patch`. These tests read the patches with `git apply` itself, as
//! `git am` will: they fail when a patch is one git cannot read, when the new files it
//! writes differ from the repository's, and when a patch carries trailing white space.
#![cfg(test)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository files that the documentation patch adds to the kernel.
const DOCS: [&str; 2] = [
    "Documentation/admin-guide/vmfair.rst",
    "Documentation/scheduler/vmfair.rst",
];

const FIX: &str = "edit the repository files, then run scripts/series.sh (checkout, export)";

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

/// A scratch directory under the system's temporary directory, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("xtask-docsync-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch directory");
        Scratch(dir)
    }

    fn write(&self, rel: &str, text: &str) -> PathBuf {
        let p = self.0.join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, text).expect("write");
        p
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `git apply ARGS PATCH` in `dir` (no repository needed); its stdout, or its error.
fn git_apply(dir: &Path, args: &[&str], patch: &Path) -> Result<String, String> {
    let out = Command::new("git")
        .current_dir(dir)
        .arg("apply")
        .args(args)
        .arg(patch)
        .output()
        .map_err(|e| format!("cannot run git: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// Files a patch creates, as `git apply --numstat --summary` reports them.
fn created(summary: &str) -> Vec<String> {
    summary
        .lines()
        .filter_map(|l| l.trim().strip_prefix("create mode "))
        .filter_map(|l| l.split_once(' ').map(|(_, p)| p.to_string()))
        .collect()
}

/// Writes the files of DOCS that `patch` creates into `dir` with `git apply`, and compares
/// each with the file of the same path under `repo`. Returns the files compared and the
/// differences found, each naming the file and its first differing line.
fn check_docs(name: &str, patch: &Path, dir: &Path, repo: &Path) -> (Vec<String>, Vec<String>) {
    let mut errs = Vec::new();
    let summary = match git_apply(dir, &["--summary"], patch) {
        Ok(s) => s,
        Err(e) => return (Vec::new(), vec![format!("{name}: git apply: {e}")]),
    };
    let docs: Vec<String> = created(&summary)
        .into_iter()
        .filter(|p| DOCS.contains(&p.as_str()))
        .collect();
    if docs.is_empty() {
        return (docs, errs);
    }
    let include: Vec<String> = docs.iter().map(|d| format!("--include={d}")).collect();
    let include: Vec<&str> = include.iter().map(String::as_str).collect();
    if let Err(e) = git_apply(dir, &include, patch) {
        return (docs, vec![format!("{name}: git apply: {e}")]);
    }
    for d in &docs {
        let in_patch = std::fs::read_to_string(dir.join(d)).unwrap_or_default();
        match std::fs::read_to_string(repo.join(d)) {
            Ok(in_repo) => {
                if let Some(line) = first_difference(&in_patch, &in_repo) {
                    errs.push(format!(
                        "{name}: {d}: line {line} differs from the repository's {d}; {FIX}"
                    ));
                }
            }
            Err(e) => errs.push(format!("{name} adds {d}, the repository has none ({e})")),
        }
    }
    (docs, errs)
}

/// The 1-based number of the first line where `a` and `b` differ, `None` if equal.
fn first_difference(a: &str, b: &str) -> Option<usize> {
    if a == b {
        return None;
    }
    let (mut la, mut lb) = (a.split_inclusive('\n'), b.split_inclusive('\n'));
    let mut n = 1;
    loop {
        match (la.next(), lb.next()) {
            (Some(x), Some(y)) if x == y => n += 1,
            _ => return Some(n),
        }
    }
}

#[test]
fn patches_carry_the_repository_documentation() {
    let root = root();
    let mut checked = Vec::new();
    let mut errs = Vec::new();
    for (name, _) in series() {
        let s = Scratch::new("series");
        let (c, e) = check_docs(&name, &root.join("patches").join(&name), &s.0, &root);
        checked.extend(c);
        errs.extend(e);
    }
    assert!(errs.is_empty(), "{}", errs.join("\n"));
    checked.sort();
    assert_eq!(
        checked, DOCS,
        "the series must add each documentation file once"
    );
}

#[test]
fn git_can_read_every_patch() {
    let root = root();
    let s = Scratch::new("numstat");
    let errs: Vec<String> = series()
        .into_iter()
        .filter_map(|(name, _)| {
            git_apply(&s.0, &["--numstat"], &root.join("patches").join(&name))
                .err()
                .map(|e| format!("{name}: {e}"))
        })
        .collect();
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
    assert_eq!(trailing_whitespace("a\n \nb\t\n"), [2, 3]);
}

const SAMPLE: &str = "From 0 Mon Sep 17 00:00:00 2001
Subject: [PATCH] Documentation: x

---
 Documentation/admin-guide/vmfair.rst | 3 +++
 b.c                                  | 3 ++-
 2 files changed, 5 insertions(+), 1 deletion(-)
 create mode 100644 Documentation/admin-guide/vmfair.rst

diff --git a/Documentation/admin-guide/vmfair.rst b/Documentation/admin-guide/vmfair.rst
new file mode 100644
index 000000000..111111111
--- /dev/null
+++ b/Documentation/admin-guide/vmfair.rst
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
";

#[test]
fn a_changed_repository_file_is_named_with_its_line() {
    let s = Scratch::new("sample");
    let patch = s.write("x.patch", SAMPLE);
    let repo = Scratch::new("sample-repo");
    let rel = DOCS[0];
    repo.write(rel, "one\n\nthree\n");
    let out = s.0.join("out");
    std::fs::create_dir_all(&out).expect("mkdir");
    let (checked, errs) = check_docs("x", &patch, &out, &repo.0);
    assert_eq!(checked, [rel]);
    assert!(errs.is_empty(), "{errs:?}");

    repo.write(rel, "one\n\n3\n");
    let out2 = s.0.join("out2");
    std::fs::create_dir_all(&out2).expect("mkdir");
    let (_, errs) = check_docs("x", &patch, &out2, &repo.0);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].contains(&format!("{rel}: line 3 differs")),
        "{errs:?}"
    );
}

#[test]
fn a_modified_copy_of_the_real_documentation_fails() {
    // The real documentation patch against a scratch repository that holds the same
    // files, then against one in which a line of the admin guide changed.
    let root = root();
    let name = series()
        .into_iter()
        .find(|(_, t)| t.contains(&format!("create mode 100644 {}", DOCS[0])))
        .map(|(n, _)| n)
        .expect("a patch in the series adds the admin guide");
    let patch = root.join("patches").join(&name);
    let repo = Scratch::new("real-repo");
    for d in DOCS {
        repo.write(
            d,
            &std::fs::read_to_string(root.join(d)).expect("repository file"),
        );
    }
    let out = Scratch::new("real");
    let (checked, errs) = check_docs(&name, &patch, &out.0, &repo.0);
    assert_eq!(checked.len(), 2);
    assert!(errs.is_empty(), "{errs:?}");

    let t = std::fs::read_to_string(repo.0.join(DOCS[0])).expect("copy");
    let mut lines: Vec<&str> = t.split_inclusive('\n').collect();
    lines[9] = "an edit the patch does not have\n";
    repo.write(DOCS[0], &lines.concat());
    let out = Scratch::new("real2");
    let (_, errs) = check_docs(&name, &patch, &out.0, &repo.0);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].contains(&format!("{}: line 10 differs", DOCS[0])),
        "{}",
        errs[0]
    );
}

#[test]
fn a_hunk_git_cannot_read_is_caught() {
    let s = Scratch::new("corrupt");
    let ok = s.write("ok.patch", SAMPLE);
    assert!(git_apply(&s.0, &["--numstat"], &ok).is_ok());
    // One line fewer than the header says, in the middle of the patch.
    let short = s.write("short.patch", &SAMPLE.replace("+\n+three\n", "+three\n"));
    let e = git_apply(&s.0, &["--numstat"], &short).unwrap_err();
    assert!(e.contains("corrupt patch"), "{e}");
    // The real admin guide hunk with one line dropped.
    let (name, text) = series()
        .into_iter()
        .find(|(_, t)| t.contains("\n+Requirements\n"))
        .expect("a line to drop");
    let i = text.find("\n+Requirements\n").expect("a line to drop");
    let cut = format!("{}{}", &text[..i], &text[i + "\n+Requirements".len()..]);
    let cut = s.write(&name, &cut);
    let e = git_apply(&s.0, &["--numstat"], &cut).unwrap_err();
    assert!(e.contains("corrupt patch"), "{e}");
}

#[test]
fn created_files_are_read_from_the_summary() {
    let summary = " create mode 100644 Documentation/a.rst\n mode change 100644 => 100755 x\n";
    assert_eq!(created(summary), ["Documentation/a.rst"]);
    assert!(created("").is_empty());
    assert_eq!(first_difference("a\nb\n", "a\nb\n"), None);
    assert_eq!(first_difference("a\nb\n", "a\nc\n"), Some(2));
    assert_eq!(first_difference("a\n", "a\nb\n"), Some(2));
}
