// SPDX-License-Identifier: GPL-2.0
//! The L2 guest programs: 32-bit protected mode, flat segments, no paging (no guest page walk
//! to go wrong in the nested set-up; long-mode-free guests ran on this test bed, see Documentation/vmfair/contract.rst).
//!
//! The code is assembled into this binary as data (never run on the host) and copied into guest
//! RAM at `CODE_GPA`; it uses only relative jumps and calls and absolute guest addresses.
//!
//! At entry `ebx` points to the vCPU's block in guest RAM (see `layout.rs`):
//! `[ebx]` u64 loop counter, `[ebx+8]` u64 tick counter, `[ebx+16]` u32 timer count,
//! `[ebx+20]` u32 burst length in TSC cycles, `[ebx+24]` u32 address of the vCPU's tick ring
//! (ticking loads; `[ebx+32]` and `[ebx+40]` are for the runner only: the nominal tick period
//! in TSC cycles and the TSC kHz); `edi` is the vCPU index, `esp` its stack.
//! Counters are 64-bit, kept as `add lo, 1; adc hi, 0`: a reader's 8-byte load can only tear
//! in the one instruction between the two on a carry (once per 2^32 iterations), and the
//! runner's "counters only grow" check would catch that.
//!
//! `busy`: count loop iterations forever; it never exits to the VMM.
//!
//! `idle`/`bursty`: halt between timer ticks and count loop iterations for the burst length
//! per tick. vCPU 0 takes its tick from the in-kernel PIT (channel 0, mode 2) through the
//! in-kernel PIC (IRQ 0 at vector 0x20, LAPIC LINT0 in ExtINT mode), as in §5's measurements;
//! vCPUs 1.. use their in-kernel LAPIC timer (one-shot at vector 0x30, re-armed first thing in
//! each tick, as a tickful guest with a one-shot clock event does), since the PIC only reaches
//! vCPU 0. HLT, PIT, PIC and LAPIC are all handled inside KVM: a healthy guest never exits to
//! the VMM.
//!
//! Each tick handler first reads the TSC and stores it (two 32-bit stores) in ring slot
//! `ticks mod RING_SLOTS`, where `ticks` is the tick counter before this tick counts itself;
//! the counter is bumped only after the stamp is written, so a reader that sees the counter at
//! `n` finds the stamps of ticks `..n` complete (x86 keeps stores in order). The runner turns
//! the stamps into each tick's wake-up latency (`wakelat.rs`).

use crate::layout::*;
use crate::sys::SharedMem;

/// PIT input clock, Hz.
pub const PIT_HZ: u64 = 1_193_182;
/// KVM's LAPIC timer counts at 1 GHz (one bus cycle per ns) with divide-by-1.
pub const LAPIC_TIMER_HZ: u64 = 1_000_000_000;
/// Vector of the PIT tick (PIC IRQ 0).
pub const PIC_VECTOR: usize = 0x20;
/// Vector of the LAPIC timer tick.
pub const APIC_VECTOR: usize = 0x30;
/// Offset of the timer count in a vCPU block.
pub const BLOCK_TIMER: u64 = 16;
/// Offset of the burst length in a vCPU block.
pub const BLOCK_BURST: u64 = 20;
/// Offset of the tick ring's address in a vCPU block.
pub const BLOCK_RING: u64 = 24;
/// Offset of the nominal tick period in TSC cycles (u64) in a vCPU block.
pub const BLOCK_PERIOD: u64 = 32;
/// Offset of the vCPU's TSC kHz (u64) in a vCPU block.
pub const BLOCK_TSC_KHZ: u64 = 40;

