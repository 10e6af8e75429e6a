// Guarantee 7: capture cannot be bypassed silently. Real attempts by an
// application role, a catalog check of every SECURITY DEFINER function, and
// objects planted on the search_path.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import postgres, { type Sql } from 'postgres';
import { freshDatabase, type TestDb } from '../harness/db.js';

let db: TestDb;
let app: Sql;

before(async () => {
  db = await freshDatabase();
  await db.sql.unsafe(`
    create table orders (id int primary key, total numeric not null);
    select certyo.enable_tracking('orders');
    grant select, insert, update, delete, truncate on orders to certyo_test_app;
    insert into orders values (1, 10);
  `);
  app = postgres(db.urlAs('certyo_test_app'), { max: 1, onnotice: () => {} });
});
after(async () => {
  await app.end();
  await db.close();
});

const denied = (err: Error & { code?: string }) => {
  assert.ok(
    ['42501', '0A000'].includes(err.code ?? ''),
    `expected a refusal, got ${err.code}: ${err.message}`,
  );
  return true;
};

describe('privileges', () => {
  test('the application role writes tracked tables and its changes are captured', async () => {
    await app`insert into orders values (2, 20)`;
    await app`update orders set total = 21 where id = 2`;
    await app`delete from orders where id = 2`;
    const rows = await db.sql`select op::text from certyo.outbox where record_id = '2' order by id`;
    assert.deepEqual(
      rows.map((r) => r.op),
      ['I', 'U', 'D'],
    );
  });

  test('the application role cannot touch the outbox or certyo tables', async () => {
    for (const stmt of [
      "insert into certyo.outbox (id, table_id, op, record_id, payload) values (-1, 1, 'I', 'x', '{}')",
      "update certyo.outbox set payload = '{}'",
      'delete from certyo.outbox',
      'truncate certyo.outbox',
      'select * from certyo.outbox',
      'delete from certyo.tracked_table',
      'insert into certyo.waiting_relay values (gen_random_uuid())',
    ]) {
      await assert.rejects(app.unsafe(stmt), denied, stmt);
    }
  });

  test('the application role cannot write status columns, nor forge them on insert', async () => {
    await assert.rejects(app`update orders set certyo_anchor_status = 'anchored' where id = 1`, denied);
    await assert.rejects(app`update orders set certyo_record_version = -1 where id = 1`, denied);
    await app`insert into orders (id, total, certyo_anchor_status, certyo_record_hash) values (3, 1, 'anchored', 'forged')`;
    await app`update orders set total = 2, certyo_anchor_status = 'anchored' where id = 1`;
    const rows =
      await db.sql`select id, certyo_anchor_status as s, certyo_record_hash as h from orders where id in (1, 3) order by id`;
    assert.deepEqual(
      rows.map((r) => [r.id, r.s, r.h]),
      [
        [1, 'pending', null],
        [3, 'pending', null],
      ],
    );
  });

  test('the application role cannot disable triggers, truncate, or call certyo functions', async () => {
    await assert.rejects(app`alter table orders disable trigger certyo_capture_insert`, denied);
    await assert.rejects(app`truncate orders`, denied);
    await assert.rejects(app`set session_replication_role = replica`, denied);
    await assert.rejects(app`select certyo.disable_tracking('orders')`, denied);
    await assert.rejects(app`select certyo.enable_tracking('orders')`, denied);
    await assert.rejects(app`select certyo.backfill('orders')`, denied);
    await assert.rejects(app`select * from certyo.backfill_step()`, denied);
    await assert.rejects(app`update certyo.backfill set rows_done = 0`, denied);
  });

  test('a custom setting is not a bypass', async () => {
    const [tracked] = await db.sql`select table_id::text as id from certyo.tracked_table`;
    const tableId: string = tracked!.id;
    const before = await db.sql`select count(*)::int as n from certyo.outbox`;
    await app.begin(async (tx) => {
      await tx`select set_config('certyo.disabled', 'on', true), set_config('certyo.bypass', 'true', true)`;
      // The setting the relay's write-back runs with skips the trigger only for certyo's owner in a relay's session.
      await tx`select set_config('certyo.status_write', 'on', true)`;
      // The setting a backfill's stamp runs with: the update is still captured (certyo_before clears it).
      await tx`select set_config('certyo.backfill', ${tableId}, true)`;
      await tx`insert into orders values (4, 4)`;
      await tx`update orders set total = 5 where id = 4`;
    });
    const after = await db.sql`select count(*)::int as n from certyo.outbox`;
    assert.equal(after[0]!.n, before[0]!.n + 2);
    await assert.rejects(
      app.begin(async (tx) => {
        await tx`select set_config('certyo.status_write', 'on', true)`;
        await tx`update orders set certyo_anchor_status = 'anchored' where id = 4`;
      }),
      denied,
    );
  });

  test("nor with a SECURITY DEFINER function that runs as certyo's owner", async () => {
    // Here certyo's owner is the superuser that installed it, and owns this application function too.
    await db.sql.unsafe(`
      create function public.set_total(order_id int, new_total numeric) returns void
        language sql security definer set search_path = pg_catalog, public
        as $$ update public.orders set total = new_total where id = order_id $$;
      grant execute on function public.set_total(int, numeric) to certyo_test_app;
    `);
    const [old] = await db.sql`select certyo_record_version::text as v from orders where id = 1`;
    const [tracked] =
      await db.sql`select table_id::text as id from certyo.tracked_table where relid = 'orders'::regclass`;
    await app.begin(async (tx) => {
      await tx`select set_config('certyo.status_write', 'on', true)`;
      // And the setting a backfill's stamp runs with: the stamp is skipped only in a relay's session.
      await tx`select set_config('certyo.backfill', ${tracked!.id}, true)`;
      await tx`select public.set_total(1, 99)`;
    });
    const [row] =
      await db.sql`select certyo_record_version::text as v, certyo_anchor_status as s from orders where id = 1`;
    assert.notEqual(row!.v, old!.v, 'the change got a new version');
    assert.equal(row!.s, 'pending');
    const captured =
      await db.sql`select payload->>'total' as total from certyo.outbox where id = ${row!.v}::bigint`;
    assert.deepEqual(
      captured.map((r) => r.total),
      ['99'],
    );
  });

  test('objects planted on the search path are never used by capture', async () => {
    await db.sql.unsafe(`
      grant create on schema public to certyo_test_app;
    `);
    await app.unsafe(`
      create table public.outbox (id bigint, table_id int, op "char", record_id text, payload json);
      create function public.row_to_json(anyelement) returns json language sql as $$ select '{"hijacked":true}'::json $$;
      create function public.nextval(regclass) returns bigint language sql as $$ select -1::bigint $$;
    `);
    await app.begin(async (tx) => {
      await tx`set local search_path = public, pg_catalog`;
      await tx`insert into orders values (5, 5)`;
    });
    const [planted] = await db.sql`select count(*)::int as n from public.outbox`;
    assert.equal(planted!.n, 0);
    const [row] =
      await db.sql`select payload::text, id > 0 as positive from certyo.outbox where record_id = '5'`;
    assert.ok(row!.positive);
    assert.doesNotMatch(row!.payload, /hijacked/);
  });

  test('operators planted on the search path decide nothing in the BEFORE triggers', async () => {
    // The BEFORE triggers run as the writer without a SET search_path: an "=" that
    // always answers true would keep a forged status on insert, or pass a status-only
    // update off as certyo's owner's write-back, if they used the session's operators.
    await app.unsafe(`
      create function public.always(text, text) returns boolean language sql as 'select true';
      create operator public.= (leftarg = text, rightarg = text, function = public.always);
      create function public.always(name, name) returns boolean language sql as 'select true';
      create operator public.= (leftarg = name, rightarg = name, function = public.always);
      create function public.always(bigint, bigint) returns boolean language sql as 'select true';
      create operator public.= (leftarg = bigint, rightarg = bigint, function = public.always);
    `);
    // A new session, so that capture plans its expressions under this search path.
    const planted = postgres(db.urlAs('certyo_test_app'), {
      max: 1,
      onnotice: () => {},
      connection: { search_path: 'public, pg_catalog' },
    });
    try {
      await checkPlanted(planted);
    } finally {
      await planted.end();
    }
  });
});

