// `npm run bench`: every benchmark, one after the other (never in parallel:
// the machine has two cores), against DATABASE_URL or an embedded PostgreSQL.
// Writes the raw results to bench/results/<date>.json and the table of goals
// to bench/RESULTS.md. Do not run it beside the test suite.
import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { startEmbedded } from '../relay/src/embedded.js';
import { paths } from '../relay/src/paths.js';
import { machineTicks } from './measure.js';
import { cpuSplit, writeTaxFigures } from './write-tax-figures.js';

const r2 = (x: number) => Math.round(x * 100) / 100;

function lastJson(out: string): Record<string, unknown> {
  return JSON.parse(out.slice(out.indexOf('{'))) as Record<string, unknown>;
}

async function main() {
  const embedded = process.env.DATABASE_URL ? undefined : await startEmbedded();
  const env = { ...process.env, DATABASE_URL: process.env.DATABASE_URL ?? embedded!.adminUrl };
  // Children run asynchronously: while one runs, this process must keep reading the
  // embedded server's log pipes (a blocked pipe stops the server: a checkpoint
  // waited 20 minutes on its log write when this used execFileSync).
  const exec = (file: string, args: string[]) =>
    new Promise<string>((resolve, reject) => {
      const child = spawn(file, args, { env, stdio: ['ignore', 'pipe', 'inherit'] });
      let out = '';
      child.stdout.setEncoding('utf8').on('data', (d: string) => {
        out += d;
      });
      child.once('error', reject);
      child.once('exit', (code, signal) =>
        code === 0 ? resolve(out) : reject(new Error(`${file} ${args.join(' ')} exited ${code ?? signal}`)),
      );
    });
  const node = (script: string, ...args: string[]) =>
    exec(process.execPath, [`${paths.root}dist/bench/${script}`, ...args]);
  const ticksAtStart = machineTicks();
  try {
    // First, while PostgreSQL is idle: it does not use the database, and after the
    // relay's million-change drain autovacuum works on for a while (26k records/s
    // measured there, 42-50k alone).
    console.log('local Certyo ingest ...');
    const certyo = lastJson(await node('local-certyo.js'));
    console.log('write tax (pgbench, 3 interleaved rounds) ...');
    const tax = await exec('bash', [`${paths.root}bench/write-tax.sh`, '4', '200000']);
    const writeTax = writeTaxFigures(tax);
    const wal = writeTax.wal;
    /** met / not met against a minimum ratio. */
    const met = (x: number, min: number) => (x >= min ? 'met' : 'not met');
    console.log('relay (drain, latency) ...');
    const relay = lastJson(await node('relay.js'));
    console.log('verification and tamper sweep ...');
    const verify = lastJson(await node('verify.js'));
    console.log('backfill (1,000,000 rows, live changes meanwhile) ...');
    const backfill = lastJson(await node('backfill.js'));
    console.log("baselines: the guide's LISTEN/NOTIFY listener and timestamp polling ...");
    const baselines = lastJson(await node('baselines.js'));
    // The long soak only when asked: npm run bench -- --soak [seconds]
    const soakAt = process.argv.indexOf('--soak');
    const soakSeconds = soakAt < 0 ? undefined : (process.argv[soakAt + 1] ?? '600');
    if (soakSeconds) console.log(`soak (${soakSeconds} s at 80% load, a snapshot held for half of it) ...`);
    const soak = soakSeconds ? lastJson(await node('soak.js', '--seconds', soakSeconds)) : undefined;
    const ticks = machineTicks();
    const report = {
      date: new Date().toISOString(),
      machine: `${cpus().length} x ${cpus()[0]?.model}`,
      // On a shared host, the share of the run's CPU time the hypervisor gave to
      // others: runs with very different figures are not comparable.
      stealPercent: r2(
        (100 * (ticks.steal - ticksAtStart.steal)) / Math.max(1, ticks.total - ticksAtStart.total),
      ),
      postgres: relay.postgres,
      writeTax,
      relay,
      localCertyo: certyo,
      verify,
      backfill,
      baselines,
      ...(soak && { soak }),
    };
    mkdirSync(`${paths.root}bench/results`, { recursive: true });
    writeFileSync(
      `${paths.root}bench/results/${report.date.slice(0, 10)}.json`,
      `${JSON.stringify(report, null, 2)}\n`,
    );
    const drain = relay.drain as {
      changes: number;
      changesPerSecond: number;
      ratioToMaxWriteRate: number;
      relayCpuSecondsPer1000: number;
      relayPeakRssMb: number;
    };
    const idle = relay.idleLatencyMs as { p50: number; p90: number; p99: number };
    const half = relay.loadLatencyMs_50pct as {
      p50: number;
      p99: number;
      fromCommitP50: number;
      fromCommitP99: number;
      commitLateP50: number;
      commitLateP99: number;
      machineBusy: number;
      warmUp: { seconds: number; fromCommitP50: number; fromCommitP99: number };
    };
    const ingest = (certyo.recordsPerSecond as { median: number }).median;
    const v = verify.verification as Record<string, number>;
    const sweep = verify.sweep as { rowsPerSecond: number; rounds: number[] };
    type Per<T> = Record<'certyo' | 'listener' | 'polling', T>;
    const burst = baselines.burst as Per<{ rowsPerSecond: number }>;
    const bf = backfill as {
      rows: number;
      drain: { changesPerSecond: number; machineCpuSecondsPer1000: number; relayCpuSecondsPer1000: number };
      backfill: {
        rowsPerSecond: number;
        ratioToDrainRate: number;
        machineCpuSecondsPer1000: number;
        relayCpuSecondsPer1000: number;
      };
      liveDuringBackfill: Record<string, number>;
    };
    const idleB = baselines.idleLatencyMs as Per<{ p50: number }>;
    const losses = baselines.losses as Per<Record<string, string>>;
    const rows = [
      [
        'tracked / untracked single-row INSERT TPS, 8 clients, relay absent: 200,000-row table / table that starts empty',
        '>= 0.80',
        `${writeTax.trackedOverUntracked} / ${writeTax.emptyTableInsert}, ${met(Math.min(writeTax.trackedOverUntracked, writeTax.emptyTableInsert), 0.8)} (200,000 rows: ${writeTax.spreads.insert}; naive outbox ${writeTax.naiveOverUntracked} / ${writeTax.naiveEmptyTableInsert}; 200,000 rows: guide's NOTIFY trigger ${writeTax.notifyOverUntracked}, timestamp polling ${writeTax.pollingOverUntracked})`,
      ],
      [
        'same, relay running and keeping up',
        '>= 0.70',
        `${writeTax.relayRunningOverUntracked}, ${met(writeTax.relayRunningOverUntracked, 0.7)} (${writeTax.spreads.relayRunning}; with CERTYO_LINGER_MS=20: ${writeTax.relayLinger20OverUntracked}). ${cpuSplit(writeTax.cpu)}`,
      ],
      [
        'with wake-up / without any',
        '>= 0.97',
        `${writeTax.wakeOverNoWake}, ${met(writeTax.wakeOverNoWake, 0.97)} (${writeTax.spreads.wake})`,
      ],
      [
        '100-row INSERT statements, tracked / untracked rows/s',
        '>= 0.60',
        `${writeTax.multiRow}, ${met(writeTax.multiRow, 0.6)} (${writeTax.spreads.multiRow}; naive outbox ${writeTax.naiveMultiRow}, NOTIFY trigger ${writeTax.notifyMultiRow}, polling ${writeTax.pollingMultiRow})`,
      ],
      [
        'single-row UPDATE / DELETE, tracked / untracked TPS',
        '>= 0.75',
        `${writeTax.update} / ${writeTax.delete}, ${met(Math.min(writeTax.update, writeTax.delete), 0.75)} (${writeTax.spreads.update} / ${writeTax.spreads.delete}; naive outbox ${writeTax.naiveUpdate} / ${writeTax.naiveDelete})`,
      ],
      [
        "same two, the writers' sessions in TimeZone Europe/Berlin (a server outside UTC), INSERT / UPDATE",
        'reported',
        `${writeTax.berlinInsert} / ${writeTax.berlinUpdate}`,
      ],
      [
        "pgbench's built-in TPC-B-like, accounts, tellers and branches tracked / untracked TPS (scale 1, 8 clients)",
        '>= 0.70',
        `${writeTax.tpcb}, ${met(writeTax.tpcb, 0.7)} (${writeTax.spreads.tpcb}; naive outbox ${writeTax.naiveTpcb})`,
      ],
      [
        'WAL bytes per single-row INSERT',
        '<= 2x untracked',
        `untracked ${wal.untracked}, tracked ${wal.tracked} (${r2(wal.tracked! / wal.untracked!)}x), ${
          // Tracked writes what untracked does and more: less means other WAL in a window.
          wal.tracked! < wal.untracked!
            ? 'not measured (WAL from elsewhere in the window)'
            : wal.tracked! <= 2 * wal.untracked!
              ? 'met'
              : 'not met'
        }; naive outbox ${wal.naive}, NOTIFY trigger ${wal.notify}, polling ${wal.polling}`,
      ],
      [
        'drain rate from a backlog / max tracked write rate (verification off)',
        '>= 4',
        `${drain.ratioToMaxWriteRate} (${drain.changes} changes at ${drain.changesPerSecond}/s vs ${relay.maxTrackedWriteTps} TPS, the mean of ${(relay.maxTrackedWriteTpsBeforeAfter as number[]).join(' before and ')} after the drain)`,
      ],
      [
        'one change into an idle system, commit to received',
        'p50 <= 10 ms',
        `p50 ${idle.p50} ms, p90 ${idle.p90} ms, p99 ${idle.p99} ms`,
      ],
      [
        'commit to received at 50% of max rate',
        'p50 <= 5 ms, p99 <= 20 ms',
        `from commit p50 ${half.fromCommitP50} ms, p99 ${half.fromCommitP99} ms; from schedule p50 ${half.p50} ms, p99 ${half.p99} ms ` +
          `(the writes committing late p50 ${half.commitLateP50} ms, p99 ${half.commitLateP99} ms; both cores ${Math.round(half.machineBusy * 100)}% busy; ` +
          `after ${half.warmUp.seconds} s at that rate, not counted: from commit p50 ${half.warmUp.fromCommitP50} ms, p99 ${half.warmUp.fromCommitP99} ms)`,
      ],
      ['local Certyo bulk ingest', '> 50,000 records/s', `${ingest} records/s`],
      [
        'relay CPU per 1,000 changes, peak memory (during the drain)',
        'reported',
        `${drain.relayCpuSecondsPer1000} CPU s, ${drain.relayPeakRssMb} MB`,
      ],
      [
        `verification keeps up with delivery (${verify.rows} changes)`,
        'no growing unverified backlog; requests << records',
        `unverified at most ${v.maxUnverifiedDuringDelivery} during delivery (${v.unverifiedAtHalfDelivery} at half, ${v.unverifiedAtEndOfDelivery} at the end); ${v.verifyRequests} requests (${v.recordsPerVerifyRequest} records each)`,
      ],
      [
        'tamper sweep',
        '>= 50,000 rows/s',
        `${sweep.rowsPerSecond} rows/s (rounds ${sweep.rounds.join(', ')})`,
      ],
      [
        `backfill of ${bf.rows} rows, end to end / the relay's drain rate on the same run`,
        '>= 0.80',
        `${bf.backfill.ratioToDrainRate} (${bf.backfill.rowsPerSecond} rows/s vs ${bf.drain.changesPerSecond} changes/s)`,
      ],
      [
        `live changes during the backfill (${bf.liveDuringBackfill.rate}/s), commit to received`,
        'low',
        `p50 ${bf.liveDuringBackfill.fromCommitP50} ms, p99 ${bf.liveDuringBackfill.fromCommitP99} ms (from schedule p50 ${bf.liveDuringBackfill.fromScheduleP50} ms, p99 ${bf.liveDuringBackfill.fromScheduleP99} ms)`,
      ],
      [
        'CPU per 1,000 backfilled rows (drain of 1,000 changes)',
        'reported',
        `machine ${bf.backfill.machineCpuSecondsPer1000} s (${bf.drain.machineCpuSecondsPer1000} s), relay ${bf.backfill.relayCpuSecondsPer1000} s (${bf.drain.relayCpuSecondsPer1000} s)`,
      ],
      [
        `versus the guide's LISTEN/NOTIFY listener (one POST per row), burst of ${baselines.burstSize} changes`,
        '>= 10x delivered rows/s',
        `${baselines.certyoOverListener}x (${burst.certyo.rowsPerSecond} vs ${burst.listener.rowsPerSecond} rows/s; timestamp polling ${burst.polling.rowsPerSecond})`,
      ],
      [
        'one change into an idle system: certyo / listener / polling (1 s interval)',
        'reported',
        `p50 ${idleB.certyo.p50} / ${idleB.listener.p50} / ${idleB.polling.p50} ms`,
      ],
      [
        'lost: offline consumer / deletes / late-committing transaction',
        'nothing',
        `certyo: ${Object.values(losses.certyo).join('; ')}. listener: ${Object.values(losses.listener).join('; ')}. polling: ${Object.values(losses.polling).join('; ')}`,
      ],
    ];
    if (soak) {
      const end = soak.end as Record<string, number>;
      rows.push([
        `soak: ${soak.seconds} s at 80% of max rate (${soak.targetRate} TPS), snapshot held for the middle half`,
        'outbox small; delivery goes on',
        `pending at most ${soak.maxPending}, outbox at most ${soak.maxOutboxKb} kB (end: ${end.outboxKb} kB, ${end.deadTuples} dead tuples); ${soak.deliveredWhileSnapshotHeld} delivered while the snapshot was held`,
      ]);
    }
    const md = [
      '# Benchmark results',
      '',
      `${report.date}, ${report.machine}, PostgreSQL ${report.postgres}. Produced by \`npm run bench\`; raw numbers in \`bench/results/${report.date.slice(0, 10)}.json\`. ` +
        `CPU steal during the run (time the hypervisor gave to other machines): ${report.stealPercent}% of the run's CPU time; runs with very different steal are not comparable.`,
      '',
      '| goal | target | measured |',
      '|---|---|---|',
      ...rows.map((r) => `| ${r.join(' | ')} |`),
      '',
      'Write-tax figures are medians of per-round ratios over 3 interleaved rounds, with the lowest and highest round where given (raw TPS in the JSON).',
      '',
    ].join('\n');
    writeFileSync(`${paths.root}bench/RESULTS.md`, md);
    console.log(md);
  } finally {
    await embedded?.stop();
  }
}

await main();
