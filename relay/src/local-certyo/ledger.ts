// The local Certyo's state, in memory: accepted records (snapshots), the
// per-tenant idempotency window, batching by count or age, fake anchoring,
// and verification with Merkle proofs.
import { randomUUID } from 'node:crypto';
import { canonical, type JsonObject, own } from '../certyo/json.js';
import {
  buildTree,
  type Levels,
  leavesOf,
  type ProofStep,
  proofFor,
  rootOf,
  sha256hex,
} from '../certyo/merkle.js';
import { getOrAdd } from '../maps.js';
import type { RecordFields } from './validate.js';

export type SnapshotStatus = 'Ingested' | 'PendingAnchor' | 'Batched' | 'Anchored' | 'Failed';

export interface Snapshot {
  snapshotId: string;
  tenantId: string;
  clientId?: string;
  database: string;
  collection: string;
  recordId: string;
  recordVersion: string;
  operationType: string;
  recordHash: string;
  idempotencyKey?: string;
  sourceTimestamp: string;
  status: SnapshotStatus;
  ingestedAt: string;
  updatedAt: string;
  batchId: string | null;
  leafIndex: number;
  /** ingestedAt in epoch milliseconds (the idempotency window). */
  ingestedMs: number;
}

/** Most keys index one snapshot: no list is allocated for them. */
type OneOrMany = Snapshot | Snapshot[];

function add(map: Map<string, OneOrMany>, key: string, s: Snapshot) {
  const had = map.get(key);
  if (had === undefined) map.set(key, s);
  else if (Array.isArray(had)) had.push(s);
  else map.set(key, [had, s]);
}

const listOf = (x: OneOrMany | undefined): Snapshot[] => (x === undefined ? [] : Array.isArray(x) ? x : [x]);

/** One tenant's database collection: its snapshots in ingestion order, and by record. */
interface Collection {
  tenantId: string;
  database: string;
  collection: string;
  snapshots: Snapshot[];
  byRecord: Map<string, OneOrMany>;
}

interface Batch {
  batchId: string;
  seq: number;
  snapshots: Snapshot[];
  levels: Levels;
  root: string;
  ipfsCid: string;
  polygonTxHash: string;
  blockNumber: number;
  anchoredAt: string | null;
}

export interface IngestResult {
  recordId: string;
  recordHash: string;
  tenantId: string;
  acceptedAt: string;
  idempotencyReplayed: boolean;
  snapshotId: string;
}

export interface LedgerOptions {
  flushRecords: number;
  flushMs: number;
  anchorMs: number;
  idempotencyWindowMs: number;
}

export interface AnchorFaults {
  /** New batches fail to anchor (status Failed). */
  anchorFail: boolean;
  /** New batches never anchor (stay Batched). */
  anchorNever: boolean;
  /** Report Merkle roots that are not the roots of the batches' trees (a lying service). */
  wrongRoot: boolean;
  /** Report record hashes other than the ones returned at ingestion. */
  wrongHash: boolean;
}

const forged = (hex: string) => sha256hex(`forged:${hex}`);

export const recordHash = (payload: JsonObject) => sha256hex(canonical(payload));
const collectionKey = (r: { tenantId: string; database: string; collection: string }) =>
  `${r.tenantId}\u0000${r.database}\u0000${r.collection}`;

const resultOf = (s: Snapshot, replayed: boolean): IngestResult => ({
  recordId: s.recordId,
  recordHash: s.recordHash,
  tenantId: s.tenantId,
  acceptedAt: s.ingestedAt,
  idempotencyReplayed: replayed,
  snapshotId: s.snapshotId,
});

export class Ledger {
  /** Every snapshot, in ingestion order. */
  readonly all: Snapshot[] = [];
  /**
   * Lookups by snapshot id, record and hash are built when first asked for, so
   * ingestion pays for none of them: `indexed` is how far they have read `all`.
   */
  private indexed = 0;
  private readonly byId = new Map<string, Snapshot>();
  /** Per tenant, database and collection (snapshots in ingestion order, so ingestedAt ascends). */
  private readonly collections = new Map<string, Collection>();
  /** Per tenant: by record hash; by idempotency key. */
  private readonly byHash = new Map<string, Map<string, OneOrMany>>();
  private readonly idempotency = new Map<string, Map<string, Snapshot>>();
  /** The last collection ingested into (a bulk request is mostly one collection). */
  private last: Collection | undefined;
  private lastNow = Number.NaN;
  private lastAt = '';
  private readonly batches = new Map<string, Batch>();
  private pending: Snapshot[] = [];
  private flushTimer: NodeJS.Timeout | undefined;
  private readonly timers = new Set<NodeJS.Timeout>();
  private batchSeq = 0;

  constructor(
    readonly options: LedgerOptions,
    private readonly faults: AnchorFaults,
    private readonly onReplayMismatch: (key: string) => void = () => {},
  ) {}

  /** Ingests one validated record whose payload hashes to `hash` (recordHash). */
  ingest(r: RecordFields, hash: string, now = Date.now()): IngestResult {
    const tenant = r.tenantId;
    const keys = this.idempotency.get(tenant);
    if (r.idempotencyKey !== undefined) {
      const seen = keys?.get(r.idempotencyKey);
      if (seen && now - seen.ingestedMs < this.options.idempotencyWindowMs) {
        if (seen.recordHash !== hash || seen.recordId !== r.recordId) this.onReplayMismatch(r.idempotencyKey);
        return resultOf(seen, true);
      }
    }
    if (now !== this.lastNow) {
      this.lastNow = now;
      this.lastAt = new Date(now).toISOString();
    }
    const at = this.lastAt;
    const c = this.collectionOf(r);
    const snap: Snapshot = {
      snapshotId: randomUUID(),
      tenantId: c.tenantId,
      database: c.database,
      collection: c.collection,
      recordId: own(r.recordId),
      recordVersion: own(r.recordVersion),
      operationType: r.operationType,
      recordHash: hash,
      sourceTimestamp: r.sourceTimestamp === undefined ? at : own(r.sourceTimestamp),
      status: 'PendingAnchor',
      ingestedAt: at,
      updatedAt: at,
      batchId: null,
      leafIndex: -1,
      ingestedMs: now,
    };
    if (r.clientId !== undefined) snap.clientId = own(r.clientId);
    this.all.push(snap);
    c.snapshots.push(snap);
    if (r.idempotencyKey !== undefined) {
      snap.idempotencyKey = own(r.idempotencyKey);
      getOrAdd(this.idempotency, c.tenantId, () => new Map()).set(snap.idempotencyKey, snap);
    }
    this.pending.push(snap);
    if (this.pending.length >= this.options.flushRecords) this.flush();
    else this.flushTimer ??= this.later(() => this.flush(), this.options.flushMs);
    return resultOf(snap, false);
  }

  private collectionOf(q: { tenantId: string; database: string; collection: string }): Collection {
    const last = this.last;
    if (
      last &&
      last.collection === q.collection &&
      last.database === q.database &&
      last.tenantId === q.tenantId
    )
      return last;
    const key = own(collectionKey(q));
    const c = getOrAdd(this.collections, key, () => ({
      tenantId: own(q.tenantId),
      database: own(q.database),
      collection: own(q.collection),
      snapshots: [],
      byRecord: new Map(),
    }));
    this.last = c;
    return c;
  }

  /** Seal every waiting record into one batch and schedule its anchoring. */
  flush() {
    if (this.flushTimer) {
      clearTimeout(this.flushTimer);
      this.timers.delete(this.flushTimer);
      this.flushTimer = undefined;
    }
    while (this.pending.length > 0) {
      const snaps = this.pending.splice(0, this.options.flushRecords);
      const seq = ++this.batchSeq;
      const levels = buildTree(snaps.map((s) => s.recordHash));
      const root = rootOf(levels);
      const batch: Batch = {
        batchId: randomUUID(),
        seq,
        snapshots: snaps,
        levels,
        root,
        ipfsCid: `bafkrei${sha256hex(`ipfs:${root}`).slice(0, 52)}`,
        polygonTxHash: `0x${sha256hex(`polygon:${root}:${seq}`)}`,
        blockNumber: 50_000_000 + seq,
        anchoredAt: null,
      };
      this.batches.set(batch.batchId, batch);
      const at = new Date().toISOString();
      snaps.forEach((s, i) => {
        s.status = 'Batched';
        s.batchId = batch.batchId;
        s.leafIndex = i;
        s.updatedAt = at;
      });
      if (this.faults.anchorNever) continue;
      const fail = this.faults.anchorFail;
      this.later(() => {
        const done = new Date().toISOString();
        if (!fail) batch.anchoredAt = done;
        for (const s of snaps) {
          s.status = fail ? 'Failed' : 'Anchored';
          s.updatedAt = done;
        }
      }, this.options.anchorMs);
    }
  }

  /** Anchors every sealed batch still waiting (those held back by anchorNever included) now. */
  anchorNow() {
    const done = new Date().toISOString();
    for (const b of this.batches.values()) {
      if (b.anchoredAt !== null || b.snapshots[0]?.status !== 'Batched') continue;
      b.anchoredAt = done;
      for (const s of b.snapshots) Object.assign(s, { status: 'Anchored', updatedAt: done });
    }
  }

  /** Brings the lookups up to date with `all`. */
  private index() {
    for (; this.indexed < this.all.length; this.indexed++) {
      const snap = this.all[this.indexed]!;
      this.byId.set(snap.snapshotId, snap);
      add(this.collectionOf(snap).byRecord, snap.recordId, snap);
      add(
        getOrAdd(this.byHash, snap.tenantId, () => new Map()),
        snap.recordHash,
        snap,
      );
    }
  }

  snapshot(snapshotId: string): Snapshot | undefined {
    this.index();
    return this.byId.get(snapshotId);
  }

  forRecord(q: { tenantId: string; database: string; collection: string; recordId: string }): Snapshot[] {
    this.index();
    return listOf(this.collections.get(collectionKey(q))?.byRecord.get(q.recordId));
  }

  byRecordHash(tenantId: string, hash: string): Snapshot[] {
    this.index();
    return listOf(this.byHash.get(tenantId)?.get(hash));
  }

  /**
   * One collection's snapshots ingested between from and to (ISO 8601,
   * inclusive), oldest first: GET /records. Binary search, so a window costs
   * what it returns, not what the ledger holds.
   */
  list(q: {
    tenantId: string;
    database: string;
    collection: string;
    from?: string;
    to?: string;
    offset: number;
    limit: number;
  }): { items: Snapshot[]; total: number } {
    const all = this.collections.get(collectionKey(q))?.snapshots ?? [];
    const bound = (t: string | undefined, strict: boolean, dflt: number) => {
      if (t === undefined) return dflt;
      let lo = 0;
      let hi = all.length;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        const at = all[mid]!.ingestedAt;
        if (strict ? at <= t : at < t) lo = mid + 1;
        else hi = mid;
      }
      return lo;
    };
    const start = bound(q.from, false, 0);
    const end = bound(q.to, true, all.length);
    return {
      items: all.slice(start + q.offset, Math.min(end, start + q.offset + q.limit)),
      total: Math.max(0, end - start),
    };
  }

  /** A batch as GET /batches/{id} returns it [local]: state, anchor and every leaf in tree order. */
  batchView(batchId: string, tenantId: string) {
    const b = this.batches.get(batchId);
    if (!b || !b.snapshots.some((s) => s.tenantId === tenantId)) return undefined;
    const status = b.snapshots[0]!.status;
    const anchored = status === 'Anchored';
    return {
      batchId: b.batchId,
      status,
      recordCount: b.snapshots.length,
      merkleRoot: `0x${this.faults.wrongRoot ? forged(b.root) : b.root}`,
      onChainConfirmed: anchored,
      polygonTxHash: anchored ? b.polygonTxHash : null,
      blockNumber: anchored ? b.blockNumber : null,
      ipfsCid: b.ipfsCid,
      anchoredAt: anchored ? b.anchoredAt : null,
      recordHashes: leavesOf(b.levels),
    };
  }

  /** The public view of a snapshot, as GET /snapshots returns it. */
  view(s: Snapshot) {
    const batch = s.batchId ? this.batches.get(s.batchId) : undefined;
    const anchored = s.status === 'Anchored' && batch !== undefined;
    const root = batch && (this.faults.wrongRoot ? forged(batch.root) : batch.root);
    return {
      snapshotId: s.snapshotId,
      recordId: s.recordId,
      database: s.database,
      collection: s.collection,
      status: s.status,
      onChainConfirmed: anchored,
      onChainMerkleRoot: anchored ? `0x${root}` : null,
      ingestedAt: s.ingestedAt,
      updatedAt: s.updatedAt,
      batchId: s.batchId,
      recordHash: this.faults.wrongHash ? forged(s.recordHash) : s.recordHash,
      recordVersion: s.recordVersion,
      operationType: s.operationType,
      polygonTxHash: anchored ? batch.polygonTxHash : null,
      blockNumber: anchored ? batch.blockNumber : null,
      ipfsCid: batch?.ipfsCid ?? null,
      anchoredAt: anchored ? batch.anchoredAt : null,
    };
  }

  /** Verification of one snapshot against a hash computed from a payload (or the stored hash). */
  verify(s: Snapshot, hash: string) {
    const batch = s.batchId ? this.batches.get(s.batchId) : undefined;
    const base = {
      snapshotId: s.snapshotId,
      recordId: s.recordId,
      recordVersion: s.recordVersion,
      recordHash: s.recordHash,
    };
    // wrongHash: a service that holds another hash than it returned at acceptance.
    const held = this.faults.wrongHash ? forged(s.recordHash) : s.recordHash;
    if (hash !== held) {
      return {
        ...base,
        verified: false,
        verificationStatus: 'fail',
        reasonCategory: 'payload_mismatch',
        snapshotHash: held,
        computedHash: hash,
      };
    }
    if (s.status !== 'Anchored' || !batch) {
      const reason = s.status === 'Failed' ? 'anchor_failed' : 'not_yet_anchored';
      return {
        ...base,
        verified: false,
        verificationStatus: 'pending',
        reasonCategory: reason,
        snapshotHash: s.recordHash,
        status: s.status,
      };
    }
    const proof: ProofStep[] = proofFor(batch.levels, s.leafIndex);
    return {
      ...base,
      verified: true,
      verificationStatus: 'pass',
      reasonCategory: 'verified_anchored',
      snapshotHash: s.recordHash,
      anchoredOnChain: true,
      merkleRoot: `0x${this.faults.wrongRoot ? forged(batch.root) : batch.root}`,
      merkleProof: proof,
      polygonTxHash: batch.polygonTxHash,
      blockNumber: batch.blockNumber,
      ipfsCid: batch.ipfsCid,
      anchoredAt: batch.anchoredAt,
    };
  }

  close() {
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    this.flushTimer = undefined;
  }

  private later(fn: () => void, ms: number): NodeJS.Timeout {
    const t = setTimeout(() => {
      this.timers.delete(t);
      fn();
    }, ms);
    this.timers.add(t);
    return t;
  }
}
