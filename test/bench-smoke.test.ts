// The README's benchmark commands run to completion and report every figure
// (tiny sizes; nothing here is timed: figures come from `npm run bench`).
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { paths } from '../relay/src/paths.js';
import { adminUrl } from './harness/db.js';

const exec = promisify(execFile);
const env = () => ({ ...process.env, DATABASE_URL: adminUrl() });

test('bench/write-tax.sh reports every operation and variant per round, and WAL per change', async () => {
  const { stdout } = await exec('bash', [`${paths.root}bench/write-tax.sh`, '1', '2000', '2'], {
    env: env(),
  });
  // Per round: insert x 7 variants, insert100 / update / delete x 5, TPC-B-like x 3.
  assert.equal([...stdout.matchAll(/round=\d op=\w+ variant=\w+ tps=[\d.]+/g)].length, 2 * 25, stdout);
  assert.equal([...stdout.matchAll(/round=2 op=tpcb variant=\w+ tps=[\d.]+/g)].length, 3, stdout);
  assert.equal([...stdout.matchAll(/wal variant=\w+ bytes_per_change=\d+/g)].length, 5, stdout);
});

test('dist/bench/relay.js reports drain and latency figures', async () => {
  const { stdout } = await exec(
    process.execPath,
    [`${paths.root}dist/bench/relay.js`, '--backlog', '2000', '--seconds', '1'],
    { env: env() },
  );
  const r = JSON.parse(stdout.slice(stdout.indexOf('{'))) as Record<string, Record<string, number>>;
  assert.ok(r.drain!.changesPerSecond! > 0);
  // The write rate is measured before and after the drain; the ratio is against their mean.
  const [before, after] = r.maxTrackedWriteTpsBeforeAfter as unknown as [number, number];
  assert.ok(before > 0 && after > 0);
  assert.ok(Math.abs((r.maxTrackedWriteTps as unknown as number) - (before + after) / 2) <= 0.1); // both rounded
  assert.ok(r.drain!.relayCpuSecondsPer1000! > 0 && r.drain!.relayPeakRssMb! > 0);
  assert.equal(r.idleLatencyMs!.n, 40);
  const half = r.loadLatencyMs_50pct!;
  assert.equal(half.received, half.changes);
  // Commits return after their schedule (inserts are sent at most 1 ms early), so a change's
  // latency from its commit is at most 1 ms more than from its schedule.
  assert.ok(half.fromCommitP50! <= half.p50! + 1 && half.commitLateP50! >= -1);
  assert.ok(half.machineBusy! > 0 && half.machineBusy! <= 1);
});

test('dist/bench/local-certyo.js reports records per second', async () => {
  const { stdout } = await exec(process.execPath, [
    `${paths.root}dist/bench/local-certyo.js`,
    '--requests',
    '2',
  ]);
  assert.ok((JSON.parse(stdout) as { recordsPerSecond: { median: number } }).recordsPerSecond.median > 0);
});

test('dist/bench/verify.js reports verification and sweep figures', async () => {
  const { stdout } = await exec(process.execPath, [`${paths.root}dist/bench/verify.js`, '--rows', '3000'], {
    env: env(),
  });
  const r = JSON.parse(stdout.slice(stdout.indexOf('{'))) as Record<string, Record<string, number>>;
  assert.ok(r.verification!.verifyRequests! > 0);
  assert.equal(r.sweep!.tamperedFound, 100, 'the sweep finds the 100 rows edited behind capture');
});

test('dist/bench/backfill.js reports the backfill against the drain, and live latency', async () => {
  const { stdout } = await exec(process.execPath, [`${paths.root}dist/bench/backfill.js`, '--rows', '3000'], {
    env: env(),
  });
  const r = JSON.parse(stdout.slice(stdout.indexOf('{'))) as Record<string, Record<string, number>>;
  assert.equal(r.backfill!.rowsDone, 3000);
  assert.ok(r.backfill!.rowsPerSecond! > 0 && r.drain!.changesPerSecond! > 0);
  assert.ok(r.backfill!.ratioToDrainRate! > 0 && r.backfill!.machineCpuSecondsPer1000! > 0);
  assert.equal(r.liveDuringBackfill!.rate, 100);
});

test("dist/bench/baselines.js shows what the guide's listener and poller lose and certyo does not", async () => {
  const { stdout } = await exec(
    process.execPath,
    [`${paths.root}dist/bench/baselines.js`, '--burst', '500'],
    {
      env: env(),
    },
  );
  const r = JSON.parse(stdout.slice(stdout.indexOf('{'))) as {
    losses: Record<string, Record<string, string>>;
  };
  assert.deepEqual(r.losses.certyo, {
    offline: '100 of 100 delivered',
    deletes: '100 of 100 delivered',
    lateCommit: '3 of 3 delivered',
  });
  assert.equal(r.losses.listener!.offline, '0 of 100 delivered');
  assert.equal(r.losses.polling!.deletes, '0 of 100 delivered');
  assert.equal(r.losses.polling!.lateCommit, '2 of 3 delivered');
});

test('dist/bench/soak.js keeps delivering while a snapshot is held', async () => {
  const { stdout } = await exec(process.execPath, [`${paths.root}dist/bench/soak.js`, '--seconds', '4'], {
    env: env(),
  });
  const r = JSON.parse(stdout.slice(stdout.indexOf('{'))) as Record<string, number>;
  assert.ok(r.deliveredWhileSnapshotHeld! > 0, stdout);
});
