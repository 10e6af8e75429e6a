// Backfill steps against live writes, each interleaving forced with row
// locks (no relay: the changes stay in the outbox to be read in version
// order). After each, every record's last change is the row as it is (or a
// delete, when the row is gone), and no row was stamped twice.
import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, test } from 'node:test';
import postgres, { type Sql, type TransactionSql } from 'postgres';
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
    create table items (id int primary key, name text not null);
    insert into items select g * 2, 'old ' || g from generate_series(1, 100) g; -- even keys 2..200
    select certyo.enable_tracking('items');`);
});
after(async () => {
  for (const s of sessions) await s.end({ timeout: 1 });
  await db.close();
});
beforeEach(async () => {
  // Every row back to "existed before tracking", and a backfill scheduled.
  await db.sql`delete from certyo.outbox`;
  await db.sql`delete from certyo.backfill`;
  await db.sql.unsafe(`
    set session_replication_role = replica;
    delete from items;
    insert into items select g * 2, 'old ' || g from generate_series(1, 100) g;
    set session_replication_role = origin;`);
  await db.sql`select certyo.backfill('items')`;
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

const step = (sql: Sql | TransactionSql, rows = 1000) =>
  sql`select state, rows_stamped from certyo.backfill_step(${rows}, false)`.then((r) => r[0]!);

/** Steps until the backfill is finished. */
async function finish() {
  while ((await step(db.sql)).state !== 'finished');
}

/** One record's changes in version order, as [op, name] (the name in the change's image). */
async function changes(id: number) {
  const rows = await db.sql`select op::text, payload ->> 'name' as name from certyo.outbox
                            where record_id = ${String(id)} order by id`;
  return rows.map((r) => [r.op, r.name]);
}

/**
 * Every record's last change (highest version) is its row: same version, same
 * image; a record without a row ends with a delete. Each row stamped at most once.
 */
async function assertLastIsRow() {
  const bad = await db.sql`
    with last as (
        select distinct on (o.record_id) o.record_id, o.id, o.op, o.payload ->> 'name' as name
        from certyo.outbox o order by o.record_id, o.id desc)
    select l.record_id, l.op::text, l.id::text, i.certyo_record_version::text as row_version
    from last l full join items i on i.id::text = l.record_id
    where i.id is null and l.op <> 'D'
       or i.id is not null and (l.id is distinct from i.certyo_record_version or l.name is distinct from i.name)`;
  assert.deepEqual([...bad], [], 'records whose last change is not the row');
  const twice =
    await db.sql`select record_id from certyo.outbox where op = 'B' group by 1 having count(*) > 1`;
  assert.deepEqual([...twice], [], 'rows stamped twice');
}

describe('backfill with live writes', () => {
  test('all rows, in chunks, resumed after the last committed chunk; each sent once, as B', async () => {
    assert.deepEqual(await step(db.sql, 30), { state: 'stamped', rows_stamped: 30 });
    // A step that does not commit (a killed relay) stamps nothing and moves nothing.
    await db.sql
      .begin(async (tx) => {
        assert.equal((await step(tx, 30)).rows_stamped, 30);
        await tx`select 1/0`;
      })
      .catch(() => {});
    const [b] = await db.sql`select after_key, rows_done::int from certyo.backfill`;
    assert.deepEqual([b!.after_key, b!.rows_done], [['60'], 30]);
    await finish();
    const [n] = await db.sql`select count(*)::int as n, count(distinct record_id)::int as records
                             from certyo.outbox where op = 'B'`;
    assert.deepEqual([n!.n, n!.records], [100, 100]);
    const [v] = await db.sql`select state, rows_done::int, rows_total::int from certyo.backfills`;
    assert.deepEqual([v!.state, v!.rows_done, v!.rows_total], ['finished', 100, 100]);
    const statuses = await db.sql`select distinct certyo_anchor_status as s from items`;
    assert.deepEqual(
      statuses.map((s) => s.s),
      ['pending'],
    );
    await assertLastIsRow();
  });

  test('an update between the chunk read and its commit waits, and comes after the stamp', async () => {
    const user = session();
    let updating: Promise<unknown> | undefined;
    await db.sql.begin(async (tx) => {
      assert.equal((await step(tx, 10)).rows_stamped, 10); // rows 2..20 stamped, not committed
      updating = user`update items set name = 'new' where id = 6`.execute();
      await blocked('update items set name%');
    });
    await updating;
    assert.deepEqual(await changes(6), [
      ['B', 'old 3'],
      ['U', 'new'],
    ]);
    await finish();
    await assertLastIsRow();
  });

  test('an update holding the row first: the step gives way; committed, the row is not stamped', async () => {
    const user = session();
    await user.begin(async (tx) => {
      await tx`update items set name = 'held' where id = 8`;
      assert.equal((await step(db.sql)).state, 'busy'); // waited 10 ms for row 8, stamped nothing
      assert.deepEqual(await changes(2), []);
    });
    await finish();
    assert.deepEqual(await changes(8), [['U', 'held']]);
    await assertLastIsRow();
  });

  test('an update holding the row first and rolled back: the row is stamped as it was', async () => {
    const user = session();
    await user
      .begin(async (tx) => {
        await tx`update items set name = 'never' where id = 8`;
        assert.equal((await step(db.sql)).state, 'busy');
        throw new Error('roll back');
      })
      .catch(() => {});
    await finish();
    assert.deepEqual(await changes(8), [['B', 'old 4']]);
    await assertLastIsRow();
  });

  test('a delete of a row in the current chunk comes after its stamp; the row does not come back', async () => {
    const user = session();
    let deleting: Promise<unknown> | undefined;
    await db.sql.begin(async (tx) => {
      await step(tx, 10);
      deleting = user`delete from items where id = 10`.execute();
      await blocked('delete from items%');
    });
    await deleting;
    assert.deepEqual(await changes(10), [
      ['B', 'old 5'],
      ['D', 'old 5'],
    ]);
    await finish();
    assert.deepEqual(await changes(10), [
      ['B', 'old 5'],
      ['D', 'old 5'],
    ]);
    await assertLastIsRow();
  });

  test('a delete holding the row first: the row is gone, never stamped', async () => {
    const user = session();
    await user.begin(async (tx) => {
      await tx`delete from items where id = 12`;
      assert.equal((await step(db.sql)).state, 'busy');
    });
    await finish();
    assert.deepEqual(await changes(12), [['D', 'old 6']]);
    await assertLastIsRow();
  });

  test('inserts into a chunk already done, and into one not yet done, are inserts only', async () => {
    await step(db.sql, 50); // keys 2..100 done
    await db.sql`insert into items values (51, 'new in a done chunk'), (151, 'new in a chunk to come')`;
    await finish();
    assert.deepEqual(await changes(51), [['I', 'new in a done chunk']]);
    assert.deepEqual(await changes(151), [['I', 'new in a chunk to come']]);
    const [n] = await db.sql`select count(*)::int as n from certyo.outbox where op = 'B'`;
    assert.equal(n!.n, 100);
    await assertLastIsRow();
  });

  test('a row updated after the backfill was asked for, before its chunk, is not stamped', async () => {
    await db.sql`update items set name = 'early' where id = 200`;
    await finish();
    assert.deepEqual(await changes(200), [['U', 'early']]);
    await assertLastIsRow();
  });

  test('asking again while it runs changes nothing; once finished, a new backfill sends every row again but a tampered one', async () => {
    await step(db.sql, 10);
    await db.sql`select certyo.backfill('items')`;
    const [b] = await db.sql`select rows_done::int from certyo.backfill`;
    assert.equal(b!.rows_done, 10);
    await finish();
    // A row the tamper sweep flagged is not re-sent (its edit would be anchored).
    await db.sql`update items set certyo_anchor_status = 'tampered' where id = 4`;
    await db.sql`select certyo.backfill('items')`;
    await finish();
    const [n] = await db.sql`select count(*)::int as n from certyo.outbox where op = 'B'`;
    assert.equal(n!.n, 199);
    assert.deepEqual(await changes(4), [['B', 'old 2']]);
  });

  test('a user trigger that touches the stamped row: the image sent is the row as the stamp left it', async () => {
    await db.sql.unsafe(`
      create table touched (id int primary key, touches int not null default 0);
      insert into touched select generate_series(1, 5);
      create function touch() returns trigger language plpgsql as $$
        begin new.touches := old.touches + 1; return new; end $$;
      create trigger touch before update on touched for each row execute function touch();
      select certyo.enable_tracking('touched', backfill => true);`);
    const state = async () =>
      (await db.sql`select state from certyo.backfills where table_name = 'public.touched'`)[0]?.state;
    while ((await state()) !== 'finished') await step(db.sql);
    const rows = await db.sql`
      select o.op::text, o.payload ->> 'touches' as sent, t.touches::text as row, o.id = t.certyo_record_version as same
      from certyo.outbox o join certyo.tracked_table x on x.table_id = o.table_id and x.relid = 'touched'::regclass
      join touched t on t.id::text = o.record_id order by t.id`;
    assert.deepEqual(
      rows.map((r) => [r.op, r.sent, r.row, r.same]),
      Array.from({ length: 5 }, () => ['B', '1', '1', true]),
    );
    await db.sql`select certyo.disable_tracking('touched')`;
  });

  test('a stamped row is marked (empty hash) until the write-back; the update trigger never runs for it', async () => {
    const token = '00000000-0000-4000-8000-0000000000b1';
    await step(db.sql, 10);
    const marked = await db.sql`select certyo_record_hash as h, certyo_anchor_status as s from items
                                where certyo_record_version is not null`;
    assert.equal(marked.length, 10);
    assert.ok(
      marked.every((r) => r.h === '' && r.s === 'pending'),
      JSON.stringify(marked),
    );
    // The stamp's only changes are the backfill's own: one B each, no U from the update trigger.
    const [ops] =
      await db.sql`select string_agg(distinct op::text, '') as ops, count(*)::int as n from certyo.outbox`;
    assert.deepEqual([ops!.ops, ops!.n], ['B', 10]);
    // The mark is not sent: the claim cuts the status columns off as for any change.
    const claimed = await db.sql`select id::text, record from certyo.claim(${token}, 100)`;
    assert.equal(claimed.length, 10);
    for (const c of claimed) assert.deepEqual(Object.keys(JSON.parse(c.record)), ['id', 'name']);
    // Acknowledged without a hash from Certyo: the mark is cleared, not kept as the hash.
    await db.sql`select certyo.ack(${token}, ${`{${claimed.map((c) => c.id).join(',')}}`}::bigint[], '{}', '{}', '{}', '{}')`;
    const after = await db.sql`select distinct certyo_record_hash as h, certyo_anchor_status as s from items
                               where certyo_record_version is not null`;
    assert.deepEqual([...after], [{ h: null, s: 'submitted' }]);
    await db.sql`delete from certyo.receipt`;
  });

  test('a table tracked before the mark (its update trigger names certyo.backfill) is backfilled as before', async () => {
    const [t] =
      await db.sql`select table_id::text as id from certyo.tracked_table where relid = 'items'::regclass`;
    const def = async () =>
      (
        await db.sql`select pg_get_triggerdef(oid) as d from pg_trigger
                    where tgrelid = 'items'::regclass and tgname = 'certyo_capture_update'`
      )[0]!.d as string;
    const current = await def();
    await db.sql.unsafe(`
      drop trigger certyo_capture_update on items;
      create trigger certyo_capture_update after update on items for each row
        when (old.certyo_record_version is distinct from new.certyo_record_version
              and (pg_catalog.current_setting('certyo.backfill', true) is distinct from '${t!.id}'
                   or pg_catalog.pg_trigger_depth() <> 0))
        execute function certyo.capture('${t!.id}', 'table', 'id');`);
    try {
      await finish();
      const [n] =
        await db.sql`select count(*)::int as n, count(*) filter (where op = 'B')::int as b from certyo.outbox`;
      assert.deepEqual([n!.n, n!.b], [100, 100]);
      const hashes = await db.sql`select distinct certyo_record_hash as h from items`;
      assert.deepEqual(
        [...hashes],
        [{ h: null }],
        'no mark: this trigger tells the stamp by certyo.backfill',
      );
      await assertLastIsRow();
    } finally {
      await db.sql.unsafe(`drop trigger certyo_capture_update on items; ${current}`);
    }
  });

  test('disabling tracking stops the backfill', async () => {
    await step(db.sql, 10);
    await db.sql`select certyo.disable_tracking('items')`;
    assert.equal((await step(db.sql)).state, 'finished');
    const [v] = await db.sql`select state, stopped_because from certyo.backfills`;
    assert.deepEqual([v!.state, v!.stopped_because], ['stopped', 'tracking disabled']);
    await db.sql`select certyo.enable_tracking('items')`;
  });
});
