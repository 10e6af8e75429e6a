// The relay's registration as waiting for changes: while a delivery loop
// finds nothing to claim, it registers in certyo.waiting_relay, and the next
// writer's capture sends a NOTIFY and takes the registration (see sql/wake.sql).
import type { Logger } from 'pino';
import type { Sql } from 'postgres';
import { isUndefinedFunction } from './db.js';

export class Registration {
  /** Registered in certyo.waiting_relay: the next writer sends a NOTIFY and takes the registration. */
  waiting = false;
  /** Wake-ups received: a registration that one overtook is not counted as standing. */
  private wakeups = 0;
  /** The install has no certyo.writers_in_flight(relay) (older than this relay). */
  private noInFlightCheck = false;

  constructor(
    private readonly sql: Sql,
    private readonly log: Logger,
    private readonly token: string,
  ) {}

  /** A writer's NOTIFY (or LISTEN issued again): it took our registration. */
  woken() {
    this.wakeups++;
    this.waiting = false;
  }

  /** Polled without a wake-up: one may have been lost (the listening connection was down). */
  lost() {
    this.waiting = false;
  }

  /**
   * Registration goes through the pool under the relay's token: no connection
   * of its own (postgres.js 3.4.9 never recovers a pool after a reserved
   * connection the server terminated is released: porsager/postgres#1199).
   */
  async set(waiting: boolean) {
    if (this.waiting === waiting) return;
    const seen = this.wakeups;
    await (waiting
      ? this.sql`select certyo.relay_wait(${this.token})`
      : this.sql`select certyo.relay_busy(${this.token})`);
    // A writer may have taken the new registration (and woken us) before this returned.
    this.waiting = waiting && this.wakeups === seen;
  }

  /** No transaction that wrote to the outbox is open (see certyo.writers_in_flight). */
  async noWriterInFlight() {
    if (this.noInFlightCheck) return true;
    try {
      const [row] = await this.sql<
        { busy: boolean }[]
      >`select certyo.writers_in_flight(${this.token}) as busy`;
      return !row?.busy;
    } catch (err) {
      if (!isUndefinedFunction(err)) throw err;
      // An install older than this relay (migrate before restarting relays): as before it.
      this.noInFlightCheck = true;
      this.log.warn('certyo.writers_in_flight(relay) is not installed: run certyo-pg migrate');
      return true;
    }
  }
}
