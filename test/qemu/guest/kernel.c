/* kernel.c: why this exists — memshift's QEMU tests need a guest whose memory
 * contents can be verified from the inside after a live migration. This tiny
 * multiboot kernel writes a known signature into every 4 KiB page of a region
 * at a paced (or flat-out) rate, checks each page's previous signature before
 * overwriting it, and reports counters once a second on COM1. A page that a
 * migration lost, rolled back or zeroed shows up as errors>0.
 *
 * Command line (multiboot cmdline, from `-append`), all optional:
 *   mib=N    size of the checked region in MiB (default 64); 0 = no region:
 *            the guest only prints its status line once a second
 *   base=A   where the region starts (default 16 MiB; 4 KiB-aligned, at or
 *            above 4 MiB), e.g. base=0x10000000 over data a loader put there
 *   rate=N   pages written per second after sweep 0 (default 20000);
 *            0 = idle: write nothing after sweep 0, but re-check the whole
 *            region once a second
 *   flat=1   write as fast as possible (rate is ignored, still reported)
 *
 * Sweeps: sweep 0 initializes every page flat-out (all modes). In sweep s >= 1,
 * page p is first checked for the sweep s-1 signature (a mismatch counts one
 * error), then written with the sweep s signature. In idle mode the region keeps
 * the sweep 0 signature, sweep= stays at 1 (the sweep that would run next), and
 * a page found wrong is rewritten with the expected signature so one corruption
 * counts as one error instead of once per second.
 *
 * Serial output (COM1, 115200 8N1):
 *   memshift-guest ready mib=<N> rate=<R> flat=<0|1> tsc_khz=<calibrated>
 *   memshift-guest t=<s> sweep=<s> pages=<n> errors=<e> rate=<R>      (1/s)
 *   memshift-guest error page=<p> sweep=<s> expected=<hex> found=<hex> (<=16)
 * In the error line, sweep= is the sweep doing the check (it expected sweep-1's
 * signature); found= is the first signature word that differed.
 *
 * Time: the TSC is calibrated once at boot against PIT channel 2 (median of
 * five ~42 ms runs). Every counter lives
 * in ordinary guest RAM, so it migrates with the guest. If the TSC goes
 * backward (e.g. after a migration) the reference is resynced; if it jumps
 * forward by more than MAX_CATCHUP_S seconds, it counts as one second and no
 * write backlog is built up. */

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;

#define DEFAULT_BASE    0x01000000u     /* 16 MiB */
#define MIN_BASE        0x00400000u     /* clear of the kernel at 1 MiB */
#define PAGE_SIZE       4096u
#define PAGES_PER_MIB   256u
#define MAX_ERROR_LINES 16u
#define CHUNK_PAGES     4096u           /* pages between clock polls when busy */
#define MAX_BACKLOG_MS  100u            /* rate mode: never owe more than this */
#define MAX_CATCHUP_S   10u             /* bigger TSC leaps count as one second */
#define PIT_HZ          1193182u
#define CAL_TICKS       50000u          /* PIT ticks per calibration run (~42 ms) */
#define CAL_RUNS        5u
#define CAL_FALLBACK_KHZ 2000000u

/* ---- port I/O and TSC ------------------------------------------------- */

static inline void outb(u16 port, u8 v) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }
static inline u8 inb(u16 port) { u8 v; __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline u64 rdtsc(void) { u32 lo, hi; __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi)); return ((u64)hi << 32) | lo; }
static inline void cpu_relax(void) { __asm__ volatile("pause"); }
static inline void wait_for_interrupt(void) { __asm__ volatile("sti; hlt" ::: "memory"); }

