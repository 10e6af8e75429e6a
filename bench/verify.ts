// Verification and tamper-sweep benchmarks (never beside another bench or the
// tests): a backlog drained by one relay with verification on (first check at
// once, local Certyo anchoring 10 ms after sealing), sampling the unverified
// backlog as it goes (it must not grow while delivery runs), counting the
// verification requests; then certyo.verify() over the whole table, rows/s.
// Run: npm run build && node dist/bench/verify.js [--rows N]
// Uses DATABASE_URL (a superuser) or an embedded PostgreSQL.
import type { ChildProcess } from 'node:child_process';
import { parseArgs } from 'node:util';
import { startBench, startRelay } from './harness.js';

const { values } = parseArgs({ options: { rows: { type: 'string' } } });
const ROWS = Number(values.rows ?? 100_000);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const round = (x: number, d = 1) => Math.round(x * 10 ** d) / 10 ** d;

async function main() {
  const bench = await startBench(4);
  const { sql, api } = bench;
  let relay: ChildProcess | undefined;
  const results: Record<string, unknown> = { rows: ROWS };
  try {
    await sql`create table accounts (id bigint primary key, owner text not null, balance numeric(14,2) not null,
                                     opened timestamptz not null default now(), attrs json)`;
    await sql`select certyo.enable_tracking('accounts')`;
    await sql`insert into accounts (id, owner, balance, attrs)
              select g, 'owner ' || g, g * 1.5, json_build_object('tier', g % 4) from generate_series(1, ${ROWS}) g`;

    const t0 = performance.now();
    relay = startRelay(bench, { CERTYO_VERIFY_DELAY_MS: '0', CERTYO_VERIFY_INTERVAL_MS: '200' });
    const samples: Array<{ s: number; pending: number; unverified: number }> = [];
    let deliveredAt = 0;
    for (;;) {
      const [c] = await sql`
        select (select count(*) from certyo.outbox)::int as pending,
               (select count(*) from certyo.receipt where anchor_status <> 'anchored')::int as unverified,
               (select count(*) from certyo.receipt where anchor_status = 'anchored')::int as anchored`;
      const s = (performance.now() - t0) / 1000;
      samples.push({ s: round(s, 2), pending: c!.pending, unverified: c!.unverified });
      if (c!.pending === 0 && deliveredAt === 0) deliveredAt = s;
      if (c!.pending === 0 && c!.anchored === ROWS) break;
      await sleep(250);
    }
    const anchoredAt = (performance.now() - t0) / 1000;
    const verifyRequests = api.requests.filter((r) => r.path !== '/api/v1/records/bulk').length;
    const bulkRequests = api.requests.length - verifyRequests;
    // "Keeps up": the unverified backlog during delivery stays bounded (a few batches), it does not grow with it.
    const during = samples.filter((x) => x.pending > 0);
    results.verification = {
      deliveredSeconds: round(deliveredAt, 2),
      anchoredSeconds: round(anchoredAt, 2),
      verifiedAfterDeliverySeconds: round(anchoredAt - deliveredAt, 2),
      maxUnverifiedDuringDelivery: Math.max(0, ...during.map((x) => x.unverified)),
      unverifiedAtHalfDelivery: during[Math.floor(during.length / 2)]?.unverified ?? 0,
      unverifiedAtEndOfDelivery: during.at(-1)?.unverified ?? 0,
      bulkRequests,
      verifyRequests,
      recordsPerVerifyRequest: round(ROWS / Math.max(1, verifyRequests)),
      samples,
    };
    relay.kill('SIGTERM');
    await new Promise((r) => relay!.once('exit', r));
    relay = undefined;

    // Tamper sweep over the whole table, 3 rounds; 100 rows edited behind capture's back.
    await sql.begin(async (tx) => {
      await tx`set local session_replication_role = replica`;
      await tx`update accounts set balance = balance + 1 where id % ${Math.max(1, Math.floor(ROWS / 100))} = 0`;
    });
    await sql`vacuum analyze accounts`;
    const rounds: number[] = [];
    let tampered = 0;
    for (let i = 0; i < 3; i++) {
      const t = performance.now();
      // What certyo-pg verify runs: the rows needing attention, and a row count for the rest.
      const [r] =
        await sql`select count(*) filter (where verdict = 'tampered')::int as t from certyo.verify('accounts')`;
      const [n] = await sql`select count(*)::int as n from accounts`;
      rounds.push(n!.n / ((performance.now() - t) / 1000));
      tampered = r!.t;
    }
    results.sweep = {
      rowsPerSecond: round([...rounds].sort((a, b) => a - b)[1]!, 0),
      rounds: rounds.map((x) => round(x, 0)),
      tamperedFound: tampered,
    };
  } finally {
    relay?.kill('SIGKILL');
    await bench.close();
  }
  console.log(JSON.stringify(results, null, 2));
}

await main();
