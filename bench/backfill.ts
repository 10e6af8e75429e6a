// Backfill benchmark, in one run on one machine (never beside another bench
// or the tests): the relay's drain rate from a backlog of N captured inserts,
// then a backfill of a table of N rows that existed before tracking, end to
// end (scheduled until every row is delivered and acknowledged), while live
// single-row inserts commit at a steady rate into another tracked table: their
// commit-to-received latency during the backfill, and CPU per 1,000 rows.
// Verification off (verify.js measures it).
// Run: npm run build && node dist/bench/backfill.js [--rows N] [--live-rate R]
import { parseArgs } from 'node:util';
import postgres from 'postgres';
import { startBench, startRelay, stopRelay } from './harness.js';
import { CLK_TCK, machineTicks, pct, round, untilDrained, usage } from './measure.js';

const { values } = parseArgs({ options: { rows: { type: 'string' }, 'live-rate': { type: 'string' } } });
const ROWS = Number(values.rows ?? 1_000_000);
const LIVE_RATE = Number(values['live-rate'] ?? 100);
/** Live rows' ids: apart from the backfilled ones (arrivals are matched by record id). */
const LIVE_FROM = 10_000_000_000;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function main() {
  const bench = await startBench(4);
  const { sql, url, api } = bench;
  try {
    const columns = 'kind text not null, amount numeric(12,2), at timestamptz, attrs json';
    const fill = (table: string) =>
      sql.unsafe(`insert into ${table} (kind, amount, at, attrs)
                  select 'bulk', g % 1000, timestamptz '2026-01-01' + g * interval '1 s', '{"sku":"B-2"}'
                  from generate_series(1, ${ROWS}) g`);
    await sql.unsafe(`
      create table events (id bigint generated always as identity primary key, ${columns});
      create table items (id bigint generated always as identity primary key, ${columns});
      create table live (id bigint generated always as identity (start ${LIVE_FROM}) primary key, ${columns});
      select certyo.enable_tracking('events');
      select certyo.enable_tracking('live');`);

    // 1. Drain rate: N captured inserts, the relay started afterwards.
    await fill('events');
    await sql`vacuum analyze certyo.outbox`;
    api.requests.length = 0;
    const drainTicks = machineTicks();
    let t0 = performance.now();
    let relay = startRelay(bench, { CERTYO_VERIFY: 'off' });
    await untilDrained(sql);
    const drainSeconds = (performance.now() - t0) / 1000;
    const drainCpu = usage(relay).cpuSeconds;
    const drainTicksEnd = machineTicks();
    const drainMachineCpu = (drainTicksEnd.busy - drainTicks.busy) / CLK_TCK;
    const drainRequests = api.requests.length;
    await stopRelay(relay);

    // 2. Backfill of N rows that were there before tracking, the relay running, live inserts meanwhile.
    await fill('items');
    await sql`vacuum analyze items`;
    await sql`vacuum certyo.outbox`;
    await sql`select certyo.enable_tracking('items')`;
    relay = startRelay(bench, { CERTYO_VERIFY: 'off' });
    // Live writes at a steady rate (scheduled times: a write that starts late counts its delay).
    const writer = postgres(url, { max: 1, onnotice: () => {} });
    const committed = new Map<string, { scheduled: number; began: number; committed: number }>();
    let writing = true;
    const live = (async () => {
      const start = performance.now();
      for (let i = 0; writing; i++) {
        const scheduled = start + (i * 1000) / LIVE_RATE;
        const wait = scheduled - performance.now();
        if (wait > 0) await sleep(wait);
        const began = performance.now();
        const [r] = await writer`insert into live (kind, amount) values ('sale', 19.99) returning id::text`;
        committed.set(r!.id, { scheduled, began, committed: performance.now() });
      }
    })();
    await sleep(2000); // the live flow settles before the backfill begins
    api.requests.length = 0;
    const ticks0 = machineTicks();
    const cpu0 = usage(relay).cpuSeconds;
    t0 = performance.now();
    await sql`select certyo.backfill('items')`;
    for (;;) {
      const [b] = await sql`select state from certyo.backfills`;
      if (b?.state === 'finished') break;
      await sleep(50);
    }
    await untilDrained(sql);
    const backfillSeconds = (performance.now() - t0) / 1000;
    const ticks1 = machineTicks();
    const relayCpu = usage(relay).cpuSeconds - cpu0;
    writing = false;
    await live;
    await writer.end();
    await untilDrained(sql);
    await stopRelay(relay);

    // Live changes committed while the backfill ran: commit to first arrival.
    const arrived = new Map<string, number>();
    for (const r of api.requests)
      for (const x of r.records)
        if (x.status === 'accepted' && !arrived.has(x.recordId)) arrived.set(x.recordId, r.arrivedMs);
    const fromCommit: number[] = [];
    const fromSchedule: number[] = [];
    const insertMs: number[] = [];
    for (const [id, c] of committed) {
      const at = arrived.get(id);
      if (at === undefined || c.committed < t0 || c.committed > t0 + backfillSeconds * 1000) continue;
      fromCommit.push(at - c.committed);
      fromSchedule.push(at - c.scheduled);
      insertMs.push(c.committed - c.began);
    }
    const [steps] =
      await sql`select rows_done::int as rows, chunks_done::int as chunks from certyo.backfills`;
    const drainRate = ROWS / drainSeconds;
    const backfillRate = ROWS / backfillSeconds;
    const machineCpu = (ticks1.busy - ticks0.busy) / CLK_TCK;
    console.log(
      JSON.stringify(
        {
          rows: ROWS,
          drain: {
            seconds: round(drainSeconds),
            changesPerSecond: Math.round(drainRate),
            relayCpuSecondsPer1000: round((drainCpu / ROWS) * 1000, 3),
            machineCpuSecondsPer1000: round((drainMachineCpu / ROWS) * 1000, 3),
            recordsPerRequest: Math.round(ROWS / drainRequests),
            machineBusy: round(
              (drainTicksEnd.busy - drainTicks.busy) / (drainTicksEnd.total - drainTicks.total),
              2,
            ),
          },
          backfill: {
            seconds: round(backfillSeconds),
            rowsPerSecond: Math.round(backfillRate),
            ratioToDrainRate: round(backfillRate / drainRate, 2),
            rowsDone: steps?.rows,
            chunks: steps?.chunks,
            relayCpuSecondsPer1000: round((relayCpu / ROWS) * 1000, 3),
            recordsPerRequest: Math.round(
              api.requests.reduce((n, r) => n + r.records.length, 0) / api.requests.length,
            ),
            machineCpuSecondsPer1000: round((machineCpu / ROWS) * 1000, 3),
            machineBusy: round((ticks1.busy - ticks0.busy) / (ticks1.total - ticks0.total), 2),
          },
          liveDuringBackfill: {
            rate: LIVE_RATE,
            changes: fromCommit.length,
            fromCommitP50: round(pct(fromCommit, 50)),
            fromCommitP99: round(pct(fromCommit, 99)),
            fromScheduleP50: round(pct(fromSchedule, 50)),
            fromScheduleP99: round(pct(fromSchedule, 99)),
            // The live INSERT itself, from sending it to its commit returning.
            insertP50: round(pct(insertMs, 50)),
            insertP99: round(pct(insertMs, 99)),
          },
        },
        null,
        2,
      ),
    );
  } finally {
    await bench.close();
  }
}

await main();
