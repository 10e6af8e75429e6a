// Relay benchmarks, in one run on one machine (never beside another bench or
// the tests): the maximum tracked write rate (pgbench, before and after the
// drain, averaged), the relay's drain rate
// from a backlog, commit-to-received latency for single changes into an idle
// system, and under open-loop load at 50% and 90% of the maximum rate, each
// after a 2 s warm-up at that rate (reported apart)
// (latency counted from each change's scheduled time: no coordinated omission;
// and from its commit returning, the relay's own part, since the writes
// themselves fall behind their schedule when the machine is busy).
// The relays run with CERTYO_VERIFY=off: verify.js measures verification. With
// it on, the drained backlog falls due for checking (CERTYO_VERIFY_DELAY_MS,
// 60 s) while the latency phases run, and the verifier catching up on a million
// receipts shares the two cores with them (idle p50 16-20 ms instead of 4).
// Run: npm run build && node dist/bench/relay.js [--backlog N] [--seconds S]
// Uses DATABASE_URL (a superuser) or an embedded PostgreSQL (bench/harness.ts); needs pgbench.
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { parseArgs } from 'node:util';
import type { LocalCertyo } from '../relay/src/local-certyo/server.js';
import { paths } from '../relay/src/paths.js';
import { startBench, startRelay, stopRelay } from './harness.js';
import { machineTicks, pct, round, untilDrained, usage } from './measure.js';

const { values } = parseArgs({ options: { backlog: { type: 'string' }, seconds: { type: 'string' } } });
const BACKLOG = Number(values.backlog ?? 1_000_000);
const SECONDS = Number(values.seconds ?? 10);
const WARM_SECONDS = 2;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Waits (in memory, no database polling) until the local Certyo has accepted n new records. */
async function untilReceived(api: LocalCertyo, n: number) {
  let seen = 0;
  let counted = 0; // requests already counted
  while (seen < n) {
    for (; counted < api.requests.length; counted++)
      for (const x of api.requests[counted]!.records) if (x.status === 'accepted' && !x.replayed) seen++;
    if (seen < n) await sleep(20);
  }
}

/** Arrival time (performance.now()) of the first accepted record per recordId. */
function arrivals(api: LocalCertyo) {
  const at = new Map<string, number>();
  for (const r of api.requests)
    for (const x of r.records)
      if (x.status === 'accepted' && !at.has(x.recordId)) at.set(x.recordId, r.arrivedMs);
  return at;
}

