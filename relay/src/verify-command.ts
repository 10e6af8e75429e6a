// `certyo-pg verify [table] [--record ID] [--json] [--no-flag]`: the tamper
// sweep. Runs certyo.verify() (SQL: it recomputes each row's payload as
// capture does and compares it with what was delivered and anchored), reports
// per table and lists every tampered row, and every record deleted behind
// capture, with its evidence; flags them ('tampered' in the row,
// certyo.flag_tampered; 'deleted' on the receipt, certyo.flag_deleted; both
// need certyo_admin) and exits 1 when it found either.
import { parseArgs } from 'node:util';
import { connect, pgArray } from './db.js';
import { groupBy } from './maps.js';

const VERDICTS = [
  'anchored',
  'partially_anchored',
  'pending',
  'tampered',
  'deleted',
  'unverifiable',
  'never_anchored',
] as const;
type Verdict = (typeof VERDICTS)[number];

interface Row {
  table_name: string;
  record_id: string | null;
  version: string | null;
  verdict: Verdict;
  anchor_status: string | null;
  record_hash: string | null;
  anchored_digest: string | null;
  current_digest: string | null;
  detail: string | null;
}

export const VERIFY_USAGE = `certyo-pg verify [table] [--record ID] [--json] [--no-flag]

Checks every current row of one tracked table (or all) against the version
delivered to and anchored by Certyo:
  anchored        unchanged since it was anchored
  pending         changed, change captured: waiting for delivery or anchoring
  tampered        changed WITHOUT a captured change (capture was bypassed)
  deleted         the row is gone WITHOUT a captured delete (capture was bypassed)
  partially_anchored  anchored, but columns added since are not covered by the anchor
  unverifiable    a migration since (a dropped column, a type that renders otherwise)
                  keeps it from being compared with its anchor: re-anchor the table
  never_anchored  never captured (existed before tracking) or anchoring failed
Findings are listed with the evidence; tampered rows are marked 'tampered' in
certyo_anchor_status, deleted records on their receipt (certyo.receipt.finding;
--no-flag: report only). Exit 1 when anything is found.`;

