// certyo.ack_and_claim: the acknowledgement of the last batch and the claim of
// the next in one call (a relay keeping up sends small batches; each round
// trip counts). It must do what certyo.ack then certyo.claim do: fenced by the
// lease, receipts kept, rows marked, and the claim sees what the ack released.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { freshDatabase, type TestDb } from '../harness/db.js';

let db: TestDb;
const relay = '00000000-0000-4000-8000-0000000000a1';
const other = '00000000-0000-4000-8000-0000000000b2';

before(async () => {
  db = await freshDatabase();
  await db.sql`create table t (id int primary key, v int not null)`;
  await db.sql`select certyo.enable_tracking('t')`;
});
after(() => db.close());

interface Row {
  id: string | null;
  op: string | null;
  record_id: string | null;
  record: string | null;
  acknowledged: number;
}

/** ack_and_claim as the relay's role would call it; ids acknowledged with hash 'h<id>'. */
async function ackAndClaim(token: string, ids: string[], max = 10): Promise<Row[]> {
  return db.sql.begin(async (tx) => {
    // The relay's role: certyo_relay's grants, nothing of the superuser's.
    await tx`grant certyo_relay to certyo_test_relay`;
    await tx`set local role certyo_test_relay`;
    const rows = await tx<Row[]>`
      select id::text, op::text, record_id, record, acknowledged
      from certyo.ack_and_claim(${token}, ${ids}::bigint[], ${ids.map((i) => `h${i}`)}::text[],
                                ${ids.map(() => new Date().toISOString())}::timestamptz[], ${ids.map(() => 's')}::text[],
                                ${ids.map(() => 'ab')}::text[], null, null, ${max}, '60 seconds', 4194304)`;
    await tx`reset role`;
    await tx`revoke certyo_relay from certyo_test_relay`;
    return rows;
  });
}

test('acknowledges the last batch, then claims what that released; fenced by the lease; an empty claim still counts', async () => {
  // Record 1 changes twice: its update waits while its insert is leased.
  await db.sql`insert into t values (1, 10)`;
  await db.sql`update t set v = 11 where id = 1`;
  await db.sql`insert into t values (2, 20)`;
  const shape = (rows: Row[]) => rows.map((r) => [r.op, r.record_id, r.acknowledged]);
  const a = await ackAndClaim(relay, [], 1);
  assert.deepEqual(shape(a), [['I', '1', 0]]);
  assert.ok(!a[0]!.record!.includes('certyo_'), 'the claim strips the status columns');

  // Another relay can acknowledge nothing of ours, and record 1's update stays held.
  const b = await ackAndClaim(other, [a[0]!.id!]);
  assert.deepEqual(shape(b), [['I', '2', 0]]);

  // Our acknowledgement releases record 1: its update is claimed in the same call.
  const c = await ackAndClaim(relay, [a[0]!.id!]);
  assert.deepEqual(shape(c), [['U', '1', 1]]);

  // Nothing left to claim: one row, with the count only.
  const d = await ackAndClaim(other, [b[0]!.id!]);
  assert.deepEqual(shape(d), [[null, null, 1]]);
  assert.equal(d[0]!.id, null);
  const e = await ackAndClaim(relay, [c[0]!.id!]);
  assert.deepEqual(shape(e), [[null, null, 1]]);

  const rows = await db.sql`select id, certyo_anchor_status as s, certyo_record_hash as h from t order by id`;
  assert.deepEqual(
    rows.map((r) => [r.id, r.s, r.h]),
    [
      [1, 'submitted', `h${c[0]!.id}`],
      [2, 'submitted', `h${b[0]!.id}`],
    ],
    "each row marked with its own version's acknowledgement",
  );
  const [state] = await db.sql`
    select (select count(*)::int from certyo.outbox) as outbox, (select count(*)::int from certyo.receipt) as receipts`;
  assert.deepEqual(state, { outbox: 0, receipts: 3 });
});
