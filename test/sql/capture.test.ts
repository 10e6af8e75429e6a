// Capture: one outbox row per committed changed row, with the right operation,
// key, image and version; nothing from rolled-back work; status-only updates
// produce nothing.
import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, test } from 'node:test';
import postgres from 'postgres';
import { freshDatabase, type TestDb } from '../harness/db.js';

let db: TestDb;

interface OutboxRow {
  id: string;
  op: string;
  record_id: string;
  payload: string;
  record: string;
  idempotency_key: string;
  collection: string;
}

async function outbox(): Promise<OutboxRow[]> {
  return db.sql<OutboxRow[]>`
    select o.id::text, o.op::text, o.record_id, o.payload::text,
           certyo.record_payload(o.payload, t.exclude_columns)::text as record,
           certyo.change_key(i.id, o.id, o.changed_at)::text as idempotency_key, t.collection
    from certyo.outbox o join certyo.tracked_table t using (table_id), certyo.installation i
    order by o.id`;
}

before(async () => {
  db = await freshDatabase();
  await db.sql`create table products (id bigint primary key, name text not null, price numeric(12,2), note text)`;
  await db.sql`select certyo.enable_tracking('products')`;
});
after(() => db.close());
beforeEach(async () => {
  await db.sql`delete from products`;
  await db.sql`delete from certyo.outbox`;
});

