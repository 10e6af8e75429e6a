// bench/write-tax.sh runs to completion and reports every figure (tiny sizes, one round, nothing timed).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { cpuSplit, writeTaxFigures } from '../../bench/write-tax-figures.js';
import { runBench } from '../harness/bench.js';

test('bench/write-tax.sh reports every operation and variant per round, and WAL per change', async () => {
  // 1-second runs, 2,000 rows, one round, WAL over 8 x 100 inserts.
  const stdout = await runBench('write-tax.sh', ['1', '2000', '1', '100']);
  // Per round: insert x 9 variants (2 with the relay, 1 outside UTC), insert100 / delete x 5,
  // update x 6 (1 outside UTC), insert into an empty table x 3, TPC-B-like x 3.
  assert.equal([...stdout.matchAll(/round=\d op=\w+ variant=\w+ tps=[\d.]+/g)].length, 31, stdout);
  for (const v of ['tracked_relay', 'tracked_relay_linger20', 'tracked_berlin'])
    assert.match(stdout, new RegExp(`round=1 op=insert variant=${v} tps=[\\d.]+`), stdout);
  assert.equal([...stdout.matchAll(/round=1 op=tpcb variant=\w+ tps=[\d.]+/g)].length, 3, stdout);
  assert.equal(
    [...stdout.matchAll(/round=1 op=insert_empty variant=(untracked|tracked|naive) tps=[\d.]+/g)].length,
    3,
    stdout,
  );
  assert.equal([...stdout.matchAll(/wal variant=\w+ bytes_per_change=\d+/g)].length, 5, stdout);
  // Where the cores went in the single-row INSERT runs, relay absent and running: the writers'
  // backends (each of them, not one per group) and the local Certyo sampled and the writers busy
  // in each; the relay's backends and process in the relay runs only.
  const cpu = [
    ...stdout.matchAll(
      /cpu round=1 variant=(\w+) writers=([\d.]+) relay_db=([\d.]+) relay=([\d.]+) certyo=[\d.]+ client=[\d.]+ processes=(\d+),(\d+),(\d+),(\d+),(\d+)/g,
    ),
  ];
  assert.deepEqual(
    cpu.map((m) => m[1]).sort(),
    ['tracked', 'tracked_relay', 'tracked_relay_linger20'],
    stdout,
  );
  for (const m of cpu) {
    assert.ok(Number(m[2]) > 0, `no writers' CPU found: ${m[0]}`);
    // (Fewer than 8 writers or no pgbench when a busy machine took the later sample late, as the run ended.)
    const [writers, relayDb, relay, certyo] = m.slice(5).map(Number);
    assert.ok(writers! >= 2 && writers! <= 8 && certyo === 1, m[0]);
    if (m[1] === 'tracked') assert.deepEqual([relayDb, relay, Number(m[3])], [0, 0, 0], m[0]);
    else assert.ok(relayDb! > 0 && relay === 1, m[0]);
  }
  const relayRuns = cpu.filter((m) => m[1] !== 'tracked');
  assert.ok(relayRuns.some((m) => Number(m[3]) > 0) && relayRuns.some((m) => Number(m[4]) > 0), stdout);
  // What npm run bench makes of it: every ratio a number, each spread the lowest and highest
  // round (one round here: both the same), the cores of each sampled variant.
  const figures = writeTaxFigures(stdout);
  for (const [name, x] of Object.entries(figures))
    if (typeof x === 'number') assert.ok(Number.isFinite(x) && x > 0, `${name}: ${x}`);
  for (const [name, spread] of Object.entries(figures.spreads)) {
    const m = /^rounds ([\d.]+) - ([\d.]+)$/.exec(spread);
    assert.ok(m && m[1] === m[2], `${name}: ${spread}`);
  }
  assert.equal(figures.cpu.tracked!.cores.relay_db, 0, JSON.stringify(figures.cpu));
  assert.ok(figures.cpu.tracked!.writersMicrosecondsPerInsert > 0, JSON.stringify(figures.cpu));
  assert.match(
    cpuSplit(figures.cpu),
    /^Cores busy, relay absent \/ running \/ lingering 20 ms: writers' backends [\d.]+ \/ [\d.]+ \/ [\d.]+,/,
  );
});
