// pgbench's built-in TPC-B-like script on tracked pgbench tables, 8 clients,
// two relay processes delivering. The tables and the script are transcribed
// from pgbench (`pgbench -i -I dtGvp -s 1`: server-side generation; then
// `pgbench -b tpcb-like`), so the test needs no pgbench binary; as there, the
// rows exist before tracking is enabled, which is how PostgreSQL 15 crashed.
// Tracking starts with a backfill of those rows, which runs beside the
// transactions. Ends with the crash check, the drain, nothing lost, the final state of
// accounts, tellers and branches, and pgbench's own invariant: the balances
// of accounts, tellers, branches and the history all sum to the same total.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { type LocalCertyo, startLocalCertyo } from '../../relay/src/local-certyo/server.js';
import { freshDatabase, type TestDb } from '../harness/db.js';
import { assertNothingLost } from '../harness/delivery.js';
import { assertFinalState } from '../harness/final-state.js';
import { drained, runWorkload, STRESS_KEY, STRESS_SCALE, stressRelays } from '../harness/workload-env.js';

const SCALE = 1; // one branch, ten tellers: every transaction contends on the branch row
let db: TestDb;
let api: LocalCertyo;
const relays = stressRelays(
  () => db.url,
  () => api,
);

before(async () => {
  db = await freshDatabase();
  api = await startLocalCertyo({ keys: { [STRESS_KEY]: 'acme' }, flushMs: 50, anchorMs: 10 });
  // pgbench -i -I dtGvp (drop, create tables, server-side generate, vacuum, primary keys).
  await db.sql.unsafe(`
    create table pgbench_history (tid int, bid int, aid int, delta int, mtime timestamp, filler char(22));
    create table pgbench_tellers (tid int not null, bid int, tbalance int, filler char(84)) with (fillfactor = 100);
    create table pgbench_accounts (aid int not null, bid int, abalance int, filler char(84)) with (fillfactor = 100);
    create table pgbench_branches (bid int not null, bbalance int, filler char(88)) with (fillfactor = 100);
    insert into pgbench_branches (bid, bbalance) select bid, 0 from generate_series(1, ${SCALE}) as bid;
    insert into pgbench_tellers (tid, bid, tbalance) select tid, (tid - 1) / 10 + 1, 0
        from generate_series(1, ${SCALE * 10}) as tid;
    insert into pgbench_accounts (aid, bid, abalance, filler) select aid, (aid - 1) / 100000 + 1, 0, ''
        from generate_series(1, ${SCALE * 100000}) as aid;`);
  await db.sql`vacuum analyze pgbench_branches, pgbench_tellers, pgbench_accounts, pgbench_history`;
  await db.sql.unsafe(`
    alter table pgbench_branches add primary key (bid);
    alter table pgbench_tellers add primary key (tid);
    alter table pgbench_accounts add primary key (aid);
    select certyo.enable_tracking(t, backfill => true)
    from unnest(array['pgbench_accounts', 'pgbench_tellers', 'pgbench_branches']::regclass[]) t;`);
});
after(async () => {
  relays.killAll();
  await api.close();
  await db.close();
});

test('pgbench TPC-B-like on tracked pgbench tables, 8 clients: no crash, final state is the last delivered version', async (t) => {
  let unchanged = 0; // a transaction whose delta is 0 changes no row (set x = x + 0 is not a change)
  const outcome = await runWorkload(
    db.url,
    relays,
    { clients: 8, iterations: 250 * STRESS_SCALE },
    async (sql, rand) => {
      // pgbench's tpcb-like script: \set aid random(1, 100000 * :scale) ... END;
      const aid = rand.int(1, 100000 * SCALE);
      const bid = rand.int(1, SCALE);
      const tid = rand.int(1, 10 * SCALE);
      const delta = rand.int(-5000, 5000);
      if (delta === 0) unchanged++;
      await sql.begin(async (tx) => {
        await tx`UPDATE pgbench_accounts SET abalance = abalance + ${delta} WHERE aid = ${aid}`;
        await tx`SELECT abalance FROM pgbench_accounts WHERE aid = ${aid}`;
        await tx`UPDATE pgbench_tellers SET tbalance = tbalance + ${delta} WHERE tid = ${tid}`;
        await tx`UPDATE pgbench_branches SET bbalance = bbalance + ${delta} WHERE bid = ${bid}`;
        await tx`INSERT INTO pgbench_history (tid, bid, aid, delta, mtime)
                   VALUES (${tid}, ${bid}, ${aid}, ${delta}, CURRENT_TIMESTAMP)`;
      });
    },
  );
  t.diagnostic(
    `seed ${outcome.seed}: ${outcome.committed} transactions committed; contention: ${JSON.stringify(outcome.contention)}`,
  );
  assert.equal(outcome.committed, 8 * 250 * STRESS_SCALE, 'TPC-B-like transactions never conflict');
  const [sums] = await db.sql`select (select sum(abalance) from pgbench_accounts)::int as a,
                                     (select sum(tbalance) from pgbench_tellers)::int as t,
                                     (select sum(bbalance) from pgbench_branches)::int as b,
                                     (select sum(delta) from pgbench_history)::int as h`;
  assert.ok(
    sums!.a === sums!.t && sums!.t === sums!.b && sums!.b === sums!.h,
    `balances ${JSON.stringify(sums)}`,
  );
  await drained(db.sql, relays);
  // The rows were there before tracking: backfilled while the transactions ran, each once
  // (a row the workload changed before its chunk came is sent by that change instead).
  const [b] = await db.sql`select sum(rows_done)::int as rows, bool_and(state = 'finished') as finished
                           from certyo.backfills`;
  assert.ok(b!.finished, 'backfills finished');
  const live = 3 * (outcome.committed - unchanged);
  await assertNothingLost(db.sql, api, live + b!.rows);
  const [n] =
    await db.sql`select count(*) filter (where op <> 'B')::int as live, count(*) filter (where op = 'B')::int as backfilled
                           from certyo.receipt`;
  assert.deepEqual(
    [n!.live, n!.backfilled],
    [live, b!.rows],
    'three changes per transaction, one per backfilled row',
  );
  assert.ok(b!.rows > 90_000, `${b!.rows} rows backfilled`);
  const states = [];
  for (const table of ['pgbench_accounts', 'pgbench_tellers', 'pgbench_branches']) {
    states.push(await assertFinalState(db.sql, api, table));
  }
  t.diagnostic(`final state: ${JSON.stringify(states)}`);
  assert.equal(states[2]!.rows, SCALE, 'the branch row was compared');
});
