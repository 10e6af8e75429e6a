// The approaches users would pick instead, side by side with certyo-postgres
// in one run (never beside another bench or the tests): Certyo's guide's
// LISTEN/NOTIFY listener and its timestamp-polling worker (bench/baselines/),
// against the relay. For each: delivered rows/s for a burst of changes,
// commit-to-received latency of single changes into an idle system, and what
// it loses (changes while it is offline, deletes, late-committing transactions).
// Their write tax is measured by bench/write-tax.sh (variants notify, polling).
// Run: npm run build && node dist/bench/baselines.js [--burst N]
import type { ChildProcess } from 'node:child_process';
import { parseArgs } from 'node:util';
import { type Baseline, LISTENER_SQL, startListener } from './baselines/listener.js';
import { POLLER_SQL, startPoller } from './baselines/poller.js';
import { startBench, startRelay, stopRelay } from './harness.js';

const { values } = parseArgs({ options: { burst: { type: 'string' } } });
const BURST = Number(values.burst ?? 20_000);
const POLL_MS = 1000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const step = (s: string) => process.stderr.write(`baselines: ${s}\n`);
const round = (x: number, d = 1) => Math.round(x * 10 ** d) / 10 ** d;
const pct = (xs: number[], p: number) =>
  [...xs].sort((a, b) => a - b)[Math.floor((p / 100) * (xs.length - 1))]!;

type Approach = 'certyo' | 'listener' | 'polling';
const TABLE: Record<Approach, string> = {
  certyo: 'orders',
  listener: 'notify_orders',
  polling: 'polled_orders',
};

