// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), slicing-by-8, the same function as
// src/protocol/crc32c.ts. The JS one serves short inputs (frame headers); this one the long ones a
// thread meets rarely (a switchover's MISSING_PAGES bitmap, 32 KiB for 1 GiB), which V8 would run
// interpreted, and page-batch metadata where it already lies in kernel memory.

// Eight 256-entry tables at a fixed place in the kernels' reserved 64 KiB, and after them a word that
// says they are filled. Not a static (`memory.data`): a static is a data segment, which every new
// instance on the same memory (a worker's) writes again, zeroing the tables under a thread using them.
// Each instance fills them on first use; instances write the same values, so one filling while another
// reads changes nothing it reads.
const TABLES: usize = 32768;
const FILLED: usize = TABLES + 8 * 256 * 4;
const FILLED_MARK: u32 = 0x43524343; // "CCRC"

@inline function entry(table: u32, index: u32): u32 {
  return load<u32>(TABLES + (<usize>table << 10) + (<usize>index << 2));
}

function fillTables(): void {
  for (let i: u32 = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = (c & 1) != 0 ? (c >> 1) ^ 0x82F63B78 : c >> 1;
    store<u32>(TABLES + (<usize>i << 2), c);
  }
  for (let i: u32 = 0; i < 256; i++) {
    let c = entry(0, i);
    for (let t: u32 = 1; t < 8; t++) {
      c = (c >> 8) ^ entry(0, c & 0xff);
      store<u32>(TABLES + (<usize>t << 10) + (<usize>i << 2), c);
    }
  }
}

/** Continues a CRC-32C (start with 0) over `len` bytes at `ptr`. */
export function crc32c(ptr: usize, len: u32, crc: u32): u32 {
  if (atomic.load<u32>(FILLED) != FILLED_MARK) {
    fillTables();
    atomic.store<u32>(FILLED, FILLED_MARK);
  }
  let c = ~crc;
  let p = ptr;
  const end = ptr + <usize>len;
  while (p + 8 <= end) {
    const a = load<u32>(p) ^ c;
    const b = load<u32>(p, 4);
    c = entry(7, a & 0xff) ^ entry(6, (a >> 8) & 0xff) ^ entry(5, (a >> 16) & 0xff) ^ entry(4, a >> 24) ^
      entry(3, b & 0xff) ^ entry(2, (b >> 8) & 0xff) ^ entry(1, (b >> 16) & 0xff) ^ entry(0, b >> 24);
    p += 8;
  }
  while (p < end) {
    c = entry(0, (c ^ <u32>load<u8>(p)) & 0xff) ^ (c >> 8);
    p++;
  }
  return ~c;
}