/* Flush the whole TLB by toggling CR4.PGE (legal with paging off). Under TCG
 * this matters for QEMU's own migration: QEMU 7.2 clears its migration dirty
 * bitmap without re-arming TCG's softmmu TLB, so a page that stays hot in that
 * TLB (our counters, our stack) is written through the fast path without being
 * marked dirty again and a QEMU-native migration ships a stale copy of it (seen
 * as errors>0 after `migrate`). Real OSes flush their TLBs all the time; we do it
 * at the top of every loop iteration (each write batch / wake-up), before that
 * iteration touches any state, so every hot page gets its dirty tracking
 * re-armed. memshift itself reads the RAM files and never uses
 * QEMU's dirty log, so this only keeps a QEMU-native control run clean. */
static inline void tlb_flush_all(void)
{
    u32 cr4;
    __asm__ volatile("mov %%cr4, %0" : "=r"(cr4));
    __asm__ volatile("mov %0, %%cr4" : : "r"(cr4 ^ 0x80u) : "memory");
    __asm__ volatile("mov %0, %%cr4" : : "r"(cr4) : "memory");
}

/* 64-by-32 division without libgcc (-nostdlib has no __udivdi3). */
static u64 udiv64(u64 n, u32 d, u32 *rem)
{
    u32 hi = (u32)(n >> 32), lo = (u32)n;
    u32 qhi = hi / d, r = hi % d, qlo;
    __asm__("divl %4" : "=a"(qlo), "=d"(r) : "0"(lo), "1"(r), "rm"(d));
    if (rem) *rem = r;
    return ((u64)qhi << 32) | qlo;
}

/* ---- COM1 ------------------------------------------------------------- */

#define COM1 0x3F8

static void serial_init(void)
{
    outb(COM1 + 1, 0x00);   /* no UART interrupts */
    outb(COM1 + 3, 0x80);   /* DLAB on */
    outb(COM1 + 0, 0x01);   /* divisor 1 = 115200 baud */
    outb(COM1 + 1, 0x00);
    outb(COM1 + 3, 0x03);   /* 8 data bits, no parity, 1 stop bit, DLAB off */
    outb(COM1 + 2, 0xC7);   /* FIFOs on, cleared, 14-byte threshold */
    outb(COM1 + 4, 0x03);   /* DTR + RTS, OUT2 off (no IRQ) */
}

static void put_char(char c)
{
    while (!(inb(COM1 + 5) & 0x20)) cpu_relax();
    outb(COM1, (u8)c);
}

static void put_str(const char *s) { while (*s) put_char(*s++); }

static void put_u64(u64 v)
{
    char buf[21];
    int i = 20;
    buf[i] = 0;
    do {
        u32 r;
        v = udiv64(v, 10, &r);
        buf[--i] = (char)('0' + r);
    } while (v);
    put_str(buf + i);
}

static void put_u32(u32 v) { put_u64(v); }

/* SeaBIOS leaves "Booting from ROM.." without a newline on COM1; start our
 * output on a fresh line so every guest line begins with "memshift-guest". */
static void serial_fresh_line(void) { put_char('\n'); }

static void put_hex32(u32 v)
{
    put_str("0x");
    for (int sh = 28; sh >= 0; sh -= 4) put_char("0123456789abcdef"[(v >> sh) & 15]);
}

/* ---- interrupts: only a 1 kHz PIT tick to wake hlt, plus fault reports --- */

extern void irq_timer(void);
extern void irq_spurious_master(void);
extern void irq_spurious_slave(void);
extern const u32 fault_stubs[32];
extern const u32 fault_stub_other;
extern void halt_forever(void) __attribute__((noreturn));

struct idt_gate { u16 off_lo, sel; u8 zero, attr; u16 off_hi; } __attribute__((packed));
static struct idt_gate idt[256];
static struct { u16 limit; u32 base; } __attribute__((packed)) idt_ptr;

static void set_gate(int v, u32 handler)
{
    idt[v].off_lo = (u16)handler;
    idt[v].sel = 0x08;
    idt[v].zero = 0;
    idt[v].attr = 0x8E;     /* present, ring 0, 32-bit interrupt gate */
    idt[v].off_hi = (u16)(handler >> 16);
}

void fault_report(u32 vector)
{
    put_str("memshift-guest fault vector=");
    put_u32(vector);
    put_str(" halting\n");
}