export async function verifyCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      record: { type: 'string' },
      json: { type: 'boolean', default: false },
      'no-flag': { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    console.log(VERIFY_USAGE);
    return 0;
  }
  if (positionals.length > 1 || (values.record !== undefined && positionals.length === 0)) {
    console.error(`certyo-pg verify: give at most one table, and a table with --record\n\n${VERIFY_USAGE}`);
    return 2;
  }
  const table = positionals[0] ?? null;
  const sql = connect(process.env.DATABASE_URL, { max: 1, onnotice: () => {} });
  try {
    const t0 = performance.now();
    const counts = new Map<string, Record<Verdict, number>>();
    const tampered: Row[] = [];
    const deleted: Row[] = [];
    /** What migrations did to the verdicts: per table and detail, how many rows. */
    const ddl = new Map<string, number>();
    // One snapshot: each table's row count, and the rows needing attention
    // (certyo.verify returns only those); the rest are anchored and unchanged.
    await sql.begin('isolation level repeatable read read only', async (tx) => {
      const tables = await tx<{ table_name: string }[]>`
        select table_name from certyo.tracked_tables
        where ${table}::regclass is null or table_name::regclass = ${table}::regclass
        order by table_name`;
      for (const { table_name } of tables) {
        const [c] =
          values.record === undefined ? await tx.unsafe(`select count(*)::int as n from ${table_name}`) : [];
        counts.set(table_name, {
          anchored: Number(c?.n ?? 0),
          pending: 0,
          tampered: 0,
          deleted: 0,
          partially_anchored: 0,
          unverifiable: 0,
          never_anchored: 0,
        });
      }
      const cursor = tx<Row[]>`
        select table_name, record_id, version::text, verdict, anchor_status, record_hash,
               anchored_digest, current_digest, detail
        from certyo.verify(${table}::regclass, ${values.record ?? null}::text)`.cursor(5000);
      for await (const rows of cursor) {
        for (const r of rows) {
          const c = counts.get(r.table_name);
          if (!c) continue;
          // A deleted record has no row among those counted.
          if (values.record !== undefined || r.verdict === 'deleted') c[r.verdict]++;
          else if (r.verdict !== 'anchored') {
            c.anchored--;
            c[r.verdict]++;
          }
          if (r.verdict === 'tampered') tampered.push(r);
          if (r.verdict === 'deleted') deleted.push(r);
          if (r.verdict === 'unverifiable' || r.verdict === 'partially_anchored') {
            const k = `${r.table_name}: ${r.verdict}: ${r.detail}`;
            ddl.set(k, (ddl.get(k) ?? 0) + 1);
          }
        }
      }
    });
    const byVersion = (a: Row, b: Row) =>
      a.table_name.localeCompare(b.table_name) || Number(a.version) - Number(b.version);
    tampered.sort(byVersion);
    deleted.sort(byVersion);
    const seconds = (performance.now() - t0) / 1000;
    const checked = [...counts.values()].reduce((n, c) => n + VERDICTS.reduce((m, v) => m + c[v], 0), 0);

    let flagged = 0;
    let flaggedDeleted = 0;
    let flagError: string | undefined;
    if (!values['no-flag']) {
      try {
        for (const [name, rows] of groupBy(tampered, (r) => r.table_name)) {
          const [f] = await sql`
            select certyo.flag_tampered(${name}::regclass, ${pgArray(rows.map((r) => r.record_id ?? ''))}::text[],
                                        ${pgArray(rows.map((r) => r.version))}::bigint[]) as n`;
          flagged += Number(f?.n ?? 0);
        }
        for (const [name, rows] of groupBy(deleted, (r) => r.table_name)) {
          const [f] = await sql`
            select certyo.flag_deleted(${name}::regclass, ${pgArray(rows.map((r) => r.record_id ?? ''))}::text[],
                                       ${pgArray(rows.map((r) => r.version))}::bigint[]) as n`;
          flaggedDeleted += Number(f?.n ?? 0);
        }
      } catch (err) {
        flagError = (err as Error).message;
      }
    }

    if (values.json) {
      console.log(
        JSON.stringify(
          {
            checked,
            seconds: Number(seconds.toFixed(3)),
            tables: Object.fromEntries(counts),
            tampered,
            deleted,
            migrations: Object.fromEntries(ddl),
            flagged,
            flaggedDeleted,
            ...(flagError && { flagError }),
          },
          null,
          2,
        ),
      );
    } else {
      if (counts.size === 0) console.log(table ? `${table}: no rows` : 'no tracked rows');
      for (const [name, c] of counts) {
        const total = VERDICTS.reduce((m, v) => m + c[v], 0);
        console.log(
          `${name}: ${total - c.deleted} rows: ${c.anchored} anchored, ${c.pending} pending, ${c.tampered} TAMPERED, ${c.never_anchored} never anchored` +
            (c.partially_anchored > 0 ? `, ${c.partially_anchored} partially anchored` : '') +
            (c.unverifiable > 0 ? `, ${c.unverifiable} unverifiable` : '') +
            (c.deleted > 0
              ? `; ${c.deleted} record${c.deleted === 1 ? '' : 's'} DELETED behind capture`
              : ''),
        );
      }
      for (const r of tampered) {
        console.log(
          `\nTAMPERED ${r.table_name} record ${r.record_id} (version ${r.version ?? 'none'}): ${r.detail}`,
        );
        console.log(`  Certyo record hash      ${r.record_hash ?? '-'} (${r.anchor_status ?? 'no receipt'})`);
        console.log(`  payload sha256 then     ${r.anchored_digest ?? '-'}`);
        console.log(`  payload sha256 now      ${r.current_digest ?? '-'}`);
      }
      for (const [what, n] of ddl) console.log(`\n${n} rows of ${what}`);
      for (const r of deleted) {
        console.log(`\nDELETED ${r.table_name} record ${r.record_id}: ${r.detail}`);
        console.log(`  Certyo record hash      ${r.record_hash ?? '-'} (${r.anchor_status ?? 'no receipt'})`);
        console.log(`  payload sha256 then     ${r.anchored_digest ?? '-'}`);
      }
      const rate = checked / Math.max(seconds, 1e-6);
      console.log(
        `\nchecked ${checked} rows in ${seconds.toFixed(2)} s (${Math.round(rate)} rows/s)` +
          (tampered.length + deleted.length === 0
            ? '; no tampering found'
            : values['no-flag']
              ? `; ${tampered.length} tampered, ${deleted.length} deleted (not flagged: --no-flag)`
              : `; ${tampered.length} tampered, ${flagged} flagged 'tampered' in certyo_anchor_status; ` +
                `${deleted.length} deleted, ${flaggedDeleted} flagged on their receipts`),
      );
      if (flagError) console.error(`could not flag the tampered rows: ${flagError}`);
    }
    return tampered.length + deleted.length > 0 ? 1 : 0;
  } finally {
    await sql.end();
  }
}
