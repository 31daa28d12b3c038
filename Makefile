# vmfair: the front door. Every target is a thin wrapper over `cargo xtask`
# (xtask/), which does the work and shows progress for the long phases.
#
#   make demo       the main job: build, boot, run the demo experiment into results/demo/
#   make test       the full test suite, ending with "N passed, N failed"
#   make kernel     patched, Rust-enabled Linux 7.3 (incremental)
#   make module     the out-of-tree Rust module rust/vmfair
#   make kunit      boot and run the module's KUnit suites
#   make scenario SCENARIO=qemu-test/scenarios/x.toml
#   make check      rustfmt, clippy, checkpatch.pl
#   make overhead   what vmfair costs a host (benchmark), into results/overhead/
#   make scale      vmfair with 1 to 1024 concurrent VMs
#   make debug-kernel  the debug kernel (kconfig/debug.config) beside the normal one
#   make stress     vmfair under concurrent load on the debug kernel (MINUTES=10)
#   make peers      the kernel's slow KVM/cgroup selftests, without and with vmfair
#
# Build cache: $VMFAIR_CACHE (default ~/.cache/vmfair).

CARGO ?= cargo
XTASK = $(CARGO) xtask
SCENARIO ?=

.PHONY: all demo test kernel module kunit scenario check toolchain source patch config initramfs clean

all: demo

demo:
	$(XTASK) demo

test:
	$(XTASK) test

# vmfair with 1, 64, 256 and 1024 VMs into results/scale/ (Documentation/vmfair/scale.rst).
.PHONY: scale
scale:
	$(XTASK) scale

# The debug kernel and module, and vmfair under load on it into results/stress/
# (Documentation/vmfair/robustness.rst). MINUTES=30 for a longer run.
MINUTES ?= 10
.PHONY: debug-kernel stress
debug-kernel:
	$(XTASK) debug-kernel

stress:
	$(XTASK) stress --minutes $(MINUTES)

# The study's full sweep (qemu-test/experiments/bench.toml) into results/bench/.
.PHONY: bench
bench:
	$(XTASK) bench

# The kernel's slow KVM and cgroup cpu selftests without and with vmfair
# (the quick ones run in make test; Documentation/vmfair/peer-suites.rst).
.PHONY: peers
peers:
	$(XTASK) peers --slow

# What vmfair costs a host: benchmarks under stock, off and vmfair into
# results/overhead/ (Documentation/vmfair/performance.rst).
.PHONY: overhead
overhead:
	$(XTASK) overhead

toolchain source patch config kernel module initramfs:
	$(XTASK) $@

kunit:
	$(XTASK) boot info kunit dmesg

scenario:
	@test -n "$(SCENARIO)" || { echo "usage: make scenario SCENARIO=path/to/file.toml" >&2; exit 2; }
	$(XTASK) scenario $(SCENARIO)

check:
	$(XTASK) check

clean:
	rm -rf target results
