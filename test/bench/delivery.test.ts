// The delivery benchmarks run to completion and report every figure (tiny sizes, nothing timed).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { benchReport } from '../harness/bench.js';

type Report = Record<string, Record<string, number>>;

test('dist/bench/relay.js reports drain and latency figures', async () => {
  const r = await benchReport<Report>('relay', ['--backlog', '2000', '--seconds', '1']);
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
  const r = await benchReport<{ recordsPerSecond: { median: number } }>('local-certyo', ['--requests', '2']);
  assert.ok(r.recordsPerSecond.median > 0);
});

test('dist/bench/verify.js reports verification and sweep figures', async () => {
  const r = await benchReport<Report>('verify', ['--rows', '3000']);
  assert.ok(r.verification!.verifyRequests! > 0);
  assert.equal(r.sweep!.tamperedFound, 100, 'the sweep finds the 100 rows edited behind capture');
});

test('dist/bench/backfill.js reports the backfill against the drain, and live latency', async () => {
  const r = await benchReport<Report>('backfill', ['--rows', '3000']);
  assert.equal(r.backfill!.rowsDone, 3000);
  assert.ok(r.backfill!.rowsPerSecond! > 0 && r.drain!.changesPerSecond! > 0);
  assert.ok(r.backfill!.ratioToDrainRate! > 0 && r.backfill!.machineCpuSecondsPer1000! > 0);
  assert.equal(r.liveDuringBackfill!.rate, 100);
});
