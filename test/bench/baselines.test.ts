// The comparison with the Certyo guide's designs, and the soak, run to completion (tiny sizes, nothing timed).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { benchReport } from '../harness/bench.js';

test("dist/bench/baselines.js shows what the guide's listener and poller lose and certyo does not", async () => {
  const r = await benchReport<{ losses: Record<string, Record<string, string>> }>('baselines', [
    '--burst',
    '500',
  ]);
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
  const r = await benchReport<Record<string, number>>('soak', ['--seconds', '4']);
  assert.ok(r.deliveredWhileSnapshotHeld! > 0, JSON.stringify(r));
});
