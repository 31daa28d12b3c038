# SPDX-License-Identifier: GPL-2.0
#
# The L2 payload of the real-VMM test (Documentation/vmfair/real-vmm.rst): a
# multiboot (v1) 32-bit ELF that QEMU loads with -kernel. QEMU's multiboot
# loader enters it in protected mode, paging off, with EAX = 0x2BADB002 and
# EBX = the multiboot information. If the command line (-append, after the
# image's file name) contains "busy", it runs a compute loop that never
# leaves guest mode; otherwise it halts with interrupts off, so its vCPU
# sleeps in KVM. Only the boot CPU runs; the others stay waiting for a SIPI.
# Built by xtask (xtask/src/realvmm.rs) with as --32 and ld -m elf_i386.

        .section .text
        .align 4
mb_header:
        .long 0x1BADB002                # multiboot v1 magic
        .long 0                         # flags: nothing asked of the loader
        .long -0x1BADB002               # checksum

        .globl _start
_start:
        cli
        mov     $stack_top, %esp
        cmp     $0x2BADB002, %eax
        jne     halt
        testl   $4, (%ebx)              # flags bit 2: cmdline is valid
        jz      halt
        mov     16(%ebx), %esi          # cmdline (physical address)
scan:
        movb    (%esi), %al
        test    %al, %al
        jz      halt
        cmpl    $0x79737562, (%esi)     # "busy", little endian
        je      busy
        inc     %esi
        jmp     scan

# xorshift32 plus a running sum and an iteration counter: registers and
# one memory word, no port I/O, no exits.
busy:
        mov     $1, %eax
        xor     %edx, %edx
1:      mov     %eax, %ecx
        shl     $13, %ecx
        xor     %ecx, %eax
        mov     %eax, %ecx
        shr     $17, %ecx
        xor     %ecx, %eax
        mov     %eax, %ecx
        shl     $5, %ecx
        xor     %ecx, %eax
        add     %eax, %edx
        incl    counter
        jmp     1b

halt:
        cli
2:      hlt
        jmp     2b

        .section .bss
        .align 16
counter:
        .long   0
        .space  4096
stack_top:
