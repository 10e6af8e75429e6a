// The local Certyo's state, in memory: accepted records (snapshots), the
// per-tenant idempotency window, batching by count or age, fake anchoring,
// and verification with Merkle proofs.
import { randomUUID } from 'node:crypto';
import { canonical, type JsonObject } from '../certyo/json.js';
import { buildTree, type ProofStep, proofFor, rootOf, sha256hex } from '../certyo/merkle.js';
import { push } from '../maps.js';
import type { RecordInput } from './validate.js';

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
}

interface Batch {
  batchId: string;
  seq: number;
  snapshots: Snapshot[];
  levels: Buffer[][];
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
const recordKey = (r: { tenantId: string; database: string; collection: string; recordId: string }) =>
  `${r.tenantId}\u0000${r.database}\u0000${r.collection}\u0000${r.recordId}`;

export class Ledger {
  readonly snapshots = new Map<string, Snapshot>();
  private readonly byRecord = new Map<string, Snapshot[]>();
  private readonly byHash = new Map<string, Snapshot[]>();
  /** Per tenant, database and collection, in ingestion order (so ingestedAt ascends). */
  private readonly byCollection = new Map<string, Snapshot[]>();
  private readonly idempotency = new Map<string, { result: IngestResult; at: number }>();
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

  ingest(r: RecordInput, now = Date.now()): IngestResult {
    const hash = recordHash(r.recordPayload);
    if (r.idempotencyKey !== undefined) {
      const idemKey = `${r.tenantId}\u0000${r.idempotencyKey}`;
      const seen = this.idempotency.get(idemKey);
      if (seen && now - seen.at < this.options.idempotencyWindowMs) {
        if (seen.result.recordHash !== hash || seen.result.recordId !== r.recordId)
          this.onReplayMismatch(r.idempotencyKey);
        return { ...seen.result, idempotencyReplayed: true };
      }
    }
    const at = new Date(now).toISOString();
    const snap: Snapshot = {
      snapshotId: randomUUID(),
      tenantId: r.tenantId,
      ...(r.clientId !== undefined && { clientId: r.clientId }),
      database: r.database,
      collection: r.collection,
      recordId: r.recordId,
      recordVersion: r.recordVersion,
      operationType: r.operationType,
      recordHash: hash,
      ...(r.idempotencyKey !== undefined && { idempotencyKey: r.idempotencyKey }),
      sourceTimestamp: r.sourceTimestamp ?? at,
      status: 'PendingAnchor',
      ingestedAt: at,
      updatedAt: at,
      batchId: null,
      leafIndex: -1,
    };
    this.snapshots.set(snap.snapshotId, snap);
    push(this.byRecord, recordKey(snap), snap);
    push(this.byHash, `${snap.tenantId}\u0000${hash}`, snap);
    push(this.byCollection, collectionKey(snap), snap);
    const result: IngestResult = {
      recordId: r.recordId,
      recordHash: hash,
      tenantId: r.tenantId,
      acceptedAt: at,
      idempotencyReplayed: false,
      snapshotId: snap.snapshotId,
    };
    if (r.idempotencyKey !== undefined)
      this.idempotency.set(`${r.tenantId}\u0000${r.idempotencyKey}`, { result, at: now });
    this.pending.push(snap);
    if (this.pending.length >= this.options.flushRecords) this.flush();
    else this.flushTimer ??= this.later(() => this.flush(), this.options.flushMs);
    return result;
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
        Object.assign(s, { status: 'Batched', batchId: batch.batchId, leafIndex: i, updatedAt: at });
      });
      if (this.faults.anchorNever) continue;
      const fail = this.faults.anchorFail;
      this.later(() => {
        const done = new Date().toISOString();
        if (!fail) batch.anchoredAt = done;
        for (const s of snaps) Object.assign(s, { status: fail ? 'Failed' : 'Anchored', updatedAt: done });
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

  forRecord(q: { tenantId: string; database: string; collection: string; recordId: string }): Snapshot[] {
    return this.byRecord.get(recordKey(q)) ?? [];
  }

  byRecordHash(tenantId: string, hash: string): Snapshot[] {
    return this.byHash.get(`${tenantId}\u0000${hash}`) ?? [];
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
    const all = this.byCollection.get(collectionKey(q)) ?? [];
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
      recordHashes: b.levels[0]!.map((h) => h.toString('hex')),
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
    if (hash !== s.recordHash) {
      return {
        ...base,
        verified: false,
        verificationStatus: 'fail',
        reasonCategory: 'payload_mismatch',
        snapshotHash: s.recordHash,
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