describe('capture', () => {
  test('insert, update and delete each write one outbox row with key, image and version', async () => {
    await db.sql`insert into products values (1, 'lamp', 12.50, null)`;
    await db.sql`update products set price = 13.00 where id = 1`;
    await db.sql`delete from products where id = 1`;
    const rows = await outbox();
    assert.deepEqual(
      rows.map((r) => [r.op, r.record_id, r.collection]),
      [
        ['I', '1', 'public.products'],
        ['U', '1', 'public.products'],
        ['D', '1', 'public.products'],
      ],
    );
    assert.deepEqual(
      rows.map((r) => r.record),
      [
        '{"id":1,"name":"lamp","price":12.50,"note":null}',
        '{"id":1,"name":"lamp","price":13.00,"note":null}',
        '{"id":1,"name":"lamp","price":13.00,"note":null}', // the old image for DELETE
      ],
    );
    // What the claim sends (status columns cut as a suffix, or rebuilt for deletes) is that same record.
    const claimed = await db.sql`
      select record, idempotency_key::text from certyo.claim('00000000-0000-4000-8000-00000000000c', 10)`;
    assert.deepEqual(
      claimed.map((c) => c.record),
      rows.map((r) => r.record),
    );
    // The keys are derived at the claim (none stored at capture): the claim's are certyo.change_key's.
    assert.deepEqual(
      claimed.map((c) => c.idempotency_key),
      rows.map((r) => r.idempotency_key),
    );
    const stored = await db.sql`select from certyo.outbox where idempotency_key is not null`;
    assert.equal(stored.length, 0);
    // Without the installation id no key can be derived: the claim refuses rather than send NULL keys.
    await assert.rejects(
      db.sql.begin(async (tx) => {
        await tx`delete from certyo.installation`;
        await tx`select * from certyo.claim('00000000-0000-4000-8000-00000000000d', 10)`;
      }),
      /certyo.installation has no row/,
    );
    const ids = rows.map((r) => BigInt(r.id));
    assert.ok(ids[0]! < ids[1]! && ids[1]! < ids[2]!, 'versions increase per record');
    assert.equal(new Set(rows.map((r) => r.idempotency_key)).size, 3, 'one idempotency key per change');
  });

  test('the row carries the version of its last captured change and a pending status', async () => {
    await db.sql`insert into products values (2, 'desk', 100, null)`;
    await db.sql`update products set note = 'oak' where id = 2`;
    const [row] =
      await db.sql`select certyo_record_version::text as v, certyo_anchor_status as s from products`;
    const last = (await outbox()).at(-1)!;
    assert.equal(row!.v, last.id);
    assert.equal(row!.s, 'pending');
  });

  test('rolled-back transactions and savepoints leave nothing behind', async () => {
    await db.sql
      .begin(async (tx) => {
        await tx`insert into products values (3, 'ghost', 1, null)`;
        throw new Error('roll back');
      })
      .catch(() => {});
    await db.sql.begin(async (tx) => {
      await tx`insert into products values (4, 'kept', 1, null)`;
      await tx
        .savepoint(async (sp) => {
          await sp`insert into products values (5, 'undone', 1, null)`;
          await sp`update products set name = 'undone too' where id = 4`;
          throw new Error('roll back to savepoint');
        })
        .catch(() => {});
    });
    const rows = await outbox();
    assert.deepEqual(
      rows.map((r) => [r.op, r.record_id, r.record]),
      [['I', '4', '{"id":4,"name":"kept","price":1.00,"note":null}']],
    );
  });

  test('multi-row statements and COPY are captured completely', async () => {
    await db.sql`insert into products select g, 'item ' || g, g, null from generate_series(1, 500) g`;
    await db.sql`update products set price = price + 1 where id <= 100`;
    await db.sql`delete from products where id > 450`;
    const copy = await db.sql`copy products (id, name, price) from stdin`.writable();
    for (let i = 1001; i <= 1300; i++) copy.write(`${i}\titem ${i}\t${i}.5\n`);
    await new Promise<void>((resolve, reject) =>
      copy.end((err?: Error | null) => (err ? reject(err) : resolve())),
    );
    const [counts] = await db.sql`
      select count(*) filter (where op = 'I')::int as i, count(*) filter (where op = 'U')::int as u,
             count(*) filter (where op = 'D')::int as d, count(distinct record_id)::int as records
      from certyo.outbox`;
    assert.deepEqual(counts, { i: 800, u: 100, d: 50, records: 800 });
  });

  test('an UPDATE that changes nothing, and a status write-back by certyo, produce no change', async () => {
    await db.sql`insert into products values (6, 'chair', 40, null)`;
    await db.sql`update products set name = name where id = 6`;
    // The database owner here owns schema certyo, as the relay's functions will.
    await db.sql`update products set certyo_anchor_status = 'anchored', certyo_record_hash = 'abc' where id = 6`;
    const rows = await outbox();
    assert.equal(rows.length, 1);
    const [row] =
      await db.sql`select certyo_anchor_status as s, certyo_record_hash as h from products where id = 6`;
    assert.deepEqual(row, { s: 'anchored', h: 'abc' });
  });

  test('a user update of other columns resets the status to pending and is captured', async () => {
    await db.sql`insert into products values (7, 'sofa', 400, null)`;
    await db.sql`update products set certyo_anchor_status = 'anchored', certyo_record_hash = 'abc' where id = 7`;
    await db.sql`update products set price = 380, certyo_anchor_status = 'anchored' where id = 7`;
    const [row] =
      await db.sql`select certyo_anchor_status as s, certyo_record_hash as h from products where id = 7`;
    assert.deepEqual(row, { s: 'pending', h: null });
    assert.deepEqual(
      (await outbox()).map((r) => r.op),
      ['I', 'U'],
    );
  });

  test("columns named like the aliases in certyo's own queries are captured and verified", async () => {
    // Whole-row references (row_to_json(n)) would resolve to a column named n.
    await db.sql.unsafe(`
      create table aliases (n int primary key, o int, x int, t int, u int, k int, v int, j int);
      select certyo.enable_tracking('aliases');
      insert into aliases values (1, 2, 3, 4, 5, 6, 7, 8), (2, 0, 0, 0, 0, 0, 0, 0);
      update aliases set o = 20 where n = 1;
      delete from aliases where n = 2;
    `);
    const rows = (await outbox()).filter((r) => r.collection === 'public.aliases');
    assert.deepEqual(
      rows.map((r) => [r.op, r.record_id, JSON.parse(r.record).o]),
      [
        ['I', '1', 2],
        ['I', '2', 0],
        ['U', '1', 20],
        ['D', '2', 0],
      ],
    );
    const verdicts = await db.sql`select record_id, verdict from certyo.verify('aliases', all_rows => true)`;
    assert.deepEqual(
      verdicts.map((r) => [r.record_id, r.verdict]),
      [['1', 'pending']],
    );
  });

  test('write_status skips the BEFORE trigger, but a change a user trigger makes from inside it is captured', async () => {
    // write_status runs with certyo.status_write on; the certyo_before trigger's WHEN
    // clause skips only statements at trigger depth 0, so this nested update is versioned.
    await db.sql.unsafe(`
      create table if not exists product_log (id int primary key, n int not null);
      select certyo.enable_tracking('product_log');
      insert into product_log values (1, 0) on conflict do nothing;
      create or replace function count_submitted() returns trigger language plpgsql as $$
      begin update public.product_log set n = n + 1 where id = 1; return null; end $$;
      drop trigger if exists count_submitted on products; -- (create or replace trigger: PostgreSQL 14 on)
      create trigger count_submitted after update on products for each row
        when (new.certyo_anchor_status = 'submitted') execute function count_submitted();
    `);
    try {
      await db.sql`insert into products values (8, 'desk', 90, null)`;
      await db.sql`delete from certyo.outbox`;
      const [p] = await db.sql`select certyo_record_version::text as v from products where id = 8`;
      const [t] =
        await db.sql`select table_id from certyo.tracked_table where relid = 'products'::regclass and active`;
      const [w] = await db.sql`
        select certyo.write_status(${t!.table_id}, '{8}', ${`{${p!.v}}`}::bigint[], '{submitted}', '{h8}', '{null}')::text as written`;
      assert.equal(w!.written, `{${p!.v}}`);
      const [after] =
        await db.sql`select certyo_record_version::text as v, certyo_anchor_status as s from products where id = 8`;
      assert.deepEqual(after, { v: p!.v, s: 'submitted' }, 'the write-back is not a change');
      const [log] =
        await db.sql`select n, certyo_anchor_status as s, certyo_record_version is not null as versioned from product_log where id = 1`;
      assert.deepEqual(log, { n: 1, s: 'pending', versioned: true });
      assert.deepEqual(
        (await outbox()).map((r) => [r.op, r.collection, JSON.parse(r.record).n]),
        [['U', 'public.product_log', 1]],
      );
    } finally {
      await db.sql`drop trigger count_submitted on products`;
    }
  });

  test("write_status never waits for a row a user holds: it skips that row, and writes rows a foreign key's check shares", async () => {
    await db.sql`insert into products values (1, 'a', 1, null), (2, 'b', 2, null), (3, 'c', 3, null)`;
    const rows = await db.sql`select id::text, certyo_record_version::text as v from products order by id`;
    const versions = rows.map((r) => r.v as string);
    const [t] =
      await db.sql`select table_id from certyo.tracked_table where relid = 'products'::regclass and active`;
    const user = postgres(db.url, { max: 1, onnotice: () => {} });
    try {
      await user.begin(async (tx) => {
        await tx`select 1 from products where id = 2 for update`;
        await tx`select 1 from products where id = 3 for key share`; // what a foreign key's check takes
        // Waiting for the user's transaction would end in the statement timeout.
        const [w] = await db.sql.begin(async (s) => {
          await s`set local statement_timeout = '5s'`;
          return s`select certyo.write_status(${t!.table_id}, '{1,2,3}', ${`{${versions.join(',')}}`}::bigint[],
                                             '{submitted,submitted,submitted}', '{h1,h2,h3}', '{null,null,null}') as written`;
        });
        assert.deepEqual(
          (w!.written as string[]).map(String).sort(),
          [versions[0], versions[2]].sort(),
          'rows 1 and 3 written, the held row 2 skipped',
        );
      });
    } finally {
      await user.end();
    }
    const after =
      await db.sql`select id, certyo_anchor_status as s, certyo_record_hash as h from products order by id`;
    assert.deepEqual(
      after.map((r) => [r.id, r.s, r.h]),
      [
        ['1', 'submitted', 'h1'],
        ['2', 'pending', null],
        ['3', 'submitted', 'h3'],
      ],
    );
  });

  test('a primary-key update is the delete of the old record and the insert of the new one', async () => {
    await db.sql`insert into products values (8, 'rug', 10, null)`;
    await db.sql`update products set id = 9, price = 11 where id = 8`;
    // In version order: the insert keeps the row's version, drawn before the delete's.
    assert.deepEqual(
      (await outbox()).map((r) => [r.op, r.record_id, r.record]),
      [
        ['I', '8', '{"id":8,"name":"rug","price":10.00,"note":null}'],
        ['I', '9', '{"id":9,"name":"rug","price":11.00,"note":null}'],
        ['D', '8', '{"id":8,"name":"rug","price":10.00,"note":null}'],
      ],
    );
    const [row] = await db.sql`select certyo_record_version::text as v from products where id = 9`;
    const [ins] = await db.sql`select id::text from certyo.outbox where record_id = '9'`;
    assert.equal(row!.v, ins!.id, 'the row carries the insert of its new key');
  });

  test('INSERT ... ON CONFLICT captures only what happened', async () => {
    await db.sql`insert into products values (10, 'mug', 5, null)`;
    await db.sql`insert into products values (10, 'mug', 6, null) on conflict (id) do update set price = excluded.price`;
    await db.sql`insert into products values (10, 'mug', 7, null) on conflict (id) do nothing`;
    assert.deepEqual(
      (await outbox()).map((r) => [r.op, r.record]),
      [
        ['I', '{"id":10,"name":"mug","price":5.00,"note":null}'],
        ['U', '{"id":10,"name":"mug","price":6.00,"note":null}'],
      ],
    );
  });

  test('exclude_columns, operations and collection options', async () => {
    await db.sql`create table accounts (id int primary key, email text not null, secret text)`;
    await db.sql`select certyo.enable_tracking('accounts', collection => 'crm.accounts',
                   operations => '{insert,delete}', exclude_columns => '{secret}')`;
    await db.sql`insert into accounts values (1, 'a@example.com', 's3cr3t')`;
    await db.sql`update accounts set email = 'b@example.com'`;
    await db.sql`delete from accounts`;
    const rows = (await outbox()).filter((r) => r.collection === 'crm.accounts');
    assert.deepEqual(
      rows.map((r) => [r.op, r.record]),
      [
        ['I', '{"id":1,"email":"a@example.com"}'],
        ['D', '{"id":1,"email":"b@example.com"}'],
      ],
    );
  });

  test('disable_tracking stops capture and keeps pending changes', async () => {
    await db.sql`create table notes (id int primary key, body text)`;
    await db.sql`select certyo.enable_tracking('notes')`;
    await db.sql`insert into notes values (1, 'kept')`;
    await db.sql`select certyo.disable_tracking('notes')`;
    await db.sql`select certyo.disable_tracking('notes')`; // idempotent
    await db.sql`insert into notes values (2, 'not captured')`;
    await db.sql`truncate notes`; // allowed once untracked
    const rows = (await outbox()).filter((r) => r.collection === 'public.notes');
    assert.deepEqual(
      rows.map((r) => r.record_id),
      ['1'],
    );
    const [b] = await db.sql`select pending::int from certyo.backlog where table_name = 'notes'`;
    assert.equal(b!.pending, 1, 'an untracked table with pending changes stays in the backlog view');
  });

  test('backlog and tracked_tables views report count and age', async () => {
    await db.sql`insert into products select g, 'x', 1, null from generate_series(1, 3) g`;
    const [t] = await db.sql`select table_name, pending::int, oldest_change_age is not null as aged
                             from certyo.tracked_tables where table_name = 'public.products'`;
    assert.deepEqual(t, { table_name: 'public.products', pending: 3, aged: true });
  });
});