async function main() {
  const bench = await startBench(6);
  const { sql, api, name } = bench;
  const opts = { baseUrl: api.url, apiKey: bench.key, tenantId: 'bench', database: name };
  const received = (a: Approach) =>
    api.ledger.list({
      tenantId: 'bench',
      database: name,
      collection: `public.${TABLE[a]}`,
      offset: 0,
      limit: 0,
    }).total;
  const until = async (done: () => boolean) => {
    while (!done()) await sleep(5);
  };
  let relay: ChildProcess | undefined;
  const relayUp = async () => {
    relay = startRelay(bench, { CERTYO_VERIFY: 'off' });
    // Started when it has claimed once: a marker change arrives.
    const before = received('certyo');
    await sql`insert into orders (item, qty) values ('marker', 0)`;
    await until(() => received('certyo') > before);
  };
  const relayDown = async () => {
    const r = relay!;
    relay = undefined;
    await stopRelay(r);
  };
  const results: Record<string, unknown> = { burstSize: BURST, pollIntervalMs: POLL_MS };
  let listener: Baseline | undefined;
  let poller: Baseline | undefined;
  try {
    await sql.unsafe(`
      create table orders (id bigserial primary key, item text not null, qty int not null, updated_at timestamptz not null default now());
      select certyo.enable_tracking('orders');
      ${LISTENER_SQL}
      ${POLLER_SQL}
      alter sequence notify_orders_id_seq restart with 1000000000;
      alter sequence polled_orders_id_seq restart with 2000000000;`);
    await relayUp();
    listener = await startListener(sql, opts);
    poller = await startPoller(sql, { ...opts, intervalMs: POLL_MS });

    step('burst');
    // 1. Delivered rows/s: a burst of BURST changes in one statement, until all are received.
    const throughput: Record<string, unknown> = {};
    for (const a of ['certyo', 'listener', 'polling'] as Approach[]) {
      step(`burst: ${a}`);
      const before = received(a);
      const t0 = performance.now();
      await sql.unsafe(
        `insert into ${TABLE[a]} (item, qty) select 'burst', g from generate_series(1, ${BURST}) g`,
      );
      await until(() => received(a) >= before + BURST);
      const s = (performance.now() - t0) / 1000;
      throughput[a] = { seconds: round(s, 2), rowsPerSecond: round(BURST / s, 0) };
    }
    results.burst = throughput;

    step('idle latency');
    // 2. Commit-to-received latency of single changes into an idle system.
    const latency: Record<string, unknown> = {};
    for (const a of ['certyo', 'listener', 'polling'] as Approach[]) {
      const lat: number[] = [];
      for (let i = 0; i < 20; i++) {
        const t = performance.now();
        const [row] = await sql.unsafe(
          `insert into ${TABLE[a]} (item, qty) values ('idle', ${i}) returning id::text`,
        );
        const id = row!.id as string;
        const entry = await api.waitFor((r) => r.records.some((x) => x.recordId === id));
        lat.push(entry.arrivedMs - t);
        await sleep(Math.random() * 100);
      }
      latency[a] = { p50: round(pct(lat, 50)), p90: round(pct(lat, 90)), max: round(Math.max(...lat)) };
    }
    results.idleLatencyMs = latency;

    // 3. What each loses.
    const losses: Record<string, Record<string, string>> = { certyo: {}, listener: {}, polling: {} };
    step('offline');
    // 3a. Changes committed while the consumer is offline.
    await relayDown();
    await listener.stop();
    const offline = 100;
    const beforeOffline = { certyo: received('certyo'), listener: received('listener') };
    await sql`insert into orders (item, qty) select 'offline', g from generate_series(1, ${offline}) g`;
    await sql`insert into notify_orders (item, qty) select 'offline', g from generate_series(1, ${offline}) g`;
    await relayUp(); // its marker arrives after the backlog (per-record order; claims are oldest first)
    listener = await startListener(sql, opts);
    await sql`insert into notify_orders (item, qty) values ('marker', 0)`;
    await until(() => received('listener') > beforeOffline.listener);
    await until(() => received('certyo') >= beforeOffline.certyo + offline + 1);
    losses.certyo!.offline = `${received('certyo') - beforeOffline.certyo - 1} of ${offline} delivered`;
    losses.listener!.offline = `${received('listener') - beforeOffline.listener - 1} of ${offline} delivered`;
    losses.polling!.offline = 'none lost: rows stay in the table (deletes aside)';
    step('deletes');
    // 3b. Deletes.
    const deletes = 100;
    const beforeDelete = {
      certyo: received('certyo'),
      listener: received('listener'),
      polling: received('polling'),
    };
    for (const a of ['certyo', 'listener', 'polling'] as Approach[]) {
      await sql.unsafe(
        `delete from ${TABLE[a]} where id in (select id from ${TABLE[a]} order by id limit ${deletes})`,
      );
    }
    await sql`insert into polled_orders (item, qty) values ('marker', 0)`;
    await until(() => received('certyo') >= beforeDelete.certyo + deletes);
    await until(() => received('listener') >= beforeDelete.listener + deletes);
    await until(() => received('polling') > beforeDelete.polling);
    losses.certyo!.deletes = `${received('certyo') - beforeDelete.certyo} of ${deletes} delivered`;
    losses.listener!.deletes = `${received('listener') - beforeDelete.listener} of ${deletes} delivered`;
    losses.polling!.deletes = `${received('polling') - beforeDelete.polling - 1} of ${deletes} delivered`;
    step('late commit');
    // 3c. A transaction that commits after a later one (its timestamp is older).
    for (const a of ['certyo', 'polling'] as Approach[]) {
      const before = received(a);
      const late = await sql.reserve();
      await late`begin`;
      await late.unsafe(`insert into ${TABLE[a]} (item, qty) values ('late', 1)`);
      await sql.unsafe(`insert into ${TABLE[a]} (item, qty) values ('early', 2)`);
      await until(() => received(a) > before); // the early one was delivered
      await late`commit`;
      late.release();
      await sql.unsafe(`insert into ${TABLE[a]} (item, qty) values ('after', 3)`);
      await until(() => received(a) >= before + 2);
      await sleep(3 * POLL_MS); // give the late one every chance
      losses[a]!.lateCommit = `${received(a) - before} of 3 delivered`;
    }
    losses.listener!.lateCommit = 'none lost: NOTIFY is sent at commit';
    results.losses = losses;
  } finally {
    if (relay) await relayDown();
    await listener?.stop();
    await poller?.stop();
    await bench.close();
  }
  const burst = results.burst as Record<Approach, { rowsPerSecond: number }>;
  results.certyoOverListener = round(burst.certyo.rowsPerSecond / burst.listener.rowsPerSecond, 1);
  results.certyoOverPolling = round(burst.certyo.rowsPerSecond / burst.polling.rowsPerSecond, 1);
  console.log(JSON.stringify(results, null, 2));
}

await main();
