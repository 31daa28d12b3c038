#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Edit the patch series as git commits, and write it back with git
# format-patch.
#
#   scripts/series.sh checkout DIR
#	Makes DIR a small git tree: the pristine 7.3.4 copies of the files the
#	series touches (tag "base"), then one commit per patch (git am). Edit
#	there with ordinary git (commit --fixup, rebase -i, ...).
#
#   scripts/series.sh export DIR
#	Folds the repository's Documentation/admin-guide/vmfair.rst and
#	Documentation/scheduler/vmfair.rst into the documentation commit of
#	DIR (they are the one source of the documentation patch), then
#	rewrites patches/ from DIR with git format-patch, stored as patches/
#	keeps them: blank context lines empty and no signature (see
#	Documentation/vmfair/pipeline.rst).
#
# The pristine files come from the kernel source tree in the build cache
# ($VMFAIR_CACHE, default ~/.cache/vmfair; `cargo xtask source` makes it),
# a git tree whose tag vmfair-base is the unpacked package.

set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cache=${VMFAIR_CACHE:-$HOME/.cache/vmfair}
docs=(Documentation/admin-guide/vmfair.rst Documentation/scheduler/vmfair.rst)

usage() {
	echo "usage: $0 checkout DIR | export DIR" >&2
	exit 2
}

[ $# -eq 2 ] || usage
cmd=$1
dir=$2

git_() {
	git -C "$dir" -c user.name="vmfair developers" \
		-c user.email="vmfair@localhost" -c core.abbrev=9 "$@"
}

case "$cmd" in
checkout)
	src=$(ls -d "$cache"/src/linux-* 2>/dev/null | head -n 1)
	if [ -z "$src" ] || ! git -C "$src" rev-parse -q --verify vmfair-base >/dev/null; then
		echo "$0: no kernel source under $cache/src: run 'cargo xtask source'" >&2
		exit 1
	fi
	if [ -e "$dir" ]; then
		echo "$0: $dir exists" >&2
		exit 1
	fi
	# Files the series touches that exist before it (new files come from it,
	# even when a later patch changes them).
	mapfile -t files < <(comm -23 \
		<(sed -n 's#^--- a/##p' "$root"/patches/*.patch | sort -u) \
		<(sed -n '/^--- \/dev\/null$/{n;s#^+++ b/##p}' "$root"/patches/*.patch | sort -u))
	mkdir -p "$dir"
	git -C "$src" archive vmfair-base -- "${files[@]}" | tar -x -C "$dir"
	git_ init -q
	git_ add -A
	git_ commit -q -m "pristine files of linux-source-7.3 7.3.4"
	git_ tag base
	while read -r p; do
		git_ am -q --keep-cr "$root/patches/$p"
	done <"$root/patches/series"
	git_ log --oneline base..
	;;
export)
	git_ rev-parse -q --verify base >/dev/null || {
		echo "$0: $dir was not made by '$0 checkout'" >&2
		exit 1
	}
	doc_commit=$(git_ log --format=%H base.. -- "${docs[@]}" | tail -n 1)
	[ -n "$doc_commit" ] || { echo "$0: no commit adds ${docs[*]}" >&2; exit 1; }
	for f in "${docs[@]}"; do
		cp "$root/$f" "$dir/$f"
	done
	if ! git_ diff --quiet -- "${docs[@]}"; then
		git_ commit -q --fixup="$doc_commit" -- "${docs[@]}"
		GIT_SEQUENCE_EDITOR=: git_ rebase -q -i --autosquash base
	fi
	out=$(mktemp -d)
	git_ format-patch -q -n --zero-commit --no-signature -o "$out" base
	sed -i 's/^ $//' "$out"/*.patch
	rm -f "$root"/patches/*.patch
	cp "$out"/*.patch "$root/patches/"
	(cd "$out" && ls -1 *.patch) >"$root/patches/series"
	rm -rf "$out"
	git -C "$root" status --short -- patches
	;;
*)
	usage
	;;
esac
