// The local Certyo's state, in memory: accepted records (snapshots), the
// per-tenant idempotency window and the lookups the read side asks for.
// Batching, anchoring, proofs and the views that depend on a record's batch
// are in anchoring.ts.
import { randomUUID } from 'node:crypto';
import { canonical, type JsonObject, own } from '../certyo/json.js';
import { sha256hex } from '../certyo/merkle.js';
import { getOrAdd } from '../maps.js';
import { type AnchorFaults, Anchoring, type AnchoringOptions } from './anchoring.js';
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

export interface IngestResult {
  recordId: string;
  recordHash: string;
  tenantId: string;
  acceptedAt: string;
  idempotencyReplayed: boolean;
  snapshotId: string;
}

export interface LedgerOptions extends AnchoringOptions {
  /** An idempotency key sent again within this window gets the first answer. */
  idempotencyWindowMs: number;
}

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
  /** Batches, anchoring, and the views and proofs that depend on them. */
  private readonly anchoring: Anchoring;

  constructor(
    readonly options: LedgerOptions,
    faults: AnchorFaults,
    private readonly onReplayMismatch: (key: string) => void = () => {},
  ) {
    this.anchoring = new Anchoring(options, faults);
  }

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
    this.anchoring.add(snap);
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
    this.anchoring.flush();
  }

  /** Anchors every sealed batch still waiting (those held back by anchorNever included) now. */
  anchorNow() {
    this.anchoring.anchorNow();
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

  /** A batch as GET /batches/{id} returns it [local]. */
  batchView(batchId: string, tenantId: string) {
    return this.anchoring.batchView(batchId, tenantId);
  }

  /** The public view of a snapshot, as GET /snapshots returns it. */
  view(s: Snapshot) {
    return this.anchoring.view(s);
  }

  /** Verification of one snapshot against a hash computed from a payload (or the stored hash). */
  verify(s: Snapshot, hash: string) {
    return this.anchoring.verify(s, hash);
  }

  close() {
    this.anchoring.close();
  }
}
