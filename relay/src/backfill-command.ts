// `certyo-pg backfill [table]`: schedules a backfill of a tracked table (or,
// with no table, follows the ones scheduled or running) and shows its
// progress until it is done: a live bar on a terminal, a plain line every few
// seconds otherwise. The relay does the work; this command only asks and
// watches, so stopping it (Ctrl-C) stops nothing.
import { parseArgs } from 'node:util';
import type { Sql } from 'postgres';
import { connect, pgArray } from './db.js';

export interface Progress {
  table_name: string;
  state: 'scheduled' | 'running' | 'finished' | 'stopped';
  rows_done: number;
  rows_total: number;
  stopped_because: string | null;
}

export async function readProgress(sql: Sql, tables?: string[]): Promise<Progress[]> {
  return sql<Progress[]>`
    select table_name, state, rows_done::float8 as rows_done, rows_total::float8 as rows_total, stopped_because
    from certyo.backfills
    where ${tables ? sql`table_name = any(${pgArray(tables)}::text[])` : sql`state in ('scheduled', 'running')`}
    order by table_name`;
}

const count = (n: number) => Math.round(n).toLocaleString('en-US');

function duration(seconds: number) {
  if (!Number.isFinite(seconds)) return '?';
  const s = Math.round(seconds);
  return s < 60
    ? `${s}s`
    : s < 3600
      ? `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`
      : `${(s / 3600).toFixed(1)}h`;
}

/** One line of progress: bar (on a terminal), rows done of total, rate, time left. */
export function progressLine(p: Progress, rowsPerSecond: number, bar: boolean): string {
  const total = Math.max(p.rows_total, p.rows_done);
  const share = total > 0 ? p.rows_done / total : p.state === 'finished' ? 1 : 0;
  const width = 24;
  const filled = Math.round(share * width);
  const parts = [
    p.table_name,
    ...(bar ? [`[${'#'.repeat(filled)}${'.'.repeat(width - filled)}]`] : []),
    `${count(p.rows_done)}/${count(total)} rows (${Math.floor(share * 100)}%)`,
  ];
  if (p.state === 'running' || p.state === 'scheduled') {
    parts.push(`${count(rowsPerSecond)} rows/s`);
    parts.push(`ETA ${rowsPerSecond > 0 ? duration((total - p.rows_done) / rowsPerSecond) : '?'}`);
  }
  if (p.state !== 'running') parts.push(p.stopped_because ? `stopped: ${p.stopped_because}` : p.state);
  return parts.join('  ');
}

export async function backfillCommand(args: string[], env = process.env): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: { detach: { type: 'boolean' }, 'interval-ms': { type: 'string' } },
  });
  const intervalMs = Number(values['interval-ms'] ?? 500);
  if (!Number.isInteger(intervalMs) || intervalMs < 10) {
    console.error(
      `certyo-pg backfill: --interval-ms must be an integer of at least 10, got "${values['interval-ms']}"`,
    );
    return 2;
  }
  const sql = connect(env.DATABASE_URL, { max: 1 });
  const tty = process.stdout.isTTY === true;
  try {
    let tables: string[] | undefined;
    if (positionals.length > 0) {
      tables = [];
      for (const table of positionals) {
        const [r] = await sql`select certyo.backfill(${table}::regclass)::float8 as estimate,
                                     format('%I.%I', n.nspname, c.relname) as name
                              from pg_class c join pg_namespace n on n.oid = c.relnamespace
                              where c.oid = ${table}::regclass`;
        tables.push(r!.name);
        console.log(
          `${r!.name}: backfill scheduled (about ${count(r!.estimate)} rows); the relay sends them`,
        );
      }
      if (values.detach) return 0;
    }
    let last = await readProgress(sql, tables);
    if (last.length === 0) {
      console.log('no backfill is scheduled or running');
      return 0;
    }
    tables ??= last.map((p) => p.table_name);
    const rates = new Map<string, number>();
    let t0 = performance.now();
    let lastPrint = 0;
    let scheduledSince = performance.now();
    let hinted = false;
    for (;;) {
      const done = last.every((p) => p.state === 'finished' || p.state === 'stopped');
      const now = performance.now();
      if (tty) {
        // Redraw every table's line in place.
        process.stdout.write(
          `${last.map((p) => `\x1b[2K${progressLine(p, rates.get(p.table_name) ?? 0, true)}`).join('\n')}\n`,
        );
      } else if (done || now - lastPrint >= 5000) {
        for (const p of last) console.log(progressLine(p, rates.get(p.table_name) ?? 0, false));
        lastPrint = now;
      }
      if (done) return last.some((p) => p.state === 'stopped') ? 1 : 0;
      if (!last.some((p) => p.state === 'scheduled')) scheduledSince = now;
      if (!hinted && now - scheduledSince > 10_000) {
        hinted = true;
        console.error('still waiting to start: is a relay running (certyo-pg relay, CERTYO_BACKFILL=on)?');
      }
      await new Promise((r) => setTimeout(r, intervalMs));
      const next = await readProgress(sql, tables);
      const t1 = performance.now();
      for (const p of next) {
        const before = last.find((q) => q.table_name === p.table_name);
        const rate = ((p.rows_done - (before?.rows_done ?? p.rows_done)) * 1000) / (t1 - t0);
        // Smoothed over a few seconds, so the ETA does not jump with each chunk.
        const had = rates.get(p.table_name);
        rates.set(
          p.table_name,
          had === undefined ? rate : had + (rate - had) * Math.min(1, (t1 - t0) / 3000),
        );
      }
      t0 = t1;
      if (tty) process.stdout.write(`\x1b[${last.length}A`);
      last = next;
    }
  } finally {
    await sql.end();
  }
}