// Writes through a session whose search path puts the planted operators first.
async function checkPlanted(app: Sql) {
  await app`insert into orders (id, total, certyo_anchor_status) values (6, 6, 'anchored')`;
  const [inserted] =
    await db.sql`select certyo_anchor_status as s, certyo_record_hash as h from orders where id = 6`;
  assert.deepEqual([inserted!.s, inserted!.h], ['pending', null]);
  await assert.rejects(app`update orders set certyo_anchor_status = 'anchored' where id = 6`, denied);
  const [old] = await db.sql`select certyo_record_version::text as v from orders where id = 6`;
  await app`update orders set total = 7 where id = 6`;
  const [updated] =
    await db.sql`select certyo_record_version::text as v, certyo_anchor_status as s from orders where id = 6`;
  assert.notEqual(updated!.v, old!.v, 'the update got a new version');
  const captured =
    await db.sql`select payload->>'total' as total from certyo.outbox where id = ${updated!.v}::bigint`;
  assert.deepEqual(
    captured.map((r) => r.total),
    ['7'],
  );
}

describe('catalog', () => {
  test('every SECURITY DEFINER function pins search_path to pg_catalog, pg_temp', async () => {
    const rows = await db.sql`
      select p.oid::regprocedure::text as fn, p.proconfig
      from pg_proc p join pg_namespace n on n.oid = p.pronamespace
      where n.nspname = 'certyo' and p.prosecdef`;
    assert.ok(rows.length >= 3, 'the definer functions exist');
    for (const r of rows) {
      assert.ok(
        (r.proconfig as string[] | null)?.includes('search_path=pg_catalog, pg_temp'),
        `${r.fn} lacks a pinned search_path`,
      );
    }
  });

  test('PUBLIC can execute no certyo function and read no certyo table', async () => {
    const fns = await db.sql`
      select p.oid::regprocedure::text as fn
      from pg_proc p join pg_namespace n on n.oid = p.pronamespace
      where n.nspname = 'certyo' and has_function_privilege('certyo_test_stranger', p.oid, 'execute')`;
    assert.deepEqual([...fns], []);
    const rels = await db.sql`
      select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace
      where n.nspname = 'certyo' and c.relkind in ('r', 'v', 'p')
        and (has_table_privilege('certyo_test_stranger', c.oid, 'select')
             or has_table_privilege('certyo_test_stranger', c.oid, 'insert, update, delete, truncate'))`;
    assert.deepEqual([...rels], []);
  });

  test('the reader role sees the views and nothing else', async () => {
    await db.sql`grant certyo_reader to certyo_test_stranger`;
    const reader = postgres(db.urlAs('certyo_test_stranger'), { max: 1, onnotice: () => {} });
    try {
      const [b] = await reader`select count(*)::int as n from certyo.tracked_tables`;
      assert.equal(b!.n, 1);
      await assert.rejects(reader`select * from certyo.outbox`, denied);
    } finally {
      await reader.end();
      await db.sql`revoke certyo_reader from certyo_test_stranger`;
    }
  });
});