std::arch::global_asm!(
    ".pushsection .rodata.vmfair_guest,\"a\"",
    ".code32",
    ".globl vmfair_busy_start",
    ".globl vmfair_busy_end",
    "vmfair_busy_start:",
    ".Lvmfair_busy_loop:",
    "    add dword ptr [ebx], 1",
    "    adc dword ptr [ebx + 4], 0",
    "    jmp .Lvmfair_busy_loop",
    "vmfair_busy_end:",
    ".globl vmfair_idle_start",
    ".globl vmfair_idle_pic_handler",
    ".globl vmfair_idle_apic_handler",
    ".globl vmfair_idle_spurious",
    ".globl vmfair_idle_end",
    "vmfair_idle_start:",
    // LAPIC software enable, spurious vector 0xff.
    "    mov dword ptr [0xfee000f0], 0x1ff",
    "    test edi, edi",
    "    jnz .Lvmfair_ap",
    // vCPU 0: LINT0 = ExtINT, unmasked; PIC remapped to 0x20, only IRQ 0 unmasked.
    "    mov dword ptr [0xfee00350], 0x700",
    "    mov al, 0x11",
    "    out 0x20, al",
    "    mov al, 0x20",
    "    out 0x21, al",
    "    mov al, 0x04",
    "    out 0x21, al",
    "    mov al, 0x01",
    "    out 0x21, al",
    "    mov al, 0xfe",
    "    out 0x21, al",
    "    mov al, 0xff",
    "    out 0xa1, al",
    // PIT channel 0, lobyte/hibyte, mode 2 (rate generator), divisor from the block.
    "    mov al, 0x34",
    "    out 0x43, al",
    "    mov eax, dword ptr [ebx + 16]",
    "    out 0x40, al",
    "    mov al, ah",
    "    out 0x40, al",
    "    jmp .Lvmfair_idle",
    ".Lvmfair_ap:",
    // Other vCPUs: LAPIC timer divide by 1, one-shot, vector 0x30, count from the block.
    "    mov dword ptr [0xfee003e0], 0xb",
    "    mov dword ptr [0xfee00320], 0x30",
    "    mov eax, dword ptr [ebx + 16]",
    "    mov dword ptr [0xfee00380], eax",
    ".Lvmfair_idle:",
    "    sti",
    "    hlt",
    "    jmp .Lvmfair_idle",
    "vmfair_idle_pic_handler:",
    "    push eax",
    "    push ecx",
    "    push edx",
    "    call .Lvmfair_stamp",
    "    call .Lvmfair_burst",
    "    mov al, 0x20",
    "    out 0x20, al",
    "    pop edx",
    "    pop ecx",
    "    pop eax",
    "    iretd",
    "vmfair_idle_apic_handler:",
    "    push eax",
    "    push ecx",
    "    push edx",
    "    call .Lvmfair_stamp",
    "    mov eax, dword ptr [ebx + 16]",
    "    mov dword ptr [0xfee00380], eax",
    "    call .Lvmfair_burst",
    "    mov dword ptr [0xfee000b0], 0",
    "    pop edx",
    "    pop ecx",
    "    pop eax",
    "    iretd",
    "vmfair_idle_spurious:",
    "    iretd",
    // The tick's TSC into ring slot (ticks mod 512) at [ebx + 24], before the tick counts.
    ".Lvmfair_stamp:",
    "    rdtsc",
    "    mov ecx, dword ptr [ebx + 8]",
    "    and ecx, 511",
    "    shl ecx, 3",
    "    add ecx, dword ptr [ebx + 24]",
    "    mov dword ptr [ecx], eax",
    "    mov dword ptr [ecx + 4], edx",
    "    ret",
    // One tick: count it, then count loop iterations for [ebx + 20] TSC cycles.
    ".Lvmfair_burst:",
    "    add dword ptr [ebx + 8], 1",
    "    adc dword ptr [ebx + 12], 0",
    "    rdtsc",
    "    mov ecx, eax",
    ".Lvmfair_burst_loop:",
    "    add dword ptr [ebx], 1",
    "    adc dword ptr [ebx + 4], 0",
    "    rdtsc",
    "    sub eax, ecx",
    "    cmp eax, dword ptr [ebx + 20]",
    "    jb .Lvmfair_burst_loop",
    "    ret",
    "vmfair_idle_end:",
    // bench (see bench.rs): esi = this vCPU's bench block; loop over passes of arith, copy
    // and io, each timed with rdtsc and recorded under the block's sequence word.
    ".globl vmfair_bench_start",
    ".globl vmfair_bench_end",
    "vmfair_bench_start:",
    "    mov esi, edi",
    "    shl esi, 7",
    "    add esi, 0x10000",
    ".Lvmfair_bench_pass:",
    // arith: [esi] rounds of an integer chain.
    "    call .Lvmfair_bench_t0",
    "    mov ecx, dword ptr [esi]",
    "    mov eax, 1",
    "    mov edx, 7",
    ".Lvmfair_bench_arith:",
    "    imul eax, eax, 1103515245",
    "    add eax, 12345",
    "    xor edx, eax",
    "    rol edx, 5",
    "    add edx, ecx",
    "    dec ecx",
    "    jnz .Lvmfair_bench_arith",
    "    mov dword ptr [esi + 72], edx",
    "    mov ecx, dword ptr [esi]",
    "    mov ebp, 16",
    "    call .Lvmfair_bench_record",
    // copy: [esi + 4] copies of [esi + 12] dwords from 0x20000 to 0x30000.
    "    call .Lvmfair_bench_t0",
    "    mov ebp, dword ptr [esi + 4]",
    ".Lvmfair_bench_copy:",
    "    push esi",
    "    push edi",
    "    mov ecx, dword ptr [esi + 12]",
    "    mov esi, 0x20000",
    "    mov edi, 0x30000",
    "    cld",
    "    rep movsd",
    "    pop edi",
    "    pop esi",
    "    dec ebp",
    "    jnz .Lvmfair_bench_copy",
    "    mov ecx, dword ptr [esi + 4]",
    "    mov ebp, 32",
    "    call .Lvmfair_bench_record",
    // io: [esi + 8] round trips to the VMM, each sending the next sequence number.
    "    call .Lvmfair_bench_t0",
    "    mov ebp, dword ptr [esi + 8]",
    ".Lvmfair_bench_io:",
    "    mov eax, dword ptr [esi + 96]",
    "    inc eax",
    "    mov dword ptr [esi + 96], eax",
    "    mov dx, 0x500",
    "    out dx, eax",
    "    dec ebp",
    "    jnz .Lvmfair_bench_io",
    "    mov ecx, dword ptr [esi + 8]",
    "    mov ebp, 48",
    "    call .Lvmfair_bench_record",
    // One more pass done.
    "    add dword ptr [ebx], 1",
    "    adc dword ptr [ebx + 4], 0",
    "    jmp .Lvmfair_bench_pass",
    // Start time of a sub-test into [esi + 80].
    ".Lvmfair_bench_t0:",
    "    rdtsc",
    "    mov dword ptr [esi + 80], eax",
    "    mov dword ptr [esi + 84], edx",
    "    ret",
    // Record at [esi + ebp]: ops += ecx, cycles += now - start; seq odd while updating.
    ".Lvmfair_bench_record:",
    "    rdtsc",
    "    sub eax, dword ptr [esi + 80]",
    "    sbb edx, dword ptr [esi + 84]",
    "    add dword ptr [esi + 88], 1",
    "    add dword ptr [esi + ebp], ecx",
    "    adc dword ptr [esi + ebp + 4], 0",
    "    add dword ptr [esi + ebp + 8], eax",
    "    adc dword ptr [esi + ebp + 12], edx",
    "    add dword ptr [esi + 88], 1",
    "    ret",
    "vmfair_bench_end:",
    ".code64",
    ".popsection",
);

