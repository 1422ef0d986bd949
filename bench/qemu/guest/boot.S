/* Multiboot (v1) entry of the peer guest: a stack, then writer_main(magic, info). */
.set MAGIC, 0x1BADB002
.set FLAGS, 0
.section .multiboot, "a"
.align 4
.long MAGIC
.long FLAGS
.long -(MAGIC + FLAGS)

.section .text
.global _start
_start:
    mov $stack_top, %esp
    push %ebx
    push %eax
    call writer_main
halt:
    cli
    hlt
    jmp halt

.section .bss
.align 16
stack:
    .skip 16384
stack_top:
.section .note.GNU-stack, "", @progbits
