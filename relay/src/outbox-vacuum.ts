// The relay's own vacuum of certyo.outbox, beside delivery.
import type { Logger } from 'pino';
import type { Sql } from 'postgres';

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
export class OutboxVacuum {
  /** Acknowledged (deleted) since the last vacuum; undefined: not allowed to vacuum. */
  private deletedSince: number | undefined;
  /** Vacuum after this many acknowledgements: 10,000, or 15% of the rows the outbox held at the last vacuum. */
  private every = 10_000;
  /** Outbox rows when this relay last analyzed it; undefined: not yet. */
  private analyzedRows: number | undefined;
  /** The vacuum running, if one is. */
  running: Promise<void> | undefined;

  constructor(
    private readonly sql: Sql,
    private readonly log: Logger,
    allowed: boolean,
  ) {
    this.deletedSince = allowed ? 0 : undefined;
  }

  /** Count acknowledged changes; starts a vacuum when one is due. */
  acknowledged(n: number) {
    if (this.deletedSince === undefined) return;
    this.deletedSince += n;
    if (this.deletedSince >= this.every && !this.running) this.running = this.vacuum();
  }

  private async vacuum() {
    const t0 = performance.now();
    try {
      const deleted = this.deletedSince;
      this.deletedSince = 0;
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
      this.every = Math.max(10_000, Math.round(0.15 * rows));
      this.log.debug({ deleted, rows, analyze, ms: Math.round(performance.now() - t0) }, 'outbox vacuumed');
    } catch (err) {
      this.log.warn({ err }, 'could not vacuum the outbox; leaving it to autovacuum');
      this.deletedSince = undefined;
    } finally {
      this.running = undefined;
    }
  }
}