static void interrupts_init(void)
{
    for (int v = 0; v < 256; v++) set_gate(v, fault_stub_other);
    for (int v = 0; v < 32; v++) set_gate(v, fault_stubs[v]);
    for (int v = 0x20; v < 0x28; v++) set_gate(v, (u32)irq_spurious_master);
    for (int v = 0x28; v < 0x30; v++) set_gate(v, (u32)irq_spurious_slave);
    set_gate(0x20, (u32)irq_timer);
    idt_ptr.limit = sizeof(idt) - 1;
    idt_ptr.base = (u32)idt;
    __asm__ volatile("lidt %0" : : "m"(idt_ptr));

    /* 8259 pair: ICW1..ICW4, vectors 0x20/0x28, then mask all but IRQ0. */
    outb(0x20, 0x11); outb(0xA0, 0x11);
    outb(0x21, 0x20); outb(0xA1, 0x28);
    outb(0x21, 0x04); outb(0xA1, 0x02);
    outb(0x21, 0x01); outb(0xA1, 0x01);
    outb(0x21, 0xFE); outb(0xA1, 0xFF);

    /* PIT channel 0: mode 2 (rate generator), ~1000 Hz. */
    u16 div = (u16)((PIT_HZ + 500) / 1000);
    outb(0x43, 0x34);
    outb(0x40, (u8)div);
    outb(0x40, (u8)(div >> 8));
}

/* ---- TSC calibration against PIT channel 2 (gate via port 0x61) ------- */

/* Channel 2 is gated on through port 0x61 and counts down from 0xFFFF in mode 0;
 * we read its count (latch command on 0x43, then 0x42) bracketed by two TSC
 * reads. Only the tightest-bracketed readings near the start and the end of a
 * ~42 ms window are used, so a vCPU that the host deschedules mid-measurement
 * (common under TCG on a busy host) does not skew the result: both clocks keep
 * running meanwhile, and a reading that straddled a preemption has a wide
 * bracket and is discarded. (Polling OUT2 for the terminal count instead would
 * add the whole preemption to the interval.) */
struct pit_reading { u64 mid; u32 width; u32 count; };

static void pit_read(struct pit_reading *r)
{
    u64 a = rdtsc();
    outb(0x43, 0x80);                    /* latch channel 2's count */
    u32 lo = inb(0x42);
    u32 hi = inb(0x42);
    u64 b = rdtsc();
    r->count = lo | (hi << 8);
    r->width = (u32)(b - a);
    r->mid = a + ((b - a) >> 1);
}

static void pit_read_best(struct pit_reading *best, int n)
{
    struct pit_reading r;
    best->width = 0xFFFFFFFFu;
    while (n--) {
        pit_read(&r);
        if (r.width < best->width) *best = r;
    }
}

/* One measurement in kHz, or 0 if it was unusable. */
static u32 calibrate_once(void)
{
    struct pit_reading s0, s1, r;
    outb(0x61, (u8)((inb(0x61) & ~0x02) | 0x01));  /* gate ch2 on, speaker off */
    outb(0x43, 0xB0);                    /* ch2, lobyte/hibyte, mode 0, binary */
    outb(0x42, 0xFF);
    outb(0x42, 0xFF);
    pit_read_best(&s0, 8);
    for (u32 spins = 0;; spins++) {
        pit_read(&r);
        if (s0.count - r.count >= CAL_TICKS) break;   /* also true on a wrap */
        if (spins > 10000000u) return 0;
    }
    pit_read_best(&s1, 8);
    if (inb(0x61) & 0x20) return 0;      /* OUT2 high: passed zero, counts wrapped */
    if (s1.count >= s0.count) return 0;
    u32 ticks = s0.count - s1.count;
    u64 dt = s1.mid - s0.mid;
    if ((u64)s0.width + s1.width > (dt >> 10)) return 0;  /* > ~0.1% uncertain */
    return (u32)udiv64(dt * PIT_HZ, ticks * 1000u, 0);
}

