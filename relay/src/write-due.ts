// Status write-backs that were skipped because a user's transaction held the
// row (sql/write_due.sql): written again from their receipts every poll
// interval, so a row is not left 'pending' once Certyo has its version, with
// verification on or off. One cheap index probe when there is nothing due.
import type { Logger } from 'pino';
import type { Sql } from 'postgres';

export interface WriteDueHost {
  running(): boolean;
  /** Resolves after ms, or at once when stopping. */
  sleep(ms: number): Promise<boolean>;
}

export async function writeDueLoop(sql: Sql, log: Logger, intervalMs: number, host: WriteDueHost) {
  while (host.running()) {
    try {
      const [row] = await sql<{ n: number }[]>`select certyo.write_due() as n`;
      if (row && row.n > 0) log.debug({ rows: row.n }, 'skipped write-backs written');
    } catch (err) {
      log.warn({ err }, 'could not write skipped write-backs; trying again');
    }
    await host.sleep(intervalMs);
  }
}
