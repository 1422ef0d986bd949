/* boot.S: why this exists — QEMU's `-kernel` multiboot (v1) loader enters the
 * guest in 32-bit protected mode with paging off, but with no stack, no GDT we
 * own, and no IDT. This file carries the multiboot header, zeroes the BSS,
 * installs a flat GDT and a stack, provides the interrupt entry stubs that
 * kernel.c wires into its IDT (1 kHz PIT wake-up tick, spurious IRQs, CPU
 * faults), calls kmain(magic, info) and parks the CPU if it ever returns. */

#define MB_MAGIC 0x1BADB002
#define MB_FLAGS 0x00000002          /* bit 1: we want mem_lower/mem_upper + mmap */

        .section .multiboot, "a"
        .align 4
        .long MB_MAGIC
        .long MB_FLAGS
        .long -(MB_MAGIC + MB_FLAGS)

        .section .text
        .globl _start
_start:
        cli
        cld
        mov   %eax, %esi                /* multiboot magic (survives rep stosl) */
        /* %ebx = multiboot info pointer; left untouched below. */
        mov   $__bss_start, %edi
        mov   $__bss_end, %ecx
        sub   %edi, %ecx
        shr   $2, %ecx
        xor   %eax, %eax
        rep stosl
        mov   $stack_top, %esp
        lgdt  gdt_ptr
        ljmp  $0x08, $1f
1:      mov   $0x10, %ax
        mov   %ax, %ds
        mov   %ax, %es
        mov   %ax, %fs
        mov   %ax, %gs
        mov   %ax, %ss
        push  %ebx
        push  %esi
        call  kmain
        .globl halt_forever
halt_forever:
        cli
2:      hlt
        jmp   2b

/* IRQ0 (PIT channel 0, remapped to vector 0x20): only wakes the CPU out of hlt;
 * all timekeeping is done with the TSC. */
        .globl irq_timer
irq_timer:
        push  %eax
        mov   $0x20, %al
        outb  %al, $0x20                /* EOI to the master PIC */
        pop   %eax
        iret

/* Any other master-PIC vector: only spurious IRQ7 can arrive (all masked); a
 * spurious IRQ gets no EOI. */
        .globl irq_spurious_master
irq_spurious_master:
        iret

/* Any slave-PIC vector: only spurious IRQ15 can arrive; the master saw IRQ2 and
 * needs its EOI. */
        .globl irq_spurious_slave
irq_spurious_slave:
        push  %eax
        mov   $0x20, %al
        outb  %al, $0x20
        pop   %eax
        iret

/* CPU exceptions 0..31 and unexpected vectors: report the vector and stop. */
        .macro FAULT_STUB n
fault_stub_\n:
        push  $\n
        jmp   fault_common
        .endm

        .irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31,255
        FAULT_STUB \n
        .endr

fault_common:
        call  fault_report              /* arg: vector number pushed by the stub */
        jmp   halt_forever

        .section .rodata
        .align 4
        .globl fault_stubs
fault_stubs:                            /* fault_stubs[v] for v in 0..31 */
        .irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
        .long fault_stub_\n
        .endr
        .globl fault_stub_other
fault_stub_other:
        .long fault_stub_255

        .section .data
        .align 8
gdt:
        .quad 0x0000000000000000        /* null */
        .quad 0x00CF9A000000FFFF        /* 0x08: flat 4 GiB code, ring 0 */
        .quad 0x00CF92000000FFFF        /* 0x10: flat 4 GiB data, ring 0 */
gdt_ptr:
        .word gdt_ptr - gdt - 1
        .long gdt

        .section .bss
        .align 16
stack_bottom:
        .space 16384
stack_top:

        .section .note.GNU-stack, "", @progbits
