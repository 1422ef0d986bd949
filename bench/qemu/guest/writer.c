/*
 * The peer guest for QEMU side-by-side benchmarks: a 32-bit multiboot kernel that either idles or
 * dirties a range of its RAM, the same shapes memshift's simulated guest runs.
 *
 *   command line: base=0xADDR mib=N pps=N tsc_khz=N
 *   mib=0   idle: interrupts off, hlt (TCG then costs nothing)
 *   mib>0   sweep the mib MiB at base, one 32-bit word per 4 KiB page; sweep s writes s into every
 *           word, after checking that the word holds s-1 (from sweep 2 on), so a page the migration
 *           lost or rolled back counts as an error. pps=0 writes flat out; pps=N paces the writes by
 *           the TSC (under TCG the guest's TSC is the host's, tsc_khz of it per millisecond).
 *   after each sweep: "sweep=S err=E" on COM1
 */

typedef unsigned int u32;
typedef unsigned long long u64;

struct multiboot_info { u32 flags, mem_lower, mem_upper, boot_device, cmdline; };

static inline void outb(unsigned short port, unsigned char v) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }
static inline unsigned char inb(unsigned short port) { unsigned char v; __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline u64 rdtsc(void) { u32 lo, hi; __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi)); return ((u64)hi << 32) | lo; }

static void put(char c) {
  while ((inb(0x3f8 + 5) & 0x20) == 0) {}
  outb(0x3f8, (unsigned char)c);
}
static void puts(const char *s) { while (*s) put(*s++); }
static void putu(u32 v) {
  char b[11]; int n = 0;
  do { b[n++] = (char)('0' + v % 10); v /= 10; } while (v);
  while (n) put(b[--n]);
}

/* The value after "key=" in the command line (decimal or 0x hex), or `dflt`. */
static u32 arg(const char *cmd, const char *key, u32 dflt) {
  for (const char *p = cmd; p && *p; p++) {
    if (p != cmd && p[-1] != ' ') continue;
    const char *k = key, *q = p;
    while (*k && *q == *k) { k++; q++; }
    if (*k || *q != '=') continue;
    q++;
    u32 v = 0, base = 10;
    if (q[0] == '0' && q[1] == 'x') { base = 16; q += 2; }
    for (;; q++) {
      u32 d;
      if (*q >= '0' && *q <= '9') d = (u32)(*q - '0');
      else if (base == 16 && *q >= 'a' && *q <= 'f') d = (u32)(*q - 'a' + 10);
      else break;
      v = v * base + d;
    }
    return v;
  }
  return dflt;
}

void writer_main(u32 magic, struct multiboot_info *info) {
  const char *cmd = (magic == 0x2BADB002 && (info->flags & 4)) ? (const char *)info->cmdline : 0;
  const u32 base = arg(cmd, "base", 0x10000000), mib = arg(cmd, "mib", 0);
  const u32 pps = arg(cmd, "pps", 0), khz = arg(cmd, "tsc_khz", 2600000);
  puts("writer base="); putu(base); puts(" mib="); putu(mib); puts(" pps="); putu(pps); put('\n');
  if (mib == 0) for (;;) __asm__ volatile("cli; hlt");
  const u32 pages = mib * 256;
  const u64 gap = pps ? (khz * 1000u) / pps : 0; /* khz below 4.29 GHz: fits 32 bits */
  u64 next = rdtsc();
  for (u32 sweep = 1;; sweep++) {
    u32 err = 0;
    for (u32 i = 0; i < pages; i++) {
      volatile u32 *word = (volatile u32 *)(base + i * 4096u);
      if (gap) {
        next += gap;
        u64 now = rdtsc();
        /* More than 5 ms behind: skip ahead instead of catching up in a burst. */
        if (now > next + (u64)khz * 5) next = now;
        while (rdtsc() < next) {}
      }
      if (sweep > 1 && *word != sweep - 1) err++;
      *word = sweep;
    }
    puts("sweep="); putu(sweep); puts(" err="); putu(err); put('\n');
  }
}