extern "C" {
    static vmfair_busy_start: u8;
    static vmfair_busy_end: u8;
    static vmfair_idle_start: u8;
    static vmfair_idle_pic_handler: u8;
    static vmfair_idle_apic_handler: u8;
    static vmfair_idle_spurious: u8;
    static vmfair_idle_end: u8;
    static vmfair_bench_start: u8;
    static vmfair_bench_end: u8;
}

/// An assembled guest program and the offsets of its interrupt handlers.
struct Program {
    bytes: &'static [u8],
    pic_handler: usize,
    apic_handler: usize,
    spurious: usize,
}

fn busy_program() -> &'static [u8] {
    // SAFETY: both symbols are labels of the global_asm! block above, in one section in this
    // order, so start..end is one initialised, immutable byte range of the binary.
    unsafe {
        let start = std::ptr::addr_of!(vmfair_busy_start);
        let end = std::ptr::addr_of!(vmfair_busy_end);
        std::slice::from_raw_parts(start, end as usize - start as usize)
    }
}

fn bench_program() -> &'static [u8] {
    // SAFETY: as in busy_program: labels of one section, start..end one immutable byte range.
    unsafe {
        let start = std::ptr::addr_of!(vmfair_bench_start);
        let end = std::ptr::addr_of!(vmfair_bench_end);
        std::slice::from_raw_parts(start, end as usize - start as usize)
    }
}

