// Delivery of claimed changes: the bulk request, its outcomes (accepted,
// refused and split down to the record at fault, fatal, retried), and the
// settlement in PostgreSQL (acknowledged under the lease, or parked).
import { hash } from 'node:crypto';
import type { Logger } from 'pino';
import type { Sql } from 'postgres';
import type { CertyoClient, Outcome, RecordResult } from './certyo/client.js';
import type { Config } from './config.js';
import { pgArray } from './db.js';
import { Layouts } from './layouts.js';

export interface Change {
  id: string;
  idempotency_key: string;
  /** Insert, update, delete; B: a backfilled row (its image as it is, sent as an upsert). */
  op: 'I' | 'U' | 'D' | 'B';
  record_id: string;
  collection: string;
  changed_at: Date;
  record: string;
  table_id: number;
}

/** A batch Certyo accepted, waiting to be acknowledged. */
export interface Settlement {
  changes: Change[];
  results: RecordResult[] | undefined;
}

/** certyo.ack's arguments for accepted changes, as array literals (Delivery.acknowledgement). */
export interface Acknowledgement {
  count: number;
  ids: string;
  hashes: string;
  acceptedAt: string;
  snapshots: string;
  digests: string;
  layouts: string;
  payloads: string | null;
}

export class Metrics {
  delivered = 0;
  retried = 0;
  parked = 0;
  requests = 0;
  httpSeconds = 0;
}

const OPERATION = { I: 'insert', U: 'update', D: 'delete', B: 'upsert' } as const;

/** What delivery needs from the relay that runs it. */
export interface DeliveryHost {
  readonly metrics: Metrics;
  healthy: boolean;
  lastError: string | undefined;
  running(): boolean;
  /** Resolves after ms, or at once when stopping. */
  sleep(ms: number): Promise<boolean>;
  backoff(attempt: number): number;
  /** Changes acknowledged (left the outbox). */
  acknowledged(n: number): void;
}

export class Delivery {
  private readonly layouts: Layouts;

  constructor(
    private readonly cfg: Config,
    private readonly sql: Sql,
    private readonly client: CertyoClient,
    private readonly log: Logger,
    private readonly token: string,
    private readonly database: string,
    private readonly host: DeliveryHost,
  ) {
    this.layouts = new Layouts(sql, log);
  }

  /** The bulk request body for these changes. */
  body(changes: Change[]): string {
    const { tenantId, clientId } = this.cfg;
    const fixed = `"tenantId":${JSON.stringify(tenantId)},${clientId ? `"clientId":${JSON.stringify(clientId)},` : ''}"database":${JSON.stringify(this.database)}`;
    const records = changes.map(
      (c) =>
        `{${fixed},"collection":${JSON.stringify(c.collection)},"recordId":${JSON.stringify(c.record_id)},` +
        `"recordVersion":"${c.id}","operationType":"${OPERATION[c.op]}","recordPayload":${c.record},` +
        `"sourceTimestamp":"${c.changed_at.toISOString()}","idempotencyKey":"${c.idempotency_key}"}`,
    );
    return `{"tenantId":${JSON.stringify(tenantId)},"records":[${records.join(',')}]}`;
  }

  /** Sends until Certyo gives an answer about every change; outcome unknown is retried, never failed. */
  async deliver(changes: Change[], spent: { httpMs: number }, accepted: Settlement[]): Promise<void> {
    for (let attempt = 1; this.host.running() || attempt === 1; attempt++) {
      const t0 = performance.now();
      const outcome: Outcome = await this.client.postBulk(this.body(changes));
      const ms = performance.now() - t0;
      this.host.metrics.requests++;
      this.host.metrics.httpSeconds += ms / 1000;
      spent.httpMs += ms;
      switch (outcome.kind) {
        case 'accepted':
          this.host.healthy = true;
          accepted.push({ changes, results: outcome.results });
          return;
        case 'refused':
          if (changes.length === 1) return this.park(changes, [`${outcome.status}: ${outcome.detail}`]);
          for (const half of [changes.slice(0, changes.length >> 1), changes.slice(changes.length >> 1)]) {
            await this.deliver(half, spent, accepted);
          }
          return;
        case 'fatal':
          this.host.healthy = false;
          this.host.lastError =
            outcome.status < 400
              ? `Certyo answered ${outcome.status}, a redirect; not followed (it would take the API key elsewhere): check CERTYO_BASE_URL`
              : `Certyo answered ${outcome.status}: check CERTYO_API_KEY, CERTYO_TENANT_ID and CERTYO_BASE_URL`;
          this.log.error({ status: outcome.status, detail: outcome.detail }, this.host.lastError);
          await this.host.sleep(this.cfg.backoffMaxMs);
          break;
        case 'retry': {
          this.host.metrics.retried += changes.length;
          const ms = outcome.retryAfterMs ?? this.host.backoff(attempt);
          this.log.warn(
            { reason: outcome.reason, attempt, waitMs: Math.round(ms), changes: changes.length },
            'delivery will be retried',
          );
          await this.host.sleep(ms);
          break;
        }
      }
    }
    // Stopping mid-retry: the leases are given back by stop(); nothing is lost.
  }

