// Per-record order when an INSERT waits, at the unique index, for another
// transaction that deletes the same key. The insert's version is drawn first
// (BEFORE trigger), the delete's later, and the delete commits first: without
// care Certyo would get the insert, then the delete of a record that exists.
// Each interleaving is forced with row locks, and each test checks the
// versions in commit order and the row's own version.
import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, test } from 'node:test';
import postgres, { type Sql } from 'postgres';
import { freshDatabase, type TestDb } from '../harness/db.js';
import { until } from '../harness/wait.js';

let db: TestDb;
const sessions: Sql[] = [];
const session = () => {
  const s = postgres(db.url, { max: 1, onnotice: () => {} });
  sessions.push(s);
  return s;
};

before(async () => {
  db = await freshDatabase();
  await db.sql.unsafe(`
    create table t (id int primary key, v int not null);
    create table p (id int primary key, v int not null) partition by range (id);
    create table p1 partition of p for values from (0) to (100);
    select certyo.enable_tracking('t');
    select certyo.enable_tracking('p');`);
});
after(async () => {
  for (const s of sessions) await s.end({ timeout: 1 });
  await db.close();
});
beforeEach(async () => {
  await db.sql`delete from t`;
  await db.sql`delete from p`;
  await db.sql`delete from certyo.outbox`;
  await db.sql`delete from certyo.receipt`;
});

/** Waits until some session's statement matching `like` waits for a lock. */
const blocked = (like: string) =>
  until(
    async () =>
      (
        await db.sql`select count(*)::int as n from pg_stat_activity
                     where datname = current_database() and wait_event_type = 'Lock' and query like ${like}`
      )[0]!.n > 0,
  );

/** Record 1's changes of table `table` in version order (outbox and receipts), and the row's version. */
async function history(table: string) {
  const changes = await db.sql`
    select c.op::text, c.id::text from (
        select o.op, o.id, o.table_id, o.record_id from certyo.outbox o
        union all select r.op, r.id, r.table_id, r.record_id from certyo.receipt r) as c
    join certyo.tracked_table x on x.table_id = c.table_id and x.relid = ${table}::regclass
    where c.record_id = '1' order by c.id`;
  const [row] = await db.sql.unsafe(
    `select certyo_record_version::text as v, v as value from ${table} where id = 1`,
  );
  return { ops: changes.map((c) => c.op).join(''), versions: changes.map((c) => c.id as string), row };
}

/**
 * T1 deletes rows 1 and 2 in one statement and is held on row 2 (T3 locks it),
 * so T2's insert of key 1 draws its version, then waits for T1 at the unique index.
 */
async function deleteHeldWhileInserting(
  table: string,
  insert: string,
  whileWaiting?: () => Promise<void>,
  warm = false,
) {
  await db.sql.unsafe(`insert into ${table} values (1, 0), (2, 0)`);
  const t3 = session();
  const t1 = session();
  const t2 = session();
  // A session that inserted before remembers the delete clock: the probe must still be made.
  if (warm) await t2.unsafe(`insert into ${table} values (50, 0)`);
  const hold = await t3.reserve();
  await hold`begin`;
  await hold.unsafe(`select from ${table} where id = 2 for update`);
  const deleting = t1.unsafe(`delete from ${table} where id in (1, 2)`).execute(); // started now, not when awaited
  await blocked('delete from%');
  const inserting = t2.unsafe(insert).execute();
  await blocked('insert into%');
  await hold`commit`;
  hold.release();
  await deleting;
  await whileWaiting?.();
  await inserting;
}

describe('an insert that waited for a delete of the same key', () => {
  for (const [name, insert] of [
    ['INSERT', 'insert into t values (1, 99)'],
    ['INSERT ... ON CONFLICT DO NOTHING', 'insert into t values (1, 99) on conflict (id) do nothing'],
    [
      'INSERT ... ON CONFLICT DO UPDATE',
      'insert into t as x values (1, 99) on conflict (id) do update set v = x.v + 1',
    ],
  ] as const) {
    test(`${name}: its version comes after the delete's, on the row and in the outbox`, async () => {
      await deleteHeldWhileInserting('t', insert);
      const h = await history('t');
      assert.equal(h.ops, 'IDI', JSON.stringify(h));
      assert.equal(h.row!.value, 99);
      assert.equal(h.row!.v, h.versions[2], 'the row carries the version of its insert');
    });
  }

  test('INSERT from a session that inserted before: its version comes after the delete', async () => {
    await deleteHeldWhileInserting('t', 'insert into t values (1, 99)', undefined, true);
    const h = await history('t');
    assert.equal(h.ops, 'IDI', JSON.stringify(h));
    assert.equal(h.row!.v, h.versions[2], 'the row carries the version of its insert');
  });

  test('the delete was already delivered when the insert went on: still ordered after it', async () => {
    const token = '00000000-0000-4000-8000-0000000000a1';
    // The insert's second row waits for T4's uncommitted insert of key 3 while the delete is delivered.
    const t4 = await session().reserve();
    await t4`begin`;
    await t4`insert into t values (3, 0)`;
    await deleteHeldWhileInserting(
      't',
      'insert into t values (1, 99), (3, 99) on conflict (id) do nothing',
      async () => {
        await blocked('insert into%');
        const claimed = await db.sql`select id::text from certyo.claim(${token}, 10)`;
        const ids = claimed.map((c) => c.id as string);
        await db.sql`select certyo.ack(${token}, ${`{${ids.join(',')}}`}::bigint[], '{}', '{}', '{}', '{}')`;
        await t4`rollback`;
        t4.release();
      },
    );
    const h = await history('t');
    assert.equal(h.ops, 'IDI', JSON.stringify(h));
    assert.equal(h.row!.v, h.versions[2]);
    const [r] =
      await db.sql`select count(*)::int as n from certyo.receipt where op = 'D' and record_id = '1'`;
    assert.equal(r!.n, 1, 'the delete was in the receipts before the insert ended');
  });

  test('partitioned table (row triggers): its version comes after the delete', async () => {
    await deleteHeldWhileInserting('p', 'insert into p values (1, 99)');
    const h = await history('p');
    assert.equal(h.ops, 'IDI', JSON.stringify(h));
    assert.equal(h.row!.v, h.versions[2]);
  });
});
