#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Check that every prefix of the patch series builds: apply the patches of
# patches/series one at a time onto pristine 7.3.4 and build bzImage after
# each, with the configuration of the newest test-kernel build (plus
# CONFIG_SCHED_VMFAIR=y once the option exists). Incremental, so about 5
# minutes for the first patch and little for the others on a 2-core machine.
#
# Needs a prepared cache (`make kernel` once): the kernel source tree with
# its vmfair-base tag, a build directory, bindgen. Works in a shared clone
# under $TMPDIR and never touches the cache's tree.
#
# Usage: scripts/build-each-patch.sh
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${VMFAIR_CACHE:-$HOME/.cache/vmfair}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/vmfair-each.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
SRC=$WORK/src
B=$WORK/build
CONFIG=$(ls -td "$CACHE"/build/*/ | head -1).config
[ -f "$CONFIG" ] || { echo "no built kernel config in $CACHE/build: run make kernel first" >&2; exit 1; }
mkdir -p "$B"
git clone -q --shared --no-checkout "$CACHE/src/linux-7.3.4" "$SRC"
git -C "$SRC" checkout -q -B each vmfair-base
cp "$CONFIG" "$B/.config"
export LIBCLANG_PATH=/usr/lib/llvm-22/lib
M=(make -C "$SRC" "O=$B" RUSTC=/usr/bin/rustc HOSTRUSTC=/usr/bin/rustc
   RUSTDOC=/usr/bin/rustdoc "BINDGEN=$CACHE/tools/bin/bindgen")
n=0
while read -r p; do
	case "$p" in ''|'#'*) continue ;; esac
	n=$((n + 1))
	git -C "$SRC" -c user.name=vmfair -c user.email=vmfair@localhost \
		am -q "$ROOT/patches/$p" || { echo "patch $n ($p) does not apply" >&2; exit 1; }
	grep -q '^CONFIG_SCHED_VMFAIR=y' "$B/.config" || echo 'CONFIG_SCHED_VMFAIR=y' >> "$B/.config"
	"${M[@]}" olddefconfig > /dev/null
	start=$(date +%s)
	if "${M[@]}" -j"$(nproc)" bzImage > "$B/log-$n" 2>&1; then
		echo "after patch $n ($p): bzImage builds in $(( $(date +%s) - start )) s," \
			"CONFIG_SCHED_VMFAIR=$(grep -q '^CONFIG_SCHED_VMFAIR=y' "$B/.config" && echo y || echo 'not yet')"
	else
		echo "after patch $n ($p): BUILD FAILED" >&2
		tail -20 "$B/log-$n" >&2
		exit 1
	fi
done < "$ROOT/patches/series"
echo "all $n prefixes of the series build"
