// The local Certyo's batches: records sealed into Merkle trees by count or
// age, fake anchoring after a delay (or a failure, or never: AnchorFaults),
// and what depends on a record's batch: its public view, its verification
// with a Merkle proof, a batch's own view. The records themselves and their
// lookups are the ledger's (ledger.ts).
import { randomUUID } from 'node:crypto';
import {
  buildTree,
  type Levels,
  leavesOf,
  type ProofStep,
  proofFor,
  rootOf,
  sha256hex,
} from '../certyo/merkle.js';
import type { Snapshot } from './ledger.js';

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

export interface AnchoringOptions {
  /** Seal a batch once this many records wait... */
  flushRecords: number;
  /** ...or once the first of them has waited this long. */
  flushMs: number;
  /** A sealed batch anchors this long after. */
  anchorMs: number;
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

const forged = (hex: string) => sha256hex(`forged:${hex}`);

export class Anchoring {
  private readonly batches = new Map<string, Batch>();
  private pending: Snapshot[] = [];
  private flushTimer: NodeJS.Timeout | undefined;
  private readonly timers = new Set<NodeJS.Timeout>();
  private batchSeq = 0;

  constructor(
    private readonly options: AnchoringOptions,
    private readonly faults: AnchorFaults,
  ) {}

  /** A record just ingested waits for its batch. */
  add(snap: Snapshot) {
    this.pending.push(snap);
    if (this.pending.length >= this.options.flushRecords) this.flush();
    else this.flushTimer ??= this.later(() => this.flush(), this.options.flushMs);
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
