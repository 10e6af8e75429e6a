// The relay: claim changes (leased, in per-record order), POST them to
// Certyo outside any transaction, acknowledge (fenced by the lease) or park
// what Certyo rejected. Woken by NOTIFY while idle, polling as a fallback.
// Beside the delivery loops (delivery-loops.ts, sending with delivery.ts; their
// wake-up registration in registration.ts, payload layouts in layouts.ts) it
// runs verification (verifier.ts), backfills (backfiller.ts), skipped write-backs (write-due.ts) and its
// vacuum of the outbox (outbox-vacuum.ts).
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { Sql } from 'postgres';
import { Backfiller } from './backfiller.js';
import type { CertyoClient } from './certyo/client.js';
import type { Config } from './config.js';
import { isTransient } from './db.js';
import { Delivery, Metrics } from './delivery.js';
import { DeliveryLoops, type LoopHost } from './delivery-loops.js';
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

export class Relay implements LoopHost {
  readonly token = randomUUID();
  readonly metrics = new Metrics();
  healthy = true;
  /** Connected and delivering (start() finished). */
  started = false;
  lastError: string | undefined;
  private active = false;
  private workers: Promise<void>[] = [];
  private readonly sleepers = new Sleepers(() => this.active);
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
    const loops = new DeliveryLoops(this.cfg, this.sql, this.log, this.token, delivery, this);
    const woken = () => {
      loops.woken();
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
    this.workers = Array.from({ length: this.cfg.concurrency }, (_, i) => loops.run(i));
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

  wake(group: Group) {
    this.sleepers.wake(group);
  }

  asleep(group: Group) {
    return this.sleepers.asleep(group);
  }

  /** Full jitter: uniform in [0, min(max, base * 2^attempt)). */
  backoff(attempt: number) {
    return (
      Math.random() * Math.min(this.cfg.backoffMaxMs, this.cfg.backoffBaseMs * 2 ** Math.min(attempt, 20))
    );
  }
}
