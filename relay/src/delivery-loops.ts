// The delivery loops: claim a batch (leased, in per-record order), send it,
// acknowledge it in the background while the next one is claimed. Loop 0
// keeps up with the writers; the others join only while claims come back full
// (a backlog). After a batch that was not full, loop 0 lingers
// (CERTYO_LINGER_MS) before claiming again: every batch costs a claim, a
// request and an acknowledgement whatever its size, so busy writers' changes
// are cheaper in larger batches. With nothing to claim, a loop registers in
// certyo.waiting_relay, and the next writer's NOTIFY (or the poll) wakes it
// at once.
import type { Logger } from 'pino';
import type { Sql } from 'postgres';
import type { Config } from './config.js';
import type { Change, Delivery, DeliveryHost, Settlement } from './delivery.js';
import type { Group } from './sleepers.js';

/** What the loops need of the relay: its lifecycle and its sleepers. */
export interface LoopHost extends DeliveryHost {
  /** Resolves after ms, or earlier (true) when its group is woken; at once when stopping. */
  sleep(ms: number, group?: Group): Promise<boolean>;
  wake(group: Group): void;
  asleep(group: Group): boolean;
}

export class DeliveryLoops {
  /**
   * The last claim came back full: there is a backlog, and every delivery
   * loop works on it. Otherwise loop 0 alone keeps up: more loops would split
   * the flow into smaller batches and spend more CPU per change (claims are
   * serialised anyway); they sleep (group 'helpers') until a claim is full.
   */
  private backlog = false;
  /** Registered in certyo.waiting_relay: the next writer sends a NOTIFY and takes the registration. */
  private waiting = false;
  /** Wake-ups received: a registration that one overtook is not counted as standing. */
  private wakeups = 0;
  /** Background acknowledgements committed: what each released may be claimed next. */
  private acknowledgements = 0;
  /** The install has no certyo.writers_in_flight(relay) (older than this relay). */
  private noInFlightCheck = false;

  constructor(
    private readonly cfg: Config,
    private readonly sql: Sql,
    private readonly log: Logger,
    private readonly token: string,
    private readonly delivery: Delivery,
    private readonly host: LoopHost,
  ) {}

  /** A writer's NOTIFY (or LISTEN issued again): it took our registration. */
  woken() {
    this.wakeups++;
    this.waiting = false;
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

  /** No transaction that wrote to the outbox is open (see certyo.writers_in_flight). */
  private async noWriterInFlight() {
    if (this.noInFlightCheck) return true;
    try {
      const [row] = await this.sql<
        { busy: boolean }[]
      >`select certyo.writers_in_flight(${this.token}) as busy`;
      return !row?.busy;
    } catch (err) {
      if ((err as { code?: string }).code !== '42883') throw err;
      // An install older than this relay (migrate before restarting relays): as before it.
      this.noInFlightCheck = true;
      this.log.warn('certyo.writers_in_flight(relay) is not installed: run certyo-pg migrate');
      return true;
    }
  }

  async run(worker: number) {
    const delivery = this.delivery;
    let failures = 0;
    // The previous batch's acknowledgement, running while this loop claims and sends the
    // next batch (never more than one behind: awaited before the next one starts).
    let acking: Promise<void> = Promise.resolve();
    // Since this loop registered, no writer that may have missed the registration is
    // still open (checked before the last claim); else claim again after inFlightMs.
    let quiet = true;
    let inFlightMs = 1;
    while (this.host.running()) {
      if (worker > 0 && !this.backlog) {
        await this.host.sleep(this.cfg.pollIntervalMs, 'helpers');
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
        if (changes.length > 0 && this.host.asleep('claimed')) this.host.wake('claimed');
        if (changes.length === 0) {
          if (!this.waiting) {
            await this.setWaiting(true);
            // Claim once more: a change committed just before we registered sent no NOTIFY.
            quiet = await this.noWriterInFlight();
            inFlightMs = 1;
            continue;
          }
          // An acknowledgement committed since this claim began: claim what it released.
          if (this.acknowledgements !== acknowledged) continue;
          // A writer that asked before our registration committed sent no NOTIFY, and
          // its change was not visible to this claim: claim again once it is gone.
          if (!quiet) {
            await this.host.sleep(inFlightMs);
            inFlightMs = Math.min(2 * inFlightMs, this.cfg.pollIntervalMs);
            quiet = await this.noWriterInFlight();
            continue;
          }
          // Polled without a wake-up: one may have been lost (the listening connection was
          // down when a writer took our registration). Register again.
          if (!(await this.host.sleep(this.cfg.pollIntervalMs))) this.waiting = false;
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
        // Writers keep the stream going: let their changes gather into a larger batch.
        if (this.cfg.lingerMs > 0 && !this.backlog) await this.host.sleep(this.cfg.lingerMs, 'stop');
      } catch (err) {
        failures++;
        this.host.lastError = (err as Error).message;
        this.log.warn({ err, worker, failures }, 'relay loop error; backing off');
        await this.host.sleep(this.host.backoff(failures));
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
      this.host.wake('delivery');
    } catch (err) {
      this.host.lastError = (err as Error).message;
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
      this.host.wake('helpers');
    }
    this.backlog = full;
  }
}