/* Median of CAL_RUNS usable measurements (fewer if measurements keep failing). */
static u32 calibrate_tsc_khz(void)
{
    u32 v[CAL_RUNS], n = 0;
    for (u32 tries = 0; tries < 4 * CAL_RUNS && n < CAL_RUNS; tries++) {
        u32 k = calibrate_once();
        if (k == 0) continue;
        u32 i = n++;
        while (i > 0 && v[i - 1] > k) { v[i] = v[i - 1]; i--; }   /* insertion sort */
        v[i] = k;
    }
    return n ? v[n / 2] : CAL_FALLBACK_KHZ;
}

/* ---- page signatures ---------------------------------------------------- */

/* Word indices of the signature words: byte offsets 0, 1024, 2048, 4092. */
static const u32 sig_word[4] = { 0, 256, 512, 1023 };

static inline u32 signature(u32 sweep, u32 page, u32 i)
{
    u32 x = (sweep * 0x9E3779B1u) ^ (page * 0x85EBCA77u) ^ (i * 0xC2B2AE3Du) ^ 0x6D656D73u;
    /* murmur3 finalizer: a bijection, so distinct (sweep, page, i) mixes stay
     * distinct and adjacent sweeps differ in many bits. */
    x ^= x >> 16; x *= 0x85EBCA6Bu;
    x ^= x >> 13; x *= 0xC2B2AE35u;
    x ^= x >> 16;
    return x;
}

/* ---- guest state: plain RAM, migrates with the guest -------------------- */

static struct {
    u32 base, mib, rate, flat, npages;
    u32 tsc_khz;
    u64 tsc_hz;
    u32 sweep;          /* sweep in progress */
    u32 cursor;         /* next page of that sweep */
    u64 pages;          /* pages written since boot */
    u64 errors;
    u32 error_lines;
    u32 seconds;
    u64 sec_ref;        /* TSC at the last whole second */
    u64 pace_ref;       /* TSC at the last pacing millisecond */
    u32 pace_frac;      /* rate * ms remainder, in 1/1000 pages */
    u32 budget;         /* pages owed to the pacing schedule */
} st;

static inline volatile u32 *page_ptr(u32 page)
{
    return (volatile u32 *)(st.base + page * PAGE_SIZE);
}

static void write_page(u32 sweep, u32 page)
{
    volatile u32 *w = page_ptr(page);
    for (u32 i = 0; i < 4; i++) w[sig_word[i]] = signature(sweep, page, i);
}

/* Returns 1 if the page does not hold the sweep `expect` signature. */
static int check_page(u32 expect, u32 page, u32 reporting_sweep)
{
    volatile u32 *w = page_ptr(page);
    for (u32 i = 0; i < 4; i++) {
        u32 want = signature(expect, page, i);
        u32 got = w[sig_word[i]];
        if (got != want) {
            st.errors++;
            if (st.error_lines < MAX_ERROR_LINES) {
                st.error_lines++;
                put_str("memshift-guest error page="); put_u32(page);
                put_str(" sweep="); put_u32(reporting_sweep);
                put_str(" expected="); put_hex32(want);
                put_str(" found="); put_hex32(got);
                put_char('\n');
            }
            return 1;
        }
    }
    return 0;
}

/* Advance the sweep by one page: check the old signature, write the new one. */
static inline void step_page(void)
{
    u32 p = st.cursor;
    if (st.sweep > 0) check_page(st.sweep - 1, p, st.sweep);
    write_page(st.sweep, p);
    st.pages++;
    if (++st.cursor == st.npages) {
        st.cursor = 0;
        st.sweep++;
    }
}

/* Idle mode: verify the whole region (4 words per page, no page is written
 * unless it is wrong, in which case it is restored so it is counted once). */
static void idle_check(void)
{
    u32 expect = st.sweep - 1;
    for (u32 p = 0; p < st.npages; p++)
        if (check_page(expect, p, st.sweep)) write_page(expect, p);
}

