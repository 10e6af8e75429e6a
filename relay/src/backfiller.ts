// The relay's backfill loop: sends the rows tracked tables already held
// (scheduled by certyo.backfill, see sql/backfill.sql) one chunk per short
// transaction, through the outbox, so the delivery loops deliver them like
// any other change. It takes a bounded share: a step waits until the claims
// have leased the previous chunk, so live changes queue behind about one chunk
// at most, and it goes one step at a time.
import type { Logger } from 'pino';
import type { Sql } from 'postgres';
import type { Config } from './config.js';

export class BackfillMetrics {
  /** Rows this relay sent to the outbox for backfills. */
  rows = 0;
  chunks = 0;
  /** A chunk gave up on a row a user's transaction held (retried with a smaller chunk). */
  busy = 0;
}

interface Step {
  table_name: string | null;
  state: 'stamped' | 'finished' | 'waiting' | 'busy' | 'none';
  rows_stamped: number;
  rows_done: number;
}

/** What the backfill loop needs from the relay that runs it. */
export interface BackfillHost {
  running(): boolean;
  /** Resolves after ms, or earlier when a claim leased changes (claimed) or a wake-up came (scheduled). */
  sleep(ms: number, until: 'claimed' | 'scheduled'): Promise<boolean>;
  backoff(attempt: number): number;
}

export class Backfiller {
  readonly metrics = new BackfillMetrics();

  constructor(
    private readonly cfg: Config,
    private readonly sql: Sql,
    private readonly log: Logger,
    private readonly host: BackfillHost,
  ) {}

  async run() {
    let chunk = this.cfg.backfillChunk;
    let failures = 0;
    let busy = 0;
    while (this.host.running()) {
      let step: Step | undefined;
      try {
        [step] = await this.sql<Step[]>`
          select table_name, state, rows_stamped, rows_done::float8 as rows_done from certyo.backfill_step(${chunk})`;
        failures = 0;
      } catch (err) {
        failures++;
        this.log.warn({ err, failures }, 'backfill step failed; backing off');
        await this.host.sleep(this.host.backoff(failures), 'scheduled');
        continue;
      }
      switch (step?.state) {
        case 'stamped':
          busy = 0;
          chunk = Math.min(this.cfg.backfillChunk, chunk * 2);
          this.metrics.rows += step.rows_stamped;
          this.metrics.chunks++;
          this.log.debug(
            { table: step.table_name, rows: step.rows_stamped, done: step.rows_done },
            'backfill chunk',
          );
          break;
        case 'finished':
          this.log.info({ table: step.table_name, rows: step.rows_done }, 'backfill finished');
          break;
        case 'busy':
          // A row of the chunk is held by a user's transaction: their write goes first.
          busy++;
          this.metrics.busy++;
          chunk = Math.max(1, chunk >> 1);
          await this.host.sleep(this.host.backoff(busy), 'scheduled');
          break;
        case 'waiting':
          await this.host.sleep(this.cfg.pollIntervalMs, 'claimed');
          break;
        default:
          // Nothing scheduled: certyo.backfill() sends a wake-up; the poll is the fallback.
          await this.host.sleep(10 * this.cfg.pollIntervalMs, 'scheduled');
      }
    }
  }
}
