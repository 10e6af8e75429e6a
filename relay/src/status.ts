// `certyo-pg status`: per tracked table, backlog, oldest pending age, parked
// and delivered counts, last delivery. Exit 1 when something needs attention
// (parked changes, or a pending change older than --max-lag seconds), so it
// can serve as a health check; --json for machines.
import { parseArgs } from 'node:util';
import { progressLine, type readProgress } from './backfill-command.js';
import { connect } from './db.js';

interface Row {
  table_name: string;
  collection: string;
  active: boolean;
  pending: number;
  oldest_pending_seconds: number | null;
  parked: number;
  delivered: number;
  last_delivered_at: Date | null;
}

export async function statusCommand(args: string[], env = process.env): Promise<number> {
  const { values } = parseArgs({
    args,
    options: { json: { type: 'boolean' }, 'max-lag': { type: 'string' } },
  });
  const maxLag = Number(values['max-lag'] ?? 300);
  if (!Number.isFinite(maxLag) || maxLag < 0) {
    console.error(`certyo-pg status: --max-lag must be a number of seconds, got "${values['max-lag']}"`);
    return 2;
  }
  const sql = connect(env.DATABASE_URL, { max: 1 });
  try {
    const rows = await sql<Row[]>`
      select table_name, collection, active, pending::int, oldest_pending_seconds, parked::int, delivered::int, last_delivered_at
      from certyo.status order by table_name`;
    // Every table's latest backfill, finished ones included (the running ones: see `certyo-pg backfill`).
    const backfills = await sql<
      (Awaited<ReturnType<typeof readProgress>>[number] & { rows_per_second: number | null })[]
    >`
      select table_name, state, rows_done::float8 as rows_done, rows_total::float8 as rows_total, stopped_because,
             rows_per_second
      from certyo.backfills order by table_name`;
    const attention = rows.flatMap((r) => [
      ...(r.parked > 0 ? [`${r.table_name}: ${r.parked} parked change(s); see certyo.parked`] : []),
      ...((r.oldest_pending_seconds ?? 0) > maxLag
        ? [
            `${r.table_name}: oldest pending change is ${Math.round(r.oldest_pending_seconds ?? 0)} s old (over ${maxLag} s)`,
          ]
        : []),
    ]);
    if (values.json) {
      console.log(
        JSON.stringify({ ok: attention.length === 0, attention, tables: rows, backfills }, null, 2),
      );
    } else {
      const header = [
        'table',
        'collection',
        'pending',
        'oldest pending',
        'parked',
        'delivered',
        'last delivery',
      ];
      const cells = rows.map((r) => [
        r.table_name + (r.active ? '' : ' (untracked)'),
        r.collection,
        String(r.pending),
        r.oldest_pending_seconds === null ? '-' : `${r.oldest_pending_seconds.toFixed(1)} s`,
        String(r.parked),
        String(r.delivered),
        r.last_delivered_at ? r.last_delivered_at.toISOString() : '-',
      ]);
      const width = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
      for (const line of [header, ...cells]) console.log(line.map((c, i) => c.padEnd(width[i]!)).join('  '));
      if (backfills.length > 0) {
        console.log('\nbackfills:');
        for (const b of backfills) console.log(`  ${progressLine(b, b.rows_per_second ?? 0, false)}`);
      }
      console.log(attention.length === 0 ? '\nok' : `\nneeds attention:\n  ${attention.join('\n  ')}`);
    }
    return attention.length === 0 ? 0 : 1;
  } finally {
    await sql.end();
  }
}