/* ---- time --------------------------------------------------------------- */

static void print_status(void)
{
    put_str("memshift-guest t="); put_u32(st.seconds);
    put_str(" sweep="); put_u32(st.sweep);
    put_str(" pages="); put_u64(st.pages);
    put_str(" errors="); put_u64(st.errors);
    put_str(" rate="); put_u32(st.rate);
    put_char('\n');
}

/* Returns 1 when at least one whole second has passed since the last one. */
static int second_elapsed(u64 now)
{
    if (now < st.sec_ref) {              /* TSC went backward: resync */
        st.sec_ref = now;
        return 0;
    }
    u64 d = now - st.sec_ref;
    if (d < st.tsc_hz) return 0;
    if (d >= (u64)MAX_CATCHUP_S * st.tsc_hz) {
        st.seconds++;                    /* TSC leapt forward: don't invent time */
        st.sec_ref = now;
        return 1;
    }
    while (d >= st.tsc_hz) {
        d -= st.tsc_hz;
        st.sec_ref += st.tsc_hz;
        st.seconds++;
    }
    return 1;
}

static void poll_clock(u64 now)
{
    if (second_elapsed(now)) print_status();
}

/* Rate mode: credit `rate` pages per elapsed millisecond of TSC. */
static void accrue_budget(u64 now)
{
    u64 ms = st.tsc_khz;
    if (now < st.pace_ref) {             /* TSC went backward: resync */
        st.pace_ref = now;
        return;
    }
    u64 d = now - st.pace_ref;
    if (d > MAX_BACKLOG_MS * ms) {       /* stalled or TSC leap: skip, don't catch up */
        st.pace_ref = now - MAX_BACKLOG_MS * ms;
        d = MAX_BACKLOG_MS * ms;
    }
    while (d >= ms) {
        d -= ms;
        st.pace_ref += ms;
        st.pace_frac += st.rate;
        u32 r;
        st.budget += (u32)udiv64(st.pace_frac, 1000, &r);
        st.pace_frac = r;
    }
    u32 cap = st.rate / 1000u * MAX_BACKLOG_MS + MAX_BACKLOG_MS;
    if (st.budget > cap) st.budget = cap;
}

/* ---- command line and memory map ---------------------------------------- */

struct mb_info {
    u32 flags, mem_lower, mem_upper, boot_device, cmdline;
    u32 mods_count, mods_addr, syms[4], mmap_length, mmap_addr;
};
struct mb_mmap { u32 size; u64 addr, len; u32 type; } __attribute__((packed));

static int has_prefix(const char *s, const char *p)
{
    while (*p) if (*s++ != *p++) return 0;
    return 1;
}

/* Decimal or 0x-hex; returns 0 on garbage, saturates instead of wrapping. */
static u32 parse_u32(const char *s)
{
    u64 v = 0;
    u32 base = 10;
    if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) { base = 16; s += 2; }
    for (;; s++) {
        u32 d;
        if (*s >= '0' && *s <= '9') d = (u32)(*s - '0');
        else if (base == 16 && *s >= 'a' && *s <= 'f') d = (u32)(*s - 'a' + 10);
        else if (base == 16 && *s >= 'A' && *s <= 'F') d = (u32)(*s - 'A' + 10);
        else break;
        v = v * base + d;
        if (v > 0xFFFFFFFFull) v = 0xFFFFFFFFull;
    }
    return (u32)v;
}

static void parse_cmdline(const char *s)
{
    while (*s) {
        while (*s == ' ' || *s == '\t') s++;
        if (has_prefix(s, "mib=")) st.mib = parse_u32(s + 4);
        if (has_prefix(s, "base=")) st.base = parse_u32(s + 5);
        else if (has_prefix(s, "rate=")) st.rate = parse_u32(s + 5);
        else if (has_prefix(s, "flat=")) st.flat = parse_u32(s + 5) ? 1 : 0;
        while (*s && *s != ' ' && *s != '\t') s++;
    }
}

