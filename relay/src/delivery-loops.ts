// The delivery loops: claim a batch (leased, in per-record order), send it,
// acknowledge it. Loop 0 keeps up with the writers; the others join only while
// claims come back full (a backlog). Every batch costs a claim, a request and
// an acknowledgement whatever its size. Keeping up, batches are small: the
// acknowledgement goes with the next claim (certyo.ack_and_claim, one round
// trip and one transaction for both). In a backlog it runs in the background
// while the next batch is claimed and sent. After a batch that was not full,
// loop 0 lingers (CERTYO_LINGER_MS) before claiming again, so busy writers'
// changes gather into larger batches. With nothing to claim, a loop registers
// in certyo.waiting_relay, and the next writer's NOTIFY (or the poll) wakes it
// at once.
import type { Logger } from 'pino';
import type { Sql } from 'postgres';
import type { Config } from './config.js';
import { isUndefinedFunction } from './db.js';
import type { Acknowledgement, Change, Delivery, DeliveryHost, Settlement } from './delivery.js';
import { Registration } from './registration.js';
import type { Group } from './sleepers.js';

/** A row of certyo.ack_and_claim: a claimed change, or (id NULL) only the count. */
type Claimed = Change & { acknowledged: number };

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
  /** This relay's registration as waiting for changes (certyo.waiting_relay). */
  private readonly registration: Registration;
  /** Background acknowledgements committed: what each released may be claimed next. */
  private acknowledgements = 0;
  /** The install has no certyo.ack_and_claim (older than this relay): acknowledgements go apart. */
  private noAckAndClaim = false;

  constructor(
    private readonly cfg: Config,
    private readonly sql: Sql,
    private readonly log: Logger,
    private readonly token: string,
    private readonly delivery: Delivery,
    private readonly host: LoopHost,
  ) {
    this.registration = new Registration(sql, log, token);
  }

  /** A writer's NOTIFY (or LISTEN issued again): it took our registration. */
  woken() {
    this.registration.woken();
  }

  /** Leases the next batch (certyo.claim). */
  private claim() {
    return this.sql<Change[]>`
      select id::text, idempotency_key::text, op::text, record_id, collection, changed_at, record, table_id
      from certyo.claim(${this.token}, ${this.cfg.batchSize}, ${`${this.cfg.leaseSeconds} seconds`},
                        ${this.cfg.maxBatchBytes})`;
  }

  /**
   * Acknowledges these batches and leases the next one in one call
   * (certyo.ack_and_claim). Undefined when the install has no such function
   * (then nothing was acknowledged nor claimed).
   */
  private async ackAndClaim(delivery: Delivery, a: Acknowledgement): Promise<Change[] | undefined> {
    let rows: Claimed[];
    try {
      rows = await this.sql<Claimed[]>`
        select id::text, idempotency_key::text, op::text, record_id, collection, changed_at, record, table_id, acknowledged
        from certyo.ack_and_claim(${this.token}, ${a.ids}::bigint[], ${a.hashes}::text[], ${a.acceptedAt}::timestamptz[],
                                  ${a.snapshots}::text[], ${a.digests}::text[], ${a.layouts}::integer[], ${a.payloads}::text[],
                                  ${this.cfg.batchSize}, ${`${this.cfg.leaseSeconds} seconds`}, ${this.cfg.maxBatchBytes})`;
    } catch (err) {
      if (!isUndefinedFunction(err)) throw err;
      this.noAckAndClaim = true;
      this.log.warn('certyo.ack_and_claim is not installed: run certyo-pg migrate');
      return undefined;
    }
    // Never no row: nothing claimed is one row that only counts the acknowledged.
    if (a.count > 0) delivery.acknowledged(rows[0]!.acknowledged, a.count);
    return rows[0]!.id === null ? [] : rows;
  }

  async run(worker: number) {
    const delivery = this.delivery;
    let failures = 0;
    // A batch's acknowledgement running in the background while this loop claims and
    // sends the next batch (never more than one behind: awaited before the next one starts).
    let acking: Promise<void> = Promise.resolve();
    // What Certyo accepted of the last batch, for the next claim to acknowledge (keeping
    // up: small batches, one round trip for both). Before this loop sleeps it is
    // acknowledged apart. Prepared (hashed, rejections parked) once: for the claim, or
    // in the background.
    let unacknowledged: Settlement[] = [];
    const acknowledgeApart = async (prepared?: Acknowledgement) => {
      const pending = prepared ?? unacknowledged;
      unacknowledged = [];
      if (Array.isArray(pending) && pending.length === 0) return;
      await acking;
      acking = this.acknowledge(delivery, pending);
    };
    // Since this loop registered, no writer that may have missed the registration is
    // still open (checked before the last claim); else claim again after inFlightMs.
    let quiet = true;
    let inFlightMs = 1;
    while (this.host.running()) {
      if (worker > 0 && !this.backlog) {
        await acknowledgeApart();
        await this.host.sleep(this.cfg.pollIntervalMs, 'helpers');
        continue;
      }
      try {
        const t0 = performance.now();
        const acknowledged = this.acknowledgements;
        let changes: Change[] | undefined;
        if (unacknowledged.length > 0 && !this.noAckAndClaim) {
          const a = await delivery.acknowledgement(unacknowledged);
          unacknowledged = [];
          // Failed (or not installed): acknowledged apart.
          changes = await this.ackAndClaim(delivery, a).catch(async (err) => {
            await acknowledgeApart(a);
            throw err;
          });
          if (changes === undefined) await acknowledgeApart(a);
        }
        if (changes === undefined) {
          await acknowledgeApart();
          changes = await this.claim();
        }
        failures = 0;
        this.setBacklog(changes);
        // The backfill waits for claims to lease its last chunk before stamping the next.
        if (changes.length > 0 && this.host.asleep('claimed')) this.host.wake('claimed');
        if (changes.length === 0) {
          if (!this.registration.waiting) {
            await this.registration.set(true);
            // Claim once more: a change committed just before we registered sent no NOTIFY.
            quiet = await this.registration.noWriterInFlight();
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
            quiet = await this.registration.noWriterInFlight();
            continue;
          }
          // Polled without a wake-up: one may have been lost (the listening connection was
          // down when a writer took our registration). Register again.
          if (!(await this.host.sleep(this.cfg.pollIntervalMs))) this.registration.lost();
          continue;
        }
        if (changes.length === this.cfg.batchSize) await this.registration.set(false);
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
        unacknowledged = accepted;
        // A backlog: acknowledged while the next batch is claimed and sent.
        if (this.backlog || this.noAckAndClaim) await acknowledgeApart();
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
        if (this.cfg.lingerMs > 0 && !this.backlog) {
          await acknowledgeApart();
          await this.host.sleep(this.cfg.lingerMs, 'stop');
        }
      } catch (err) {
        failures++;
        this.host.lastError = (err as Error).message;
        this.log.warn({ err, worker, failures }, 'relay loop error; backing off');
        await acknowledgeApart();
        await this.host.sleep(this.host.backoff(failures));
      }
    }
    await acknowledgeApart();
    await acking;
  }

  /**
   * Acknowledges accepted changes in the background: the worker claims and
   * sends its next batch meanwhile. Until this commits, those changes stay
   * leased, so the next claim holds back their records' later changes; when it
   * commits, sleeping workers are woken to claim what it released (no NOTIFY
   * comes for changes committed earlier). A failure is logged: the leases
   * expire and the changes are sent again under the same idempotency keys.
   */
  private async acknowledge(delivery: Delivery, pending: Acknowledgement | Settlement[]) {
    try {
      // (What Certyo rejected inside a bulk answer is parked while preparing.)
      await delivery.ack(Array.isArray(pending) ? await delivery.acknowledgement(pending) : pending);
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