async function main() {
  const bench = await startBench(8);
  const { sql, url, api } = bench;
  const results: Record<string, unknown> = {};
  let version = '';
  try {
    await sql`create table events (id bigserial primary key, kind text not null, amount numeric(12,2), at timestamptz default now(), attrs json)`;
    await sql`select certyo.enable_tracking('events')`;

    // 1. Maximum tracked write rate: pgbench, 8 clients, single-row INSERT, relay absent.
    // Measured again after the drain (2b) and the two averaged: this machine's speed drifts
    // by tens of percent within minutes, and pgbench and the drain run minutes apart.
    const script = `${paths.root}.tmp-bench-insert.sql`;
    writeFileSync(
      script,
      `insert into events (kind, amount, attrs) values ('sale', 19.99, '{"sku":"A-1"}');\n`,
    );
    const pgbench = () => {
      const out = execFileSync(
        'pgbench',
        ['-n', '-c', '8', '-j', '2', '-T', String(SECONDS), '-f', script, url],
        { encoding: 'utf8' },
      );
      return Number(/tps = ([\d.]+)/.exec(out)?.[1]);
    };
    const tpsBefore = pgbench();

    // 2. Drain rate from a backlog (the pgbench rows plus BACKLOG more), relay started afterwards.
    await sql`insert into events (kind, amount, attrs) select 'bulk', g % 1000, '{"sku":"B-2"}' from generate_series(1, ${BACKLOG}) g`;
    const [{ n: backlog }] = (await sql`select count(*)::int as n from certyo.outbox`) as unknown as [
      { n: number },
    ];
    api.requests.length = 0;
    const t0 = performance.now();
    let relay = startRelay(bench, { CERTYO_VERIFY: 'off' });
    await untilReceived(api, backlog);
    await untilDrained(sql); // and acknowledged
    const drainSeconds = (performance.now() - t0) / 1000;
    const used = usage(relay);
    await stopRelay(relay);

    // 2b. The write rate again, from the same footing as the first time: the drain left a
    // million dead row versions in events and the outbox, and a million new receipts, which
    // autovacuum would otherwise be working through while pgbench runs.
    await sql`vacuum (analyze) events, certyo.outbox, certyo.receipt`;
    const tpsAfter = pgbench();
    const maxTps = (tpsBefore + tpsAfter) / 2;
    const rate = backlog / drainSeconds;
    results.maxTrackedWriteTps = round(maxTps);
    results.maxTrackedWriteTpsBeforeAfter = [round(tpsBefore), round(tpsAfter)];
    results.drain = {
      changes: backlog,
      seconds: round(drainSeconds),
      changesPerSecond: round(rate),
      ratioToMaxWriteRate: round(rate / maxTps, 2),
      ratioToWriteRateBeforeAfter: [round(rate / tpsBefore, 2), round(rate / tpsAfter, 2)],
      // The relay process alone (start-up included); PostgreSQL and the local server are not counted.
      relayCpuSecondsPer1000: round(used.cpuSeconds / (backlog / 1000), 3),
      relayPeakRssMb: used.peakRssMb,
    };

    // 3. Single changes into an idle system (relay waiting; its fallback poll is 1 s, so this measures the wake-up).
    relay = startRelay(bench, { CERTYO_VERIFY: 'off' });
    await untilDrained(sql); // the second pgbench's changes
    await sleep(1500);
    api.requests.length = 0;
    const idle: number[] = [];
    for (let i = 0; i < 40; i++) {
      const t = performance.now();
      const [{ id }] =
        (await sql`insert into events (kind) values ('idle') returning id::text`) as unknown as [
          { id: string },
        ];
      const entry = await api.waitFor((r) => r.records.some((x) => x.recordId === id));
      idle.push(entry.arrivedMs - t);
      await sleep(50);
    }
    results.idleLatencyMs = {
      p50: round(pct(idle, 50)),
      p90: round(pct(idle, 90)),
      p99: round(pct(idle, 99)),
      n: idle.length,
    };

    // 4. Open-loop load at 50% and 90% of the maximum tracked rate, each after a warm-up
    // of WARM_SECONDS at the same rate: the latency goals are about a relay that has been
    // running, not its first seconds (its code and its backends' plans are cold then; the
    // warm-up's own figures are reported too).
    const load = async (rate: number, seconds: number) => {
      await untilDrained(sql);
      api.requests.length = 0;
      const total = Math.floor(rate * seconds);
      // Per change id: when its insert was due, and when its commit returned here.
      const times = new Map<string, { due: number; committed: number }>();
      const ticks = machineTicks();
      const start = performance.now() + 50;
      const pending: Promise<unknown>[] = [];
      for (let i = 0; i < total; i++) {
        const due = start + (i * 1000) / rate;
        const wait = due - performance.now();
        if (wait > 1) await sleep(wait);
        pending.push(
          sql`insert into events (kind) values ('load') returning id::text`.then((rows) =>
            times.set(rows[0]!.id as string, { due, committed: performance.now() }),
          ),
        );
      }
      await Promise.all(pending);
      await untilDrained(sql);
      const ticksAfter = machineTicks();
      const at = arrivals(api);
      const received = [...times].filter(([id]) => at.has(id));
      return {
        total,
        lat: received.map(([id, t]) => at.get(id)! - t.due),
        fromCommit: received.map(([id, t]) => at.get(id)! - t.committed),
        committedLate: [...times.values()].map((t) => t.committed - t.due),
        busy: (ticksAfter.busy - ticks.busy) / (ticksAfter.total - ticks.total),
      };
    };
    for (const share of [0.5, 0.9]) {
      const rate = maxTps * share;
      const warm = await load(rate, WARM_SECONDS);
      const { total, lat, fromCommit, committedLate, busy } = await load(rate, SECONDS);
      results[`loadLatencyMs_${share * 100}pct`] = {
        targetRate: round(rate),
        changes: total,
        received: lat.length,
        p50: round(pct(lat, 50)),
        p90: round(pct(lat, 90)),
        p99: round(pct(lat, 99)),
        // The relay's part: from each commit returning to the record arriving at Certyo.
        fromCommitP50: round(pct(fromCommit, 50)),
        fromCommitP99: round(pct(fromCommit, 99)),
        // How much of that the writes themselves account for (the database or this process falling behind).
        commitLateP50: round(pct(committedLate, 50)),
        commitLateP99: round(pct(committedLate, 99)),
        // Share of both cores busy from the load's start until it was drained (writers, relay, local Certyo, this process).
        machineBusy: round(busy, 2),
        // The warm-up before it, at the same rate (not counted above).
        warmUp: {
          seconds: WARM_SECONDS,
          fromCommitP50: round(pct(warm.fromCommit, 50)),
          fromCommitP99: round(pct(warm.fromCommit, 99)),
        },
      };
    }
    await stopRelay(relay);
    [{ version }] = (await sql`select current_setting('server_version') as version`) as unknown as [
      { version: string },
    ];
  } finally {
    await bench.close();
  }
  const report = {
    date: new Date().toISOString(),
    machine: `${cpus().length} x ${cpus()[0]?.model}`,
    postgres: version,
    backlogAdded: BACKLOG,
    seconds: SECONDS,
    ...results,
  };
  mkdirSync(`${paths.root}bench/results`, { recursive: true });
  writeFileSync(
    `${paths.root}bench/results/relay-${report.date.slice(0, 10)}.json`,
    `${JSON.stringify(report, null, 2)}\n`,
  );
  console.log(JSON.stringify(report, null, 2));
}

await main();
