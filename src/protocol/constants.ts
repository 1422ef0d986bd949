// Wire constants of the memshift migration protocol. The README carries the same table; bump
// PROTOCOL_VERSION on any change to a layout here or in the codec files. Version policy (after Cloud
// Hypervisor): a destination accepts the current version and the one before it, one way only.

/** Sent by each side before its first frame: "MEMSHIFT" then u16 version, u16 reserved (zero). */
export const PREFACE_MAGIC = new Uint8Array([0x4d, 0x45, 0x4d, 0x53, 0x48, 0x49, 0x46, 0x54]);
export const PREFACE_BYTES = 12;
export const PROTOCOL_VERSION = 5;
/**
 * Oldest version this build accepts from a peer. Version 5 added disks (the DISKS and BLOCKS frames,
 * sent only under the BLOCKS capability, and the SHARED_STORAGE capability): a v4 source never offers
 * either, so a v5 destination still receives from it (one way: a v4 destination refuses a v5 preface, so
 * destinations are upgraded first).
 */
export const MIN_PROTOCOL_VERSION = 4;

export const FrameType = {
  HELLO: 0x01,
  HELLO_ACK: 0x02,
  PAGE_BATCH: 0x03,
  ITERATION_END: 0x04,
  DEVICE_STATE: 0x05,
  SWITCHOVER: 0x06,
  RESUMED: 0x07,
  COMPLETE: 0x08,
  ERROR: 0x09,
  PAGE_REQUEST: 0x0a,
  MISSING_PAGES: 0x0b,
  POSTCOPY_DONE: 0x0c,
  PAGE_HASHES: 0x0d,
  DISKS: 0x0e,
  BLOCKS: 0x0f,
  /** Replication (a REPLICA link only, protocol/replication.ts): an epoch's pages. */
  EPOCH_PAGES: 0x10,
  EPOCH_END: 0x11,
  EPOCH_ACK: 0x12,
  HEARTBEAT: 0x13,
  GOODBYE: 0x14,
} as const;
export type FrameTypeValue = (typeof FrameType)[keyof typeof FrameType];

export const FRAME_TYPE_NAMES: Record<number, string> = Object.fromEntries(Object.entries(FrameType).map(([k, v]) => [v, k]));

export const PageEncoding = {
  ZERO: 0,
  RAW: 1,
  XBZRLE: 2,
  LZ4: 3,
} as const;
export type PageEncodingValue = (typeof PageEncoding)[keyof typeof PageEncoding];

/** Capability bits exchanged in HELLO / HELLO_ACK; a feature is used only when both sides set it. */
export const Capability = {
  XBZRLE: 1 << 0,
  LZ4: 1 << 1,
  POSTCOPY: 1 << 2,
  /**
   * Pages never written since allocation are zero on both ends (the source marks every write, the
   * target's memory is fresh): the first pass sends only pages written at some point.
   */
  UNWRITTEN_ZERO: 1 << 3,
  /**
   * The guest's disks are on storage both hosts reach: the source offers it when its guest's are, the
   * destination grants it when it reaches them too; the lease then changes hands inside the switchover.
   */
  SHARED_STORAGE: 1 << 4,
  /** The guest's disks move with it, block by block, in the same passes as its RAM (DISKS, BLOCKS). */
  BLOCKS: 1 << 5,
  /**
   * Post-copy leaves the disks' dirty blocks on the source, as it leaves pages: MISSING_PAGES names them
   * at the switchover and PAGE_REQUEST faults them, both with region DISK_REGION_BASE + disk; they
   * arrive as BLOCKS on the bulk channel. Without it they all go paused, before SWITCHOVER.
   */
  POSTCOPY_BLOCKS: 1 << 6,
  /**
   * A recovered link names the disk blocks the destination holds, with region DISK_REGION_BASE + disk:
   * before SWITCHOVER the hash of each block it holds data for (PAGE_HASHES; a block not named holds
   * zeros or nothing), in post-copy the blocks it still lacks (MISSING_PAGES). The source sends again
   * only those blocks; without it, every block it ever sent.
   */
  BLOCK_RECOVERY: 1 << 7,
  /**
   * A BLOCKS frame may name a run of zero blocks without their bytes (flag ZERO): a post-copy push
   * names so the never-sent blocks that read as zero (holes of a guest that arrived by migration),
   * which the destination waits for but whose bytes it has.
   */
  ZERO_BLOCKS: 1 << 8,
} as const;

/** Region id of disk i where a frame or a file names disk blocks as a region's pages. */
export const DISK_REGION_BASE = 0x8000;

/**
 * BULK carries the migration; URGENT the post-copy page requests; QUERY (v3) asks a destination,
 * over a new connection after the bulk link was lost past SWITCHOVER, whether it resumed the session;
 * REPLICA (v5) is a primary's link to its standby (replication.ts), which only a standby accepts.
 */
export const ChannelRole = { BULK: 0, URGENT: 1, QUERY: 2, RECOVER: 3, REPLICA: 4 } as const;
export type ChannelRoleValue = (typeof ChannelRole)[keyof typeof ChannelRole];

/** How the source ends the migration (SWITCHOVER.mode). */
export const SwitchoverMode = { STOP_AND_COPY: 0, POSTCOPY: 1 } as const;

export const MIGRATION_MODES = ['live', 'cold', 'warm', 'postcopy', 'hybrid'] as const;
export type MigrationMode = (typeof MIGRATION_MODES)[number];

/** Limits every decoder checks before it allocates or copies. */
export const Limits = {
  FRAME_HEADER_BYTES: 16,
  /** Largest body of any frame: a batch header, 4096 entries and 16 MiB of payload. */
  MAX_FRAME_BODY_BYTES: 16 + 4096 * 16 + 16 * 2 ** 20,
  /** Largest body of a control frame (everything but PAGE_BATCH, DEVICE_STATE, MISSING_PAGES). */
  MAX_CONTROL_BODY_BYTES: 64 * 1024,
  MAX_DEVICE_STATE_BYTES: 16 * 2 ** 20,
  MAX_PAGES_PER_BATCH: 4096,
  MAX_BATCH_PAYLOAD_BYTES: 16 * 2 ** 20,
  MAX_REGIONS: 64,
  MAX_REGION_NAME_BYTES: 64,
  MAX_ERROR_MESSAGE_BYTES: 4096,
  /** Bitmap bytes in one MISSING_PAGES frame (8 Mi pages). */
  MAX_MISSING_BITMAP_BYTES: 1 << 20,
  SESSION_ID_BYTES: 16,
  /** Disks one DISKS frame may name. */
  MAX_DISKS: 64,
  /** Blocks in one BLOCKS frame (a run of consecutive blocks). */
  MAX_BLOCKS_PER_FRAME: 64,
  /** Largest disk block: 64 KiB. */
  MAX_BLOCK_BYTES: 65536,
  /** Pages in one EPOCH_PAGES frame (and at most 16 MiB of them). */
  MAX_PAGES_PER_EPOCH_FRAME: 1024,
} as const;
