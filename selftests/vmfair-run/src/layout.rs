// SPDX-License-Identifier: GPL-2.0
//! Layout of the shared state file (`--mem-file`) between a VMM or host process and the runner.
//!
//! A VMM's file is `[guest RAM: GUEST_MEM_SIZE][status: STATUS_SIZE]`; a host process's file is
//! the status area alone. Both sides map it `MAP_SHARED`; every field is an aligned u64 read and
//! written atomically, so the runner reads counters and health with no IPC.
//!
//! Guest physical memory (one slot at 0; the guest runs without paging, see `guest.rs`):
//!
//! | gpa | what |
//! | --- | --- |
//! | 0x1000 | code |
//! | 0x5000 | GDT |
//! | 0x6000 | IDT |
//! | 0x7000 + 64 * i | vCPU i's block: loop counter (u64), tick counter (u64), timer count (u32), burst cycles (u32), tick ring gpa (u32), reserved (u32), nominal tick period in TSC cycles (u64), TSC kHz (u64) |
//! | 0x8000 .. 0x10000 | stacks, 512 bytes per vCPU |
//! | 0x10000 + 128 * i | `bench`: vCPU i's benchmark block (parameters and sub-test records, see `bench.rs`) |
//! | 0x20000 .. 0x30000 | `bench`: source of the memory-copy test |
//! | 0x30000 .. 0x40000 | `bench`: destination of the memory-copy test |
//! | 0x40000 + 4096 * i | ticking loads: vCPU i's tick ring, `RING_SLOTS` u64 TSC stamps (tick k's handler entry in slot k mod `RING_SLOTS`, see `wakelat.rs`) |

/// Bytes of guest RAM.
pub const GUEST_MEM_SIZE: usize = 0x80000;
/// Guest code.
pub const CODE_GPA: u64 = 0x1000;
/// GDT.
pub const GDT_GPA: u64 = 0x5000;
/// IDT.
pub const IDT_GPA: u64 = 0x6000;
/// Per-vCPU counters.
pub const COUNTERS_GPA: u64 = 0x7000;
/// Bytes between two vCPUs' counters.
pub const COUNTER_STRIDE: u64 = 64;
/// Per-vCPU stacks, growing down from `STACKS_GPA + (i + 1) * STACK_SIZE`.
pub const STACKS_GPA: u64 = 0x8000;
/// Stack bytes per vCPU.
pub const STACK_SIZE: u64 = 512;
/// Most vCPUs (and busy threads) per process.
pub const MAX_THREADS: usize = 64;

/// Guest-physical address of vCPU `i`'s loop counter.
pub fn counter_gpa(i: usize) -> u64 {
    COUNTERS_GPA + COUNTER_STRIDE * i as u64
}

/// Guest-physical address of vCPU `i`'s tick counter (idle/bursty loads).
pub fn ticks_gpa(i: usize) -> u64 {
    counter_gpa(i) + 8
}

/// `bench`: per-vCPU benchmark blocks.
pub const BENCH_GPA: u64 = 0x10000;
/// `bench`: bytes between two vCPUs' benchmark blocks.
pub const BENCH_STRIDE: u64 = 128;
/// `bench`: source buffer of the memory-copy test.
pub const BENCH_SRC_GPA: u64 = 0x20000;
/// `bench`: destination buffer of the memory-copy test.
pub const BENCH_DST_GPA: u64 = 0x30000;
/// `bench`: room of each copy buffer.
pub const BENCH_BUF_SIZE: u64 = 0x10000;

/// Ticking loads: per-vCPU rings of tick stamps.
pub const RING_GPA: u64 = 0x40000;
/// Bytes between two vCPUs' rings.
pub const RING_STRIDE: u64 = 0x1000;
/// Stamps per ring (a power of two: the guest takes the slot as `ticks & (RING_SLOTS - 1)`).
pub const RING_SLOTS: u64 = RING_STRIDE / 8;

/// Guest-physical address of vCPU `i`'s tick ring.
pub fn ring_gpa(i: usize) -> u64 {
    RING_GPA + RING_STRIDE * i as u64
}