/* End (exclusive) of usable RAM that contains the region's base, or 0 if unknown. */
static u64 ram_end_from_multiboot(const struct mb_info *mbi)
{
    const u32 REGION_BASE = st.base;
    if (mbi->flags & (1u << 6)) {
        u32 a = mbi->mmap_addr, end = a + mbi->mmap_length;
        while (a < end) {
            const struct mb_mmap *e = (const struct mb_mmap *)a;
            if (e->type == 1 && e->addr <= REGION_BASE && e->addr + e->len > REGION_BASE)
                return e->addr + e->len;
            a += e->size + 4;
        }
    }
    if (mbi->flags & 1u)
        return 0x100000ull + (u64)mbi->mem_upper * 1024u;
    return 0;
}

static void fatal(const char *what)
{
    put_str("memshift-guest error ");
    put_str(what);
    put_str("; halting\n");
    halt_forever();
}

/* ---- main --------------------------------------------------------------- */

void kmain(u32 magic, const struct mb_info *mbi)
{
    serial_init();
    serial_fresh_line();
    if (magic != 0x2BADB002u) fatal("not booted by a multiboot loader");

    st.base = DEFAULT_BASE;
    st.mib = 64;
    st.rate = 20000;
    st.flat = 0;
    if (mbi->flags & (1u << 2)) parse_cmdline((const char *)mbi->cmdline);

    u64 ram_end = ram_end_from_multiboot(mbi);
    u64 region_end = (u64)st.base + (u64)st.mib * 0x100000ull;
    if (st.mib > 4095) fatal("mib must be 0..4095");
    if (st.base < MIN_BASE || (st.base & (PAGE_SIZE - 1)) != 0) fatal("base must be 4 KiB-aligned and at least 4 MiB");
    if (ram_end == 0) fatal("no multiboot memory information");
    if (region_end > ram_end) {
        put_str("memshift-guest error mib="); put_u32(st.mib);
        put_str(" does not fit: region ends at "); put_u64(region_end >> 20);
        put_str(" MiB, RAM ends at "); put_u64(ram_end >> 20);
        put_str(" MiB; halting\n");
        halt_forever();
    }
    st.npages = st.mib * PAGES_PER_MIB;

    st.tsc_khz = calibrate_tsc_khz();
    st.tsc_hz = (u64)st.tsc_khz * 1000u;
    interrupts_init();

    put_str("memshift-guest ready mib="); put_u32(st.mib);
    put_str(" rate="); put_u32(st.rate);
    put_str(" flat="); put_u32(st.flat);
    put_str(" tsc_khz="); put_u32(st.tsc_khz);
    put_char('\n');

    st.sec_ref = rdtsc();

    if (st.mib == 0) {
        /* No region: a clock only (an idle guest costs TCG next to nothing). */
        for (;;) {
            if (second_elapsed(rdtsc())) print_status();
            wait_for_interrupt();
        }
    }

    /* Sweep 0: initialize every page, flat-out, still reporting each second. */
    while (st.sweep == 0) {
        tlb_flush_all();
        for (u32 n = 0; n < CHUNK_PAGES && st.sweep == 0; n++) step_page();
        poll_clock(rdtsc());
    }

    if (st.flat) {
        for (;;) {
            tlb_flush_all();
            for (u32 n = 0; n < CHUNK_PAGES; n++) step_page();
            poll_clock(rdtsc());
        }
    }

    if (st.rate == 0) {
        for (;;) {
            tlb_flush_all();
            if (second_elapsed(rdtsc())) {
                idle_check();
                print_status();
            }
            wait_for_interrupt();
        }
    }

    st.pace_ref = rdtsc();
    for (;;) {
        tlb_flush_all();
        u64 now = rdtsc();
        poll_clock(now);
        accrue_budget(now);
        if (st.budget == 0) {
            wait_for_interrupt();
            continue;
        }
        u32 n = st.budget < CHUNK_PAGES ? st.budget : CHUNK_PAGES;
        st.budget -= n;
        while (n--) step_page();
    }
}