fn idle_program() -> Program {
    // SAFETY: as in busy_program: labels of one section, start..end one immutable byte range.
    unsafe {
        let start = std::ptr::addr_of!(vmfair_idle_start);
        let end = std::ptr::addr_of!(vmfair_idle_end);
        let off = |p: *const u8| p as usize - start as usize;
        Program {
            bytes: std::slice::from_raw_parts(start, off(end)),
            pic_handler: off(std::ptr::addr_of!(vmfair_idle_pic_handler)),
            apic_handler: off(std::ptr::addr_of!(vmfair_idle_apic_handler)),
            spurious: off(std::ptr::addr_of!(vmfair_idle_spurious)),
        }
    }
}

/// A 32-bit interrupt gate to `target` in code segment 8.
fn idt_gate(target: u32) -> [u8; 8] {
    let mut g = [0u8; 8];
    g[0..2].copy_from_slice(&(target as u16).to_le_bytes());
    g[2..4].copy_from_slice(&8u16.to_le_bytes());
    g[5] = 0x8e; // present, DPL 0, 32-bit interrupt gate
    g[6..8].copy_from_slice(&((target >> 16) as u16).to_le_bytes());
    g
}

/// IDT limit for the load: 0 for busy (any interrupt or exception is a triple fault, which
/// KVM reports as SHUTDOWN), 256 gates for the ticking loads.
pub fn idt_limit(ticking: bool) -> u16 {
    if ticking {
        8 * 256 - 1
    } else {
        0
    }
}

/// Which guest program to build.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `busy`: count loop iterations.
    Busy,
    /// `idle`/`bursty`: halt between ticks.
    Ticking,
    /// `bench`: the suite of `bench.rs`.
    Bench,
}

/// Writes the GDT, the program and (ticking loads) the IDT into zeroed guest RAM.
pub fn build(mem: &SharedMem, kind: Kind) {
    let q = |gpa: u64, v: u64| mem.write_bytes(gpa as usize, &v.to_le_bytes());
    q(GDT_GPA + 8, 0x00cf_9b00_0000_ffff); // 32-bit code, DPL 0, 4 GiB
    q(GDT_GPA + 16, 0x00cf_9300_0000_ffff); // data, 4 GiB
    match kind {
        Kind::Busy => return mem.write_bytes(CODE_GPA as usize, busy_program()),
        Kind::Bench => return mem.write_bytes(CODE_GPA as usize, bench_program()),
        Kind::Ticking => {}
    }
    let p = idle_program();
    mem.write_bytes(CODE_GPA as usize, p.bytes);
    let gate = |vector: usize, off: usize| {
        mem.write_bytes(
            IDT_GPA as usize + 8 * vector,
            &idt_gate(CODE_GPA as u32 + off as u32),
        )
    };
    gate(PIC_VECTOR, p.pic_handler);
    gate(APIC_VECTOR, p.apic_handler);
    gate(PIC_VECTOR + 7, p.spurious); // PIC spurious IRQ 7
    gate(0xff, p.spurious); // LAPIC spurious vector
}