/// Guest-physical address of vCPU `i`'s benchmark block.
pub fn bench_gpa(i: usize) -> u64 {
    BENCH_GPA + BENCH_STRIDE * i as u64
}

/// Bytes of the status area.
pub const STATUS_SIZE: usize = 0x3000;
/// Magic at the start of the status area.
pub const MAGIC: u64 = u64::from_le_bytes(*b"VMFAIRv1");

// Offsets inside the status area (add the status base).
/// u64: MAGIC once the process has initialised the area.
pub const ST_MAGIC: usize = 0x00;
/// u64: pid of the process.
pub const ST_PID: usize = 0x08;
/// u64: process state, one of `STATE_*`.
pub const ST_STATE: usize = 0x10;
/// u64: number of vCPUs.
pub const ST_VCPUS: usize = 0x18;
/// u64: number of busy (io or host) threads.
pub const ST_BUSY: usize = 0x20;
/// u64: number of bad exits seen (any vCPU).
pub const ST_BAD_EXITS: usize = 0x28;
/// u64: length of the message at `ST_MSG`.
pub const ST_MSG_LEN: usize = 0x30;
/// Per-vCPU slots: `ST_VCPU + 32 * i`: tid, state, user-space exits, reserved.
pub const ST_VCPU: usize = 0x100;
/// Bytes per vCPU slot.
pub const ST_VCPU_STRIDE: usize = 32;
/// Busy thread counters: `ST_BUSY_CTR + 64 * j` (one cache line each).
pub const ST_BUSY_CTR: usize = 0x1000;
/// Bytes between two busy counters.
pub const ST_BUSY_STRIDE: usize = 64;
/// Text of the first errors (UTF-8, `ST_MSG_LEN` bytes).
pub const ST_MSG: usize = 0x2000;
/// Room for the message.
pub const ST_MSG_MAX: usize = 0x1000;

/// Process (or vCPU) is setting up.
pub const STATE_INIT: u64 = 0;
/// Running: all threads have started (a vCPU: it entered its run loop).
pub const STATE_RUNNING: u64 = 1;
/// Stopped cleanly.
pub const STATE_STOPPED: u64 = 2;
/// Failed (setup error, or a vCPU that saw a bad exit).
pub const STATE_FAILED: u64 = 3;

/// Offset of vCPU `i`'s slot field `field` (0 tid, 1 state, 2 exits).
pub fn vcpu_field(i: usize, field: usize) -> usize {
    ST_VCPU + ST_VCPU_STRIDE * i + 8 * field
}

/// Offset of busy thread `j`'s counter.
pub fn busy_counter(j: usize) -> usize {
    ST_BUSY_CTR + ST_BUSY_STRIDE * j
}

const _: () = assert!(ST_VCPU + ST_VCPU_STRIDE * MAX_THREADS <= ST_BUSY_CTR);
const _: () = assert!(ST_BUSY_CTR + ST_BUSY_STRIDE * MAX_THREADS <= ST_MSG);
const _: () = assert!(ST_MSG + ST_MSG_MAX <= STATUS_SIZE);
const _: () = assert!(COUNTERS_GPA + COUNTER_STRIDE * MAX_THREADS as u64 <= STACKS_GPA);
const _: () = assert!(STACKS_GPA + STACK_SIZE * MAX_THREADS as u64 <= BENCH_GPA);
const _: () = assert!(BENCH_GPA + BENCH_STRIDE * MAX_THREADS as u64 <= BENCH_SRC_GPA);
const _: () = assert!(BENCH_SRC_GPA + BENCH_BUF_SIZE <= BENCH_DST_GPA);
const _: () = assert!(BENCH_DST_GPA + BENCH_BUF_SIZE <= RING_GPA);
const _: () = assert!(RING_GPA + RING_STRIDE * MAX_THREADS as u64 <= GUEST_MEM_SIZE as u64);
const _: () = assert!(RING_SLOTS.is_power_of_two() && RING_SLOTS == 512);
