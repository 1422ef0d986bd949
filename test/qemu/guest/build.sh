#!/usr/bin/env bash
# build.sh: why this exists — builds the memshift QEMU test guest (a 32-bit
# multiboot kernel, see kernel.c) reproducibly from any cwd, so tests can do
#   bash test/qemu/guest/build.sh /some/tmp/guest.elf
# OUTFILE may be absolute or relative to the caller's cwd. Object files go to a
# private temp dir that is always removed; nothing is ever written into this
# source directory (an OUTFILE inside it is refused).
set -euo pipefail

if [ "$#" -ne 1 ] || [ -z "$1" ]; then
    echo "usage: $0 OUTFILE" >&2
    exit 2
fi

src="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
# Resolve OUTFILE (relative to the caller's cwd) without creating anything yet.
out="$(realpath -m -- "$1")"
outdir="$(dirname "$out")"
case "$outdir/" in
    "$src"/*) echo "build.sh: refusing to write build output into the source tree ($out)" >&2; exit 2 ;;
esac
mkdir -p "$outdir"

tmp="$(mktemp -d "${TMPDIR:-/tmp}/memshift-guest-build.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

CFLAGS=(-m32 -ffreestanding -fno-pic -fno-stack-protector -fno-asynchronous-unwind-tables
        -nostdlib -O2 -Wall -Wextra)
gcc "${CFLAGS[@]}" -c "$src/boot.S" -o "$tmp/boot.o"
gcc "${CFLAGS[@]}" -c "$src/kernel.c" -o "$tmp/kernel.o"
ld -m elf_i386 -static -nostdlib --no-warn-rwx-segments -T "$src/link.ld" \
    "$tmp/boot.o" "$tmp/kernel.o" -o "$tmp/guest.elf"

# The multiboot v1 header must sit 4-byte aligned in the first 8 KiB of the file.
# (grep reads all of od's output: with pipefail, grep -q could SIGPIPE od.)
if ! od -An -v -tx4 -N 8192 "$tmp/guest.elf" | grep -w 1badb002 >/dev/null; then
    echo "build.sh: multiboot header not found in the first 8 KiB of the ELF" >&2
    exit 1
fi

# Stage next to the target, then rename, so OUTFILE is never half-written.
cp "$tmp/guest.elf" "$out.tmp.$$"
mv -f "$out.tmp.$$" "$out"
echo "built $out"
