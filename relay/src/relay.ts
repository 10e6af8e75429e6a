// The relay: claim changes (leased, in per-record order), POST them to
// Certyo outside any transaction, acknowledge (fenced by the lease) or park
// what Certyo rejected. Woken by NOTIFY while idle, polling as a fallback.
import { hash, randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { Sql } from 'postgres';
import type { CertyoClient, Outcome, RecordResult } from './certyo/client.js';
import type { Config } from './config.js';
import { isTransient, pgArray } from './db.js';
import { Verifier } from './verifier.js';

/** What the relay learns about its database and role at start. */
interface Setup {
  database: string;
  may_vacuum: boolean;
  tls: boolean;
}

export interface Change {
  id: string;
  idempotency_key: string;
  op: 'I' | 'U' | 'D';
  record_id: string;
  collection: string;
  changed_at: Date;
  record: string;
}

/** A batch Certyo accepted, waiting to be acknowledged. */
interface Settlement {
  changes: Change[];
  results: RecordResult[] | undefined;
}

export class Metrics {
  delivered = 0;
  retried = 0;
  parked = 0;
  requests = 0;
  httpSeconds = 0;
}

const OPERATION = { I: 'insert', U: 'update', D: 'delete' } as const;

export class Relay {
  readonly token = randomUUID();
  readonly metrics = new Metrics();
  healthy = true;
  /** Connected and delivering (start() finished). */
  started = false;
  lastError: string | undefined;
  private running = false;
  private workers: Promise<void>[] = [];
  /** Delivery loops asleep: woken by a NOTIFY and by stop(). */
  private wakers = new Set<() => void>();
  /** Verification loops asleep: woken by stop() only (a new change gives them nothing to do). */
  private verifierWakers = new Set<() => void>();
  /**
   * The last claim came back full: there is a backlog, and every delivery
   * loop works on it. Otherwise loop 0 alone keeps up: more loops would split
   * the flow into smaller batches and spend more CPU per change (claims are
   * serialised anyway); they sleep on helperWakers until a claim is full.
   */
  private backlog = false;
  private helperWakers = new Set<() => void>();
  /** Registered in certyo.waiting_relay: the next writer sends a NOTIFY and takes the registration. */
  private waiting = false;
  /** Wake-ups received: a registration that one overtook is not counted as standing. */
  private wakeups = 0;
  /** Background acknowledgements committed: what each released may be claimed next. */
  private acknowledgements = 0;
  /** Acknowledged (deleted) since the relay last vacuumed the outbox; undefined: not allowed to vacuum. */
  private deletedSinceVacuum: number | undefined;
  /** Vacuum after this many acknowledgements: 10,000, or 15% of the rows the outbox held at the last vacuum. */
  private vacuumEvery = 10_000;
  /** Outbox rows when this relay last analyzed it; undefined: not yet. */
  private analyzedRows: number | undefined;
  private vacuuming: Promise<void> | undefined;
  private unlisten: (() => Promise<void>) | undefined;
  private database = '';
  /** Checks anchoring and writes it back (CERTYO_VERIFY=on). */
  verifier: Verifier | undefined;
  private verifying: Promise<void> | undefined;

  constructor(
    private readonly cfg: Config,
    private readonly sql: Sql,
    private readonly client: CertyoClient,
    private readonly log: Logger,
  ) {}

  /**
   * Connects (a server that is down or restarting, or a terminated backend, is
   * retried with backoff until stop()), subscribes to wake-ups, then starts the
   * loops. False: stopped before it could start. A permanent error (no
   * certyo schema, authentication) is thrown.
   */
  async start(): Promise<boolean> {
    this.running = true;
    let setup: Setup | undefined;
    for (let attempt = 1; !setup && this.running; attempt++) {
      try {
        [setup] = await this.sql<Setup[]>`
          select current_database() as database,
                 pg_has_role(current_user, c.relowner, 'USAGE') or r.rolsuper as may_vacuum,
                 coalesce((select s.ssl from pg_stat_ssl s where s.pid = pg_backend_pid()), false) as tls
          from pg_class c, pg_roles r
          where c.oid = 'certyo.outbox'::regclass and r.rolname = current_user`;
      } catch (err) {
        if (!isTransient(err)) throw err;
        this.lastError = (err as Error).message;
        this.log.warn({ err, attempt }, 'cannot reach PostgreSQL yet; retrying');
        await this.sleep(this.backoff(attempt));
      }
    }
    if (!setup || !this.running) return false;
    this.database = this.cfg.database ?? setup.database;
    this.deletedSinceVacuum = setup.may_vacuum ? 0 : undefined;
    // The notifying writer took our registration: register again when idle. postgres.js
    // re-issues LISTEN after a reconnect and calls onlisten again: a wake-up may have been
    // lost meanwhile, so claim now and register again too.
    const woken = () => {
      this.wakeups++;
      this.waiting = false;
      this.wake();
    };
    try {
      this.unlisten = (await this.sql.listen('certyo_wakeup', woken, woken)).unlisten;
    } catch (err) {
      // postgres.js issues the LISTEN again when that connection comes back (and calls
      // onlisten); until then the poll stands in.
      this.log.warn({ err }, 'LISTEN failed; relying on the poll until it is re-issued');
    }
    this.workers = Array.from({ length: this.cfg.concurrency }, (_, i) => this.work(i));
    if (this.cfg.verify) {
      this.verifier = new Verifier(
        this.cfg,
        this.sql,
        this.client,
        this.log,
        this.token,
        this.database,
        () => this.running,
        (ms) => this.sleep(ms, this.verifierWakers),
      );
      // One verification loop more than there are delivery streams (each delivery loop has
      // its claim and its background acknowledgement), so checking keeps pace with delivering.
      // 100k drain with verification on: with concurrency + 1 loops, 33,000-36,000 changes
      // unverified at the end of delivery; with these, 9,000 (at most 12,000 during it).
      const verifier = this.verifier;
      this.verifying = Promise.all(
        Array.from({ length: 2 * this.cfg.concurrency + 1 }, () => verifier.run()),
      ).then(() => {});
    }
    this.log.info(
      {
        token: this.token,
        concurrency: this.cfg.concurrency,
        database: this.database,
        // Whether this connection to PostgreSQL is encrypted (sslmode in DATABASE_URL decides).
        databaseTls: setup.tls,
        vacuumsOutbox: setup.may_vacuum,
      },
      'relay started',
    );
    this.started = true;
    return true;
  }

  /** Stop claiming, let in-flight batches finish until the deadline, give back every lease. */
  async stop() {
    this.running = false;
    this.wake();
    for (const w of [...this.verifierWakers, ...this.helperWakers]) w();
    const deadline = new Promise<'deadline'>((r) =>
      setTimeout(() => r('deadline'), this.cfg.shutdownTimeoutMs).unref(),
    );
    const finished = Promise.all([...this.workers, this.verifying, this.vacuuming]).then(
      () => 'finished' as const,
    );
    if ((await Promise.race([finished, deadline])) === 'deadline')
      this.log.warn(
        { shutdownTimeoutMs: this.cfg.shutdownTimeoutMs },
        'shutdown deadline reached with work in flight; its leases are given back',
      );
    try {
      const [row] = await this.sql`select certyo.release(${this.token}) as n`;
      await this.sql`select certyo.relay_busy(${this.token})`;
      this.log.info({ released: row?.n }, 'relay stopped');
    } catch (err) {
      this.log.warn({ err }, 'could not release leases; they expire on their own');
    }
    await this.unlisten?.().catch(() => {});
  }

  private wake() {
    for (const w of this.wakers) w();
    this.wakers.clear();
  }

  /** Resolves after ms, or earlier (true) when woken; at once when stopping (a loop may miss stop()'s wake-up). */
  private sleep(ms: number, wakers = this.wakers) {
    if (!this.running) return Promise.resolve(true);
    return new Promise<boolean>((resolve) => {
      const done = (woken: boolean) => {
        clearTimeout(t);
        wakers.delete(wake);
        resolve(woken);
      };
      const wake = () => done(true);
      const t = setTimeout(() => done(false), ms);
      wakers.add(wake);
    });
  }

  /**
   * Registration goes through the pool under the relay's token: no connection
   * of its own (postgres.js 3.4.9 never recovers a pool after a reserved
   * connection the server terminated is released: porsager/postgres#1199).
   */
  private async setWaiting(waiting: boolean) {
    if (this.waiting === waiting) return;
    const seen = this.wakeups;
    await (waiting
      ? this.sql`select certyo.relay_wait(${this.token})`
      : this.sql`select certyo.relay_busy(${this.token})`);
    // A writer may have taken the new registration (and woken us) before this returned.
    this.waiting = waiting && this.wakeups === seen;
  }

  private async work(worker: number) {
    let failures = 0;
    // The previous batch's acknowledgement, running while this loop claims and sends the
    // next batch (never more than one behind: awaited before the next one starts).
    let acking: Promise<void> = Promise.resolve();
    while (this.running) {
      if (worker > 0 && !this.backlog) {
        await this.sleep(this.cfg.pollIntervalMs, this.helperWakers);
        continue;
      }
      try {
        const t0 = performance.now();
        const acknowledged = this.acknowledgements;
        const changes = await this.sql<Change[]>`
          select id::text, idempotency_key::text, op::text, record_id, collection, changed_at, record
          from certyo.claim(${this.token}, ${this.cfg.batchSize}, ${`${this.cfg.leaseSeconds} seconds`},
                            ${this.cfg.maxBatchBytes})`;
        failures = 0;
        this.setBacklog(changes);
        if (changes.length === 0) {
          if (!this.waiting) {
            await this.setWaiting(true);
            continue; // claim once more: a change committed just before we registered sent no NOTIFY
          }
          // An acknowledgement committed since this claim began: claim what it released.
          if (this.acknowledgements !== acknowledged) continue;
          // Polled without a wake-up: one may have been lost (the listening connection was
          // down when a writer took our registration). Register again.
          if (!(await this.sleep(this.cfg.pollIntervalMs))) this.waiting = false;
          continue;
        }
        if (changes.length === this.cfg.batchSize) await this.setWaiting(false);
        const oversized = changes.filter((c) => Buffer.byteLength(c.record) > this.cfg.maxRecordBytes);
        if (oversized.length > 0) {
          const reasons = oversized.map(
            (c) =>
              `record of ${Buffer.byteLength(c.record)} bytes exceeds CERTYO_MAX_RECORD_BYTES (${this.cfg.maxRecordBytes})`,
          );
          await this.park(oversized, reasons);
        }
        const sendable = oversized.length > 0 ? changes.filter((c) => !oversized.includes(c)) : changes;
        const t1 = performance.now();
        const spent = { httpMs: 0 };
        const accepted: Settlement[] = [];
        if (sendable.length > 0) await this.deliver(sendable, spent, accepted);
        await acking;
        acking = this.acknowledge(accepted);
        this.log.debug(
          {
            worker,
            changes: changes.length,
            claimMs: Math.round(t1 - t0),
            deliverMs: Math.round(performance.now() - t1),
            httpMs: Math.round(spent.httpMs),
          },
          'batch done',
        );
      } catch (err) {
        failures++;
        this.lastError = (err as Error).message;
        this.log.warn({ err, worker, failures }, 'relay loop error; backing off');
        await this.sleep(this.backoff(failures));
      }
    }
    await acking;
  }

  /**
   * Acknowledges accepted batches in the background: the worker claims and
   * sends its next batch meanwhile. Until this commits, those changes stay
   * leased, so the next claim holds back their records' later changes; when it
   * commits, sleeping workers are woken to claim what it released (no NOTIFY
   * comes for changes committed earlier). A failure is logged: the leases
   * expire and the changes are sent again under the same idempotency keys.
   */
  private async acknowledge(accepted: Settlement[]) {
    if (accepted.length === 0) return;
    try {
      for (const a of accepted) await this.settle(a.changes, a.results);
      this.acknowledgements++;
      this.wake();
    } catch (err) {
      this.lastError = (err as Error).message;
      this.log.warn({ err }, 'acknowledgement failed; the changes are sent again once their lease expires');
    }
  }

  /** Full by count, or (nearly: the claim measures row images before the status columns go) by bytes. */
  private setBacklog(changes: Change[]) {
    let full = changes.length === this.cfg.batchSize;
    if (!full && changes.length > 1) {
      let bytes = 0;
      for (const c of changes) bytes += c.record.length; // characters: close enough to bytes here
      full = bytes >= 0.9 * this.cfg.maxBatchBytes;
    }
    if (full && !this.backlog) {
      for (const w of this.helperWakers) w();
      this.helperWakers.clear();
    }
    this.backlog = full;
  }

  /**
   * Acknowledged changes leave dead tuples in the outbox until vacuum, and
   * autovacuum looks at a table at most once per autovacuum_naptime (1 min by
   * default): long enough for claims to slow down by scanning them. When its
   * role may (owner, superuser), the relay vacuums the outbox itself after
   * every 10,000 acknowledged changes, or 15% of what the outbox held at the
   * last vacuum if that is more: every claim walks the primary key over the
   * entries deleted since, so on a 200k backlog vacuuming every 10k drains
   * twice as fast as every 200k, while each vacuum reads whole indexes, so on
   * a 1M backlog vacuuming that often costs more than it saves (1M drain: 24
   * vacuums at 15%, 7.2-7.5 s in all, against 51 at 5%, 9.8-10.1 s). It runs
   * beside delivery (a vacuum of a large outbox takes seconds), one at a time.
   * It analyzes the outbox too the first time, and again once its row count
   * has halved or doubled since: analyzing at every vacuum cost 5-7% of
   * PostgreSQL's CPU in a 300,000-change drain, and the outbox's shape hardly
   * changes otherwise.
   */
  private vacuumIfDue() {
    if (this.deletedSinceVacuum === undefined || this.deletedSinceVacuum < this.vacuumEvery || this.vacuuming)
      return;
    this.vacuuming = this.vacuum();
  }

  private async vacuum() {
    const t0 = performance.now();
    try {
      const deleted = this.deletedSinceVacuum;
      this.deletedSinceVacuum = 0;
      await this.sql.unsafe('vacuum certyo.outbox');
      // Vacuum extrapolates this count from the pages it read, and in a long drain it
      // lags behind without an ANALYZE (251,000 left of 1,000,000 when under 40,000
      // were): then vacuums come further apart, which did not slow that drain, and
      // autovacuum's own ANALYZE (every 5,000 changed rows) corrects it in time.
      const [size] = await this.sql<{ rows: number }[]>`
        select greatest(reltuples, 0)::float8 as rows from pg_class where oid = 'certyo.outbox'::regclass`;
      const rows = size?.rows ?? 0;
      const last = this.analyzedRows;
      const analyze = last === undefined || rows > 2 * last || rows < last / 2;
      if (analyze) {
        await this.sql.unsafe('analyze certyo.outbox');
        this.analyzedRows = rows;
      }
      this.vacuumEvery = Math.max(10_000, Math.round(0.15 * rows));
      this.log.debug({ deleted, rows, analyze, ms: Math.round(performance.now() - t0) }, 'outbox vacuumed');
    } catch (err) {
      this.log.warn({ err }, 'could not vacuum the outbox; leaving it to autovacuum');
      this.deletedSinceVacuum = undefined;
    } finally {
      this.vacuuming = undefined;
    }
  }

  /** Full jitter: uniform in [0, min(max, base * 2^attempt)). */
  backoff(attempt: number) {
    return (
      Math.random() * Math.min(this.cfg.backoffMaxMs, this.cfg.backoffBaseMs * 2 ** Math.min(attempt, 20))
    );
  }

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
  private async deliver(changes: Change[], spent: { httpMs: number }, accepted: Settlement[]): Promise<void> {
    for (let attempt = 1; this.running || attempt === 1; attempt++) {
      const t0 = performance.now();
      const outcome: Outcome = await this.client.postBulk(this.body(changes));
      const ms = performance.now() - t0;
      this.metrics.requests++;
      this.metrics.httpSeconds += ms / 1000;
      spent.httpMs += ms;
      switch (outcome.kind) {
        case 'accepted':
          this.healthy = true;
          accepted.push({ changes, results: outcome.results });
          return;
        case 'refused':
          if (changes.length === 1) return this.park(changes, [`${outcome.status}: ${outcome.detail}`]);
          for (const half of [changes.slice(0, changes.length >> 1), changes.slice(changes.length >> 1)]) {
            await this.deliver(half, spent, accepted);
          }
          return;
        case 'fatal':
          this.healthy = false;
          this.lastError =
            outcome.status < 400
              ? `Certyo answered ${outcome.status}, a redirect; not followed (it would take the API key elsewhere): check CERTYO_BASE_URL`
              : `Certyo answered ${outcome.status}: check CERTYO_API_KEY, CERTYO_TENANT_ID and CERTYO_BASE_URL`;
          this.log.error({ status: outcome.status, detail: outcome.detail }, this.lastError);
          await this.sleep(this.cfg.backoffMaxMs);
          break;
        case 'retry': {
          this.metrics.retried += changes.length;
          const ms = outcome.retryAfterMs ?? this.backoff(attempt);
          this.log.warn(
            { reason: outcome.reason, attempt, waitMs: Math.round(ms), changes: changes.length },
            'delivery will be retried',
          );
          await this.sleep(ms);
          break;
        }
      }
    }
    // Stopping mid-retry: the leases are given back by stop(); nothing is lost.
  }

  private async settle(changes: Change[], results: RecordResult[] | undefined) {
    const byIndex = new Map((results ?? []).map((r) => [r.index, r]));
    const acked: Change[] = [];
    const hashes: (string | null)[] = [];
    const acceptedAt: (string | null)[] = [];
    const snapshots: (string | null)[] = [];
    const digests: string[] = [];
    const rejected: Change[] = [];
    const reasons: string[] = [];
    changes.forEach((c, i) => {
      const r = byIndex.get(i);
      if (r?.status === 'rejected') {
        rejected.push(c);
        reasons.push(r.error ?? 'rejected by Certyo');
        return;
      }
      acked.push(c);
      hashes.push(r?.recordHash?.replace(/^sha256:/, '') ?? null);
      acceptedAt.push(r?.acceptedAt ?? null);
      snapshots.push(r?.snapshotId ?? null);
      digests.push(hash('sha256', c.record, 'hex'));
    });
    if (acked.length > 0) {
      const [row] = await this.retryDb(
        () => this.sql<{ n: number }[]>`
          select certyo.ack(${this.token}, ${pgArray(acked.map((c) => c.id))}::bigint[], ${pgArray(hashes)}::text[],
                            ${pgArray(acceptedAt)}::timestamptz[], ${pgArray(snapshots)}::text[],
                            ${pgArray(digests)}::text[]) as n`,
      );
      const acknowledged = row?.n ?? 0;
      this.metrics.delivered += acknowledged;
      if (this.deletedSinceVacuum !== undefined) this.deletedSinceVacuum += acknowledged;
      this.vacuumIfDue();
      if (acknowledged < acked.length) {
        // Our lease expired and another relay took these changes over; it acknowledges them (Certyo deduplicates).
        this.log.warn(
          { sent: acked.length, acknowledged },
          'lease lost: changes were taken over by another relay',
        );
      }
    }
    if (rejected.length > 0) await this.park(rejected, reasons);
  }

  private async park(changes: Change[], reasons: string[]) {
    await this.retryDb(
      () =>
        this
          .sql`select certyo.park(${this.token}, ${pgArray(changes.map((c) => c.id))}::bigint[], ${pgArray(reasons)}::text[])`,
    );
    this.metrics.parked += changes.length;
    this.log.warn({ changes: changes.map((c) => c.id), reasons }, 'changes parked: Certyo rejected them');
  }

  /** Acknowledgements survive a killed connection: retried (postgres.js reconnects) until stop. */
  private async retryDb<T>(op: () => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await op();
      } catch (err) {
        if (!this.running && attempt > 3) throw err;
        this.log.warn({ err, attempt }, 'database write failed; retrying');
        await new Promise((r) => setTimeout(r, this.backoff(attempt)));
      }
    }
  }
}