  /**
   * certyo.ack's arguments for what Certyo accepted in these batches (as
   * literals, see pgArray); what it rejected inside a bulk answer is parked
   * here. count: the changes to acknowledge.
   */
  async acknowledgement(settlements: Settlement[]): Promise<Acknowledgement> {
    const ids: string[] = [];
    const hashes: (string | null)[] = [];
    const acceptedAt: (string | null)[] = [];
    const snapshots: (string | null)[] = [];
    const digests: string[] = [];
    const layouts: (number | null)[] = [];
    const payloads: (string | null)[] = [];
    for (const { changes, results } of settlements) {
      const byIndex = new Map((results ?? []).map((r) => [r.index, r]));
      const rejected: Change[] = [];
      const reasons: string[] = [];
      for (const [i, c] of changes.entries()) {
        const r = byIndex.get(i);
        if (r?.status === 'rejected') {
          rejected.push(c);
          reasons.push(r.error ?? 'rejected by Certyo');
          continue;
        }
        const recordHash = r?.recordHash?.replace(/^sha256:/, '') ?? null;
        ids.push(c.id);
        hashes.push(recordHash);
        acceptedAt.push(r?.acceptedAt ?? null);
        snapshots.push(r?.snapshotId ?? null);
        digests.push(hash('sha256', c.record, 'hex'));
        layouts.push(await this.layouts.of(c));
        // Where Certyo gave no hash, verification asks about the payload: the receipt keeps it.
        payloads.push(recordHash === null ? c.record : null);
      }
      if (rejected.length > 0) await this.park(rejected, reasons);
    }
    return {
      count: ids.length,
      ids: pgArray(ids),
      hashes: pgArray(hashes),
      acceptedAt: pgArray(acceptedAt),
      snapshots: pgArray(snapshots),
      digests: pgArray(digests),
      layouts: pgArray(layouts),
      payloads: hashes.includes(null) ? pgArray(payloads) : null,
    };
  }

  /** Acknowledges accepted changes (certyo.ack), retried until it commits. */
  async ack(a: Acknowledgement) {
    if (a.count === 0) return;
    const [row] = await this.retryDb(
      () => this.sql<{ n: number }[]>`
        select certyo.ack(${this.token}, ${a.ids}::bigint[], ${a.hashes}::text[], ${a.acceptedAt}::timestamptz[],
                          ${a.snapshots}::text[], ${a.digests}::text[], ${a.layouts}::integer[], ${a.payloads}::text[]) as n`,
    );
    this.acknowledged(row?.n ?? 0, a.count);
  }

  /** Counts changes certyo.ack took out of the outbox: sent of them were acknowledged under our lease. */
  acknowledged(acknowledged: number, sent: number) {
    this.host.metrics.delivered += acknowledged;
    this.host.acknowledged(acknowledged);
    if (acknowledged < sent) {
      // Our lease expired and another relay took these changes over; it acknowledges them (Certyo deduplicates).
      this.log.warn({ sent, acknowledged }, 'lease lost: changes were taken over by another relay');
    }
  }

  /** Parks changes with their reasons: visible in certyo.parked, retryable after a fix. */
  async park(changes: Change[], reasons: string[]) {
    await this.retryDb(
      () =>
        this
          .sql`select certyo.park(${this.token}, ${pgArray(changes.map((c) => c.id))}::bigint[], ${pgArray(reasons)}::text[])`,
    );
    this.host.metrics.parked += changes.length;
    this.log.warn({ changes: changes.map((c) => c.id), reasons }, 'changes parked: Certyo rejected them');
  }

  /** Acknowledgements survive a killed connection: retried (postgres.js reconnects) until stop. */
  private async retryDb<T>(op: () => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await op();
      } catch (err) {
        if (!this.host.running() && attempt > 3) throw err;
        this.log.warn({ err, attempt }, 'database write failed; retrying');
        await new Promise((r) => setTimeout(r, this.host.backoff(attempt)));
      }
    }
  }
}
