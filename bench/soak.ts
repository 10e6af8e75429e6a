// Soak: a sustained tracked write load at 80% of the maximum rate (pgbench -R)
// with a relay running, while another session holds a snapshot open for the
// middle half of the run. Samples the outbox (rows, size, dead tuples) and
// delivery every few seconds: the outbox must stay small, and delivery must
// go on while the snapshot is held (vacuum cannot remove what it still sees).
// Run: npm run build && node dist/bench/soak.js [--seconds S]   (npm run bench -- --soak)
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { parseArgs } from 'node:util';
import { startBench, startRelay, stopRelay } from './harness.js';

const { values } = parseArgs({ options: { seconds: { type: 'string' } } });
const SECONDS = Number(values.seconds ?? 600);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function main() {
  const bench = await startBench(3);
  const { sql, url } = bench;
  let relay: ChildProcess | undefined;
  let load: ChildProcess | undefined;
  const samples: Array<Record<string, number>> = [];
  const result: Record<string, unknown> = { seconds: SECONDS };
  try {
    await sql`create table events (id bigserial primary key, kind text not null, amount numeric(12,2), at timestamptz default now())`;
    await sql`select certyo.enable_tracking('events')`;
    const script = `${tmpdir()}/certyo-soak-${process.pid}.sql`;
    writeFileSync(script, "insert into events (kind, amount) values ('sale', 19.99);\n");
    const max = Number(
      /tps = ([\d.]+)/.exec(
        execFileSync('pgbench', ['-n', '-c', '8', '-j', '2', '-T', '5', '-f', script, url], {
          encoding: 'utf8',
        }),
      )?.[1],
    );
    await sql`truncate certyo.outbox`;
    const rate = Math.round(max * 0.8);
    result.maxTrackedWriteTps = Math.round(max);
    result.targetRate = rate;
    relay = startRelay(bench, { CERTYO_VERIFY: 'off' });
    // The clock starts once the relay delivers: one change in, and the outbox empty again
    // (a relay process starting on a loaded machine can take seconds).
    await sql`insert into events (kind, amount) values ('probe', 0)`;
    while ((await sql`select exists (select from certyo.outbox) as more`)[0]!.more) await sleep(20);
    load = spawn(
      'pgbench',
      ['-n', '-c', '8', '-j', '2', '-R', String(rate), '-T', String(SECONDS), '-f', script, url],
      {
        stdio: ['ignore', 'pipe', 'ignore'],
      },
    );
    let pgbenchOut = '';
    load.stdout!.on('data', (d) => {
      pgbenchOut += String(d);
    });
    const loadDone = new Promise((r) => load!.once('exit', r));
    const holder = await sql.reserve();
    let holding = false;
    const t0 = performance.now();
    for (;;) {
      const s = (performance.now() - t0) / 1000;
      if (!holding && s >= SECONDS / 4 && s < (3 * SECONDS) / 4) {
        await holder`begin isolation level repeatable read`;
        await holder`select count(*) from events`; // the snapshot is taken now
        holding = true;
      } else if (holding && s >= (3 * SECONDS) / 4) {
        await holder`commit`;
        holding = false;
      }
      const [c] = await sql`
        select (select count(*) from certyo.outbox)::int as pending,
               (select count(*) from certyo.receipt)::int as delivered,
               pg_relation_size('certyo.outbox')::bigint as outbox_bytes,
               coalesce((select n_dead_tup from pg_stat_user_tables where relid = 'certyo.outbox'::regclass), 0)::int as dead`;
      samples.push({
        s: Math.round(s),
        snapshotHeld: holding ? 1 : 0,
        pending: c!.pending,
        delivered: c!.delivered,
        outboxKb: Math.round(Number(c!.outbox_bytes) / 1024),
        deadTuples: c!.dead,
      });
      if (s >= SECONDS) break;
      await sleep(Math.min(5000, (SECONDS * 1000) / 40));
    }
    await loadDone;
    holder.release();
    const held = samples.filter((x) => x.snapshotHeld === 1);
    result.pgbenchTps = Number(/tps = ([\d.]+)/.exec(pgbenchOut)?.[1] ?? Number.NaN);
    result.start = samples[0];
    result.end = samples.at(-1);
    result.maxPending = Math.max(...samples.map((x) => x.pending ?? 0));
    result.maxOutboxKb = Math.max(...samples.map((x) => x.outboxKb ?? 0));
    result.deliveredWhileSnapshotHeld = (held.at(-1)?.delivered ?? 0) - (held[0]?.delivered ?? 0);
    result.samples = samples;
  } finally {
    load?.kill('SIGTERM');
    if (relay) await stopRelay(relay);
    await bench.close();
  }
  console.log(JSON.stringify(result, null, 2));
}

await main();
