#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Rewrite the documentation patch of the series from the repository's files.
#
# Documentation/admin-guide/vmfair.rst and Documentation/scheduler/vmfair.rst
# are the source; patch 0004 adds them to the kernel as new files. This script
# replaces the body of every new-file hunk under Documentation/ in the patch
# with the repository file of the same path, and brings the rest of the patch
# in line: the hunk header (@@ -0,0 +1,N @@), the new blob's abbreviated hash
# on the index line, the diffstat lines (laid out as git format-patch does,
# 72 columns) and the summary line. The From line, commit message and the
# other files' diffs are kept as they are. Running it twice changes nothing.
#
# Usage: scripts/regen-doc-patch.sh [PATCH]
#   PATCH defaults to patches/0004-*.patch.
#
# `cargo test -p xtask` (xtask/src/docsync.rs) fails while the patch and the
# repository files differ.

set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
if [ $# -gt 1 ]; then
	echo "usage: $0 [PATCH]" >&2
	exit 2
fi
if [ $# -eq 1 ]; then
	patch=$1
else
	shopt -s nullglob
	found=("$root"/patches/0004-*.patch)
	if [ ${#found[@]} -ne 1 ]; then
		echo "$0: expected one patches/0004-*.patch, found ${#found[@]}" >&2
		exit 1
	fi
	patch=${found[0]}
fi

exec python3 - "$root" "$patch" <<'EOF'
import os
import re
import subprocess
import sys

root, patch_path = sys.argv[1], sys.argv[2]
HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")
STAT = re.compile(r"^ (\S.*?)\s+\| +(\d+)( [+-]*)?$")


def die(msg):
    sys.exit(f"{sys.argv[0]}: {patch_path}: {msg}")


def parse_hunk(lines, i):
    """Consume the hunk whose header is lines[i]; return (end, added, deleted)."""
    m = HUNK.match(lines[i])
    if not m:
        die(f"line {i + 1}: not a hunk header: {lines[i]!r}")
    old = int(m.group(2) if m.group(2) is not None else 1)
    new = int(m.group(4) if m.group(4) is not None else 1)
    added = deleted = 0
    j = i + 1
    while old > 0 or new > 0:
        if j >= len(lines):
            die(f"hunk at line {i + 1} ends before its header's count")
        line = lines[j]
        if line.startswith("\\"):
            pass
        elif line.startswith("+"):
            new -= 1
            added += 1
        elif line.startswith("-"):
            old -= 1
            deleted += 1
        elif line.startswith(" ") or line == "":
            old -= 1
            new -= 1
        else:
            die(f"line {j + 1}: hunk at line {i + 1} has fewer lines than its header says")
        if old < 0 or new < 0:
            die(f"line {j + 1}: hunk at line {i + 1} has other lines than its header says")
        j += 1
    if j < len(lines) and lines[j].startswith("\\"):
        j += 1
    return j, added, deleted


with open(patch_path, encoding="utf-8") as f:
    text = f.read()
lines = text.split("\n")
if lines[-1] == "":
    lines.pop()

first_diff = next((k for k, l in enumerate(lines) if l.startswith("diff --git ")), None)
if first_diff is None:
    die("no diff in the patch")
out = lines[:first_diff]
stats = []  # (path, added, deleted) in patch order
i = first_diff
while i < len(lines) and lines[i].startswith("diff --git "):
    m = re.match(r"^diff --git a/(\S+) b/(\S+)$", lines[i])
    if not m:
        die(f"line {i + 1}: cannot read {lines[i]!r}")
    path = m.group(2)
    start = i
    i += 1
    header = []
    while i < len(lines) and not lines[i].startswith("@@") and not lines[i].startswith("diff --git "):
        header.append(lines[i])
        i += 1
    new_file = any(h.startswith("new file mode ") for h in header)
    repo_file = os.path.join(root, path)
    if new_file and path.startswith("Documentation/") and os.path.isfile(repo_file):
        with open(repo_file, "rb") as f:
            data = f.read()
        try:
            content = data.decode("utf-8")
        except UnicodeDecodeError:
            die(f"{path} is not UTF-8")
        body = content.split("\n")
        no_eol = not content.endswith("\n")
        if not no_eol:
            body.pop()
        blob = subprocess.run(["git", "hash-object", "--no-filters", repo_file],
                              check=True, capture_output=True, text=True).stdout.strip()
        new_header = []
        for h in header:
            im = re.match(r"^index ([0-9a-f]+)\.\.([0-9a-f]+)(.*)$", h)
            if im:
                h = f"index {im.group(1)}..{blob[:len(im.group(2))]}{im.group(3)}"
            new_header.append(h)
        # Skip the old hunks.
        while i < len(lines) and lines[i].startswith("@@"):
            i, _, _ = parse_hunk(lines, i)
        out.append(lines[start])
        out.extend(new_header)
        if body or no_eol:
            out.append(f"@@ -0,0 +1,{len(body)} @@")
            out.extend("+" + l for l in body)
            if no_eol:
                out.append("\\ No newline at end of file")
        stats.append((path, len(body), 0))
        continue
    out.append(lines[start])
    out.extend(header)
    added = deleted = 0
    while i < len(lines) and lines[i].startswith("@@"):
        end, a, d = parse_hunk(lines, i)
        out.extend(lines[i:end])
        added += a
        deleted += d
        i = end
    stats.append((path, added, deleted))
trailer = lines[i:]
if not trailer or trailer[0] != "-- ":
    die(f"line {i + 1}: expected the '-- ' signature line after the last diff")
out.extend(trailer)

# The diffstat: between the '---' line and the first 'diff --git'.
sep = max(k for k in range(first_diff) if out[k] == "---")
stat_lines = [k for k in range(sep + 1, first_diff) if STAT.match(out[k])]
if [STAT.match(out[k]).group(1) for k in stat_lines] != [p for p, _, _ in stats]:
    die("the diffstat does not list the patch's files in order")


def decimal_width(n):
    return len(str(n))


def scale_linear(it, width, max_change):
    # git's diff.c: at least one column for any change.
    return 0 if it == 0 else 1 + (it * (width - 1) // max_change)


# git format-patch: diff.c show_stats() with stat_width = 72.
width = 72
max_len = max(len(p) for p, _, _ in stats)
max_change = max(a + d for _, a, d in stats)
number_width = decimal_width(max_change)
graph_width = max_change
name_width = max_len
if name_width + number_width + 6 + graph_width > width:
    if graph_width > width * 3 // 8 - number_width - 6:
        graph_width = max(width * 3 // 8 - number_width - 6, 6)
    if name_width > width - number_width - 6 - graph_width:
        name_width = width - number_width - 6 - graph_width
    else:
        graph_width = width - number_width - 6 - name_width
for k, (path, a, d) in zip(stat_lines, stats):
    name, prefix = path, ""
    if len(name) > name_width:
        prefix = "..."
        name = name[len(name) - max(name_width - 3, 0):]
        if "/" in name:
            name = name[name.index("/"):]
    pad = max(name_width - len(prefix) - len(name), 0)
    add, dele = a, d
    if graph_width <= max_change:
        total = scale_linear(a + d, graph_width, max_change)
        if total < 2 and a and d:
            total = 2
        if a < d:
            add = scale_linear(a, graph_width, max_change)
            dele = total - add
        else:
            dele = scale_linear(d, graph_width, max_change)
            add = total - dele
    out[k] = (f" {prefix}{name}{' ' * pad} | {a + d:>{number_width}}"
              f"{' ' if a + d else ''}{'+' * add}{'-' * dele}")

files = len(stats)
ins = sum(a for _, a, _ in stats)
dels = sum(d for _, _, d in stats)
summary = f" {files} file changed" if files == 1 else f" {files} files changed"
if ins or not dels:
    summary += f", {ins} insertion(+)" if ins == 1 else f", {ins} insertions(+)"
if dels or not ins:
    summary += f", {dels} deletion(-)" if dels == 1 else f", {dels} deletions(-)"
summary_at = [k for k in range(sep + 1, first_diff) if re.match(r"^ \d+ files? changed", out[k])]
if len(summary_at) != 1:
    die("no diffstat summary line")
out[summary_at[0]] = summary

new_text = "\n".join(out) + "\n"
if new_text != text:
    with open(patch_path, "w", encoding="utf-8") as f:
        f.write(new_text)
    print(f"rewrote {os.path.relpath(patch_path, root)}")
else:
    print(f"{os.path.relpath(patch_path, root)} is up to date")
EOF
