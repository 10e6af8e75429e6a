// The relay: claim changes (leased, in per-record order), POST them to
// Certyo outside any transaction, acknowledge (fenced by the lease) or park
// what Certyo rejected. Woken by NOTIFY while idle, polling as a fallback.
// Beside the delivery loops (delivery.ts) it runs verification (verifier.ts),
// backfills (backfiller.ts), skipped write-backs (write-due.ts) and its
// vacuum of the outbox (outbox-vacuum.ts).
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { Sql } from 'postgres';
import { Backfiller } from './backfiller.js';
import type { CertyoClient } from './certyo/client.js';
import type { Config } from './config.js';
import { isTransient } from './db.js';
import { type Change, Delivery, type DeliveryHost, Metrics, type Settlement } from './delivery.js';
import { OutboxVacuum } from './outbox-vacuum.js';
import { type Group, Sleepers } from './sleepers.js';
import { Verifier } from './verifier.js';
import { writeDueLoop } from './write-due.js';

export { type Change, Metrics } from './delivery.js';

/** What the relay learns about its database and role at start. */
interface Setup {
  database: string;
  may_vacuum: boolean;
  tls: boolean;
}

export class Relay implements DeliveryHost {
  readonly token = randomUUID();
  readonly metrics = new Metrics();
  healthy = true;
  /** Connected and delivering (start() finished). */
  started = false;
  lastError: string | undefined;
  private active = false;
  private workers: Promise<void>[] = [];
  /**
   * The last claim came back full: there is a backlog, and every delivery
   * loop works on it. Otherwise loop 0 alone keeps up: more loops would split
   * the flow into smaller batches and spend more CPU per change (claims are
   * serialised anyway); they sleep (group 'helpers') until a claim is full.
   */
  private backlog = false;
  private readonly sleepers = new Sleepers(() => this.active);
  /** Registered in certyo.waiting_relay: the next writer sends a NOTIFY and takes the registration. */
  private waiting = false;
  /** Wake-ups received: a registration that one overtook is not counted as standing. */
  private wakeups = 0;
  /** Background acknowledgements committed: what each released may be claimed next. */
  private acknowledgements = 0;
  private vacuum: OutboxVacuum | undefined;
  private unlisten: (() => Promise<void>) | undefined;
  private database = '';
  /** Checks anchoring and writes it back (CERTYO_VERIFY=on). */
  verifier: Verifier | undefined;
  private verifying: Promise<void> | undefined;
  /** Sends the rows tables already held (CERTYO_BACKFILL=on). */
  backfiller: Backfiller | undefined;
  private backfilling: Promise<void> | undefined;
  /** Writes back statuses a user's lock made the write-back skip. */
  private writingDue: Promise<void> | undefined;

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
    this.active = true;
    let setup: Setup | undefined;
    for (let attempt = 1; !setup && this.active; attempt++) {
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
    if (!setup || !this.active) return false;
    this.database = this.cfg.database ?? setup.database;
    this.vacuum = new OutboxVacuum(this.sql, this.log, setup.may_vacuum);
    const delivery = new Delivery(this.cfg, this.sql, this.client, this.log, this.token, this.database, this);
    // The notifying writer took our registration: register again when idle. postgres.js
    // re-issues LISTEN after a reconnect and calls onlisten again: a wake-up may have been
    // lost meanwhile, so claim now and register again too.
    const woken = () => {
      this.wakeups++;
      this.waiting = false;
      this.sleepers.wake('delivery');
      this.sleepers.wake('scheduled');
    };
    try {
      this.unlisten = (await this.sql.listen('certyo_wakeup', woken, woken)).unlisten;
    } catch (err) {
      // postgres.js issues the LISTEN again when that connection comes back (and calls
      // onlisten); until then the poll stands in.
      this.log.warn({ err }, 'LISTEN failed; relying on the poll until it is re-issued');
    }
    this.workers = Array.from({ length: this.cfg.concurrency }, (_, i) => this.work(i, delivery));
    if (this.cfg.verify) {
      this.verifier = new Verifier(
        this.cfg,
        this.sql,
        this.client,
        this.log,
        this.token,
        this.database,
        () => this.active,
        (ms) => this.sleep(ms, 'stop'),
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
    this.writingDue = writeDueLoop(this.sql, this.log, this.cfg.pollIntervalMs, {
      running: () => this.active,
      sleep: (ms) => this.sleep(ms, 'stop'),
    });
    if (this.cfg.backfill) {
      this.backfiller = new Backfiller(this.cfg, this.sql, this.log, {
        running: () => this.active,
        sleep: (ms, until) => this.sleep(ms, until),
        backoff: (attempt) => this.backoff(attempt),
      });
      this.backfilling = this.backfiller.run();
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
    this.active = false;
    this.sleepers.wakeAll();
    const deadline = new Promise<'deadline'>((r) =>
      setTimeout(() => r('deadline'), this.cfg.shutdownTimeoutMs).unref(),
    );
    const finished = Promise.all([
      ...this.workers,
      this.verifying,
      this.backfilling,
      this.writingDue,
      this.vacuum?.running,
    ]).then(() => 'finished' as const);
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

  running() {
    return this.active;
  }

  acknowledged(n: number) {
    this.vacuum?.acknowledged(n);
  }

  /** Resolves after ms, or earlier (true) when its group is woken; at once when stopping. */
  sleep(ms: number, group: Group = 'delivery') {
    return this.sleepers.sleep(ms, group);
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

  private async work(worker: number, delivery: Delivery) {
    let failures = 0;
    // The previous batch's acknowledgement, running while this loop claims and sends the
    // next batch (never more than one behind: awaited before the next one starts).
    let acking: Promise<void> = Promise.resolve();
    while (this.active) {
      if (worker > 0 && !this.backlog) {
        await this.sleep(this.cfg.pollIntervalMs, 'helpers');
        continue;
      }
      try {
        const t0 = performance.now();
        const acknowledged = this.acknowledgements;
        const changes = await this.sql<Change[]>`
          select id::text, idempotency_key::text, op::text, record_id, collection, changed_at, record, table_id
          from certyo.claim(${this.token}, ${this.cfg.batchSize}, ${`${this.cfg.leaseSeconds} seconds`},
                            ${this.cfg.maxBatchBytes})`;
        failures = 0;
        this.setBacklog(changes);
        // The backfill waits for claims to lease its last chunk before stamping the next.
        if (changes.length > 0 && this.sleepers.asleep('claimed')) this.sleepers.wake('claimed');
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
          await delivery.park(oversized, reasons);
        }
        const sendable = oversized.length > 0 ? changes.filter((c) => !oversized.includes(c)) : changes;
        const t1 = performance.now();
        const spent = { httpMs: 0 };
        const accepted: Settlement[] = [];
        if (sendable.length > 0) await delivery.deliver(sendable, spent, accepted);
        await acking;
        acking = this.acknowledge(delivery, accepted);
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
  private async acknowledge(delivery: Delivery, accepted: Settlement[]) {
    if (accepted.length === 0) return;
    try {
      for (const a of accepted) await delivery.settle(a.changes, a.results);
      this.acknowledgements++;
      this.sleepers.wake('delivery');
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
      this.sleepers.wake('helpers');
    }
    this.backlog = full;
  }

  /** Full jitter: uniform in [0, min(max, base * 2^attempt)). */
  backoff(attempt: number) {
    return (
      Math.random() * Math.min(this.cfg.backoffMaxMs, this.cfg.backoffBaseMs * 2 ** Math.min(attempt, 20))
    );
  }
}