/// vCPU `i`'s timer count for `hz` (PIT divisor for vCPU 0, LAPIC timer count for the
/// others) and the tick period it gives in TSC cycles at `tsc_khz`.
pub fn tick_period(i: usize, hz: u32, tsc_khz: u64) -> (u64, u64) {
    let (count, clock_hz) = if i == 0 {
        ((PIT_HZ / u64::from(hz)).clamp(1, 0xffff), PIT_HZ)
    } else {
        (LAPIC_TIMER_HZ / u64::from(hz), LAPIC_TIMER_HZ)
    };
    let cycles = u128::from(count) * u128::from(tsc_khz) * 1000 / u128::from(clock_hz);
    (count, cycles as u64)
}

/// Fills vCPU `i`'s block for a ticking load: the timer count, the burst length in TSC
/// cycles, the tick ring's address, and for the runner the nominal period and the TSC kHz.
pub fn set_tick(mem: &SharedMem, i: usize, hz: u32, burst_us: u32, tsc_khz: u64) {
    let (count, period) = tick_period(i, hz, tsc_khz);
    let burst = (u64::from(burst_us) * tsc_khz / 1000).min(u64::from(u32::MAX));
    let block = counter_gpa(i);
    mem.write_bytes(
        (block + BLOCK_RING) as usize,
        &(ring_gpa(i) as u32).to_le_bytes(),
    );
    mem.write_bytes((block + BLOCK_PERIOD) as usize, &period.to_le_bytes());
    mem.write_bytes((block + BLOCK_TSC_KHZ) as usize, &tsc_khz.to_le_bytes());
    mem.write_bytes(
        (block + BLOCK_TIMER) as usize,
        &(count as u32).to_le_bytes(),
    );
    mem.write_bytes(
        (block + BLOCK_BURST) as usize,
        &(burst as u32).to_le_bytes(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_are_assembled() {
        // add dword [ebx], 1; adc dword [ebx+4], 0; jmp back.
        assert_eq!(
            busy_program(),
            &[0x83, 0x03, 0x01, 0x83, 0x53, 0x04, 0x00, 0xeb, 0xf7]
        );
        let p = idle_program();
        assert!(p.bytes.len() > 50 && p.bytes.len() < 0x1000);
        for off in [p.pic_handler, p.apic_handler, p.spurious] {
            assert!(off > 0 && off < p.bytes.len());
        }
        assert_eq!(p.bytes[p.spurious], 0xcf); // iretd
        let b = bench_program();
        assert!(b.len() > 50 && (CODE_GPA as usize + b.len()) < GDT_GPA as usize);
        // mov esi, edi; shl esi, 7: the bench block stride is 128.
        assert_eq!(&b[..5], &[0x89, 0xfe, 0xc1, 0xe6, 0x07]);
        assert_eq!(BENCH_STRIDE, 128);
        assert_eq!(BENCH_GPA, 0x10000);
        assert_eq!((BENCH_SRC_GPA, BENCH_DST_GPA), (0x20000, 0x30000));
    }

    #[test]
    fn tick_periods_in_tsc_cycles() {
        // 100 Hz at 2 GHz: the PIT divisor 11931 gives 9.99931 ms, the LAPIC exactly 10 ms.
        assert_eq!(tick_period(0, 100, 2_000_000), (11931, 19_998_625));
        assert_eq!(tick_period(1, 100, 2_000_000), (10_000_000, 20_000_000));
        assert_eq!(tick_period(3, 250, 3_000_000), (4_000_000, 12_000_000));
        // The slot mask of the stamp code is RING_SLOTS - 1.
        let p = idle_program();
        let and_ecx_511 = [0x81, 0xe1, 0xff, 0x01, 0x00, 0x00];
        assert!(p.bytes.windows(6).any(|w| w == and_ecx_511));
        assert_eq!(RING_SLOTS - 1, 511);
    }

    #[test]
    fn gates() {
        let g = idt_gate(0x1234_5678);
        assert_eq!(g, [0x78, 0x56, 0x08, 0x00, 0x00, 0x8e, 0x34, 0x12]);
    }
}
