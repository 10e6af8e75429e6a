// enable_tracking across the table shapes users have: hostile identifiers,
// composite keys, partitioned tables, tables without a key, DDL after enable.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { freshDatabase, type TestDb } from '../harness/db.js';

let db: TestDb;

before(async () => {
  db = await freshDatabase();
});
after(() => db.close());

async function changes(collection: string) {
  return db.sql<{ op: string; record_id: string; record: string }[]>`
    select o.op::text, o.record_id, certyo.record_payload(o.payload, t.exclude_columns)::text as record
    from certyo.outbox o join certyo.tracked_table t using (table_id)
    where t.collection = ${collection} order by o.id`;
}

const ident = (s: string) => `"${s.replaceAll('"', '""')}"`;

describe('tables and identifiers', () => {
  const names = [
    ['Order Items', 'Line No'],
    ['select', 'from'],
    ['a"b', 'c"d'],
    ['Ünïcödé', 'Schlüssel'],
    ['MixedCase', 'MixedKey'],
    ['t'.repeat(63), 'k'.repeat(63)],
  ] as const;
  for (const [table, key] of names) {
    test(`table ${JSON.stringify(table)} with key ${JSON.stringify(key)}: enable, capture, status write-back`, async () => {
      const schema = `s ${table.slice(0, 20)}`;
      await db.sql.unsafe(`create schema ${ident(schema)}`);
      const qualified = `${ident(schema)}.${ident(table)}`;
      await db.sql.unsafe(
        `create table ${qualified} (${ident(key)} int primary key, ${ident('va;lue')} text)`,
      );
      await db.sql`select certyo.enable_tracking(${qualified}::regclass)`;
      await db.sql`select certyo.enable_tracking(${qualified}::regclass)`; // idempotent
      await db.sql.unsafe(
        `insert into ${qualified} values (1, 'x'); update ${qualified} set ${ident('va;lue')} = 'y'`,
      );
      await db.sql.unsafe(`update ${qualified} set certyo_anchor_status = 'anchored'`);
      await db.sql.unsafe(`delete from ${qualified}`);
      const rows = await changes(`${schema}.${table}`);
      assert.deepEqual(
        rows.map((r) => [r.op, r.record_id]),
        [
          ['I', '1'],
          ['U', '1'],
          ['D', '1'],
        ],
      );
      assert.equal(rows[1]!.record, `{${JSON.stringify(key)}:1,"va;lue":"y"}`);
    });
  }

  test('composite keys are encoded as a JSON array of the key texts, in key order', async () => {
    await db.sql`create table stock (warehouse text not null, sku int not null, qty int, primary key (sku, warehouse))`;
    await db.sql`select certyo.enable_tracking('stock')`;
    await db.sql`insert into stock values ('EU "west"', 42, 1)`;
    const [row] = await changes('public.stock');
    assert.equal(row!.record_id, '["42","EU \\"west\\""]');
  });

  test('a table without a primary key is refused with a hint, and accepted with key_columns', async () => {
    await db.sql`create table logs (code text not null, at timestamptz not null, msg text)`;
    await assert.rejects(
      db.sql`select certyo.enable_tracking('logs')`,
      (err: Error & { code: string; hint: string }) => {
        assert.equal(err.code, '42P10');
        assert.match(err.message, /has no primary key/);
        assert.match(err.hint, /key_columns/);
        return true;
      },
    );
    await assert.rejects(
      db.sql`select certyo.enable_tracking('logs', key_columns => '{msg}')`,
      /may be NULL/,
    );
    await assert.rejects(db.sql`select certyo.enable_tracking('logs', key_columns => '{nope}')`, /not found/);
    await db.sql`select certyo.enable_tracking('logs', key_columns => '{code,at}')`;
    await db.sql`insert into logs values ('E1', '2024-01-01 00:00:00+00', 'boom')`;
    const [row] = await changes('public.logs');
    assert.equal(row!.record_id, '["E1","2024-01-01T00:00:00+00:00"]');
  });

  test('bad options are refused with clear errors', async () => {
    await db.sql`create table opts (id int primary key, a text)`;
    await assert.rejects(
      db.sql`select certyo.enable_tracking('opts', operations => '{insert,merge}')`,
      /operations/,
    );
    await assert.rejects(db.sql`select certyo.enable_tracking('opts', operations => '{}')`, /operations/);
    await assert.rejects(
      db.sql`select certyo.enable_tracking('opts', exclude_columns => '{id}')`,
      /cannot exclude/,
    );
    await assert.rejects(
      db.sql`select certyo.enable_tracking('opts', exclude_columns => '{zz}')`,
      /cannot exclude/,
    );
    await db.sql`create table unindexed (a int not null, b text)`;
    await assert.rejects(
      db.sql`select certyo.enable_tracking('unindexed', key_columns => '{a}', backfill => true)`,
      /backfill of public.unindexed needs a btree index on its key columns \{a\}/,
    );
    await assert.rejects(db.sql`select certyo.backfill('unindexed')`, /unindexed is not tracked/);
    await db.sql`create table typed (id int primary key, certyo_record_hash int)`;
    await assert.rejects(db.sql`select certyo.enable_tracking('typed')`, /certyo_record_hash is integer/);
    await db.sql`create view opts_v as select * from opts`;
    await assert.rejects(db.sql`select certyo.enable_tracking('opts_v')`, /not a table/);
  });

  test('partitioned tables: changes are attributed to the parent; direct writes to partitions too', async () => {
    await db.sql.unsafe(`
      create table events (id bigint not null, region text not null, body text, primary key (id, region))
        partition by list (region);
      create table events_eu partition of events for values in ('eu');
      create table events_us partition of events for values in ('us');
      select certyo.enable_tracking('events', key_columns => '{id}');
      insert into events values (1, 'eu', 'a'), (2, 'us', 'b');
      insert into events_us values (3, 'us', 'c');
      update events set region = 'us' where id = 1;
    `);
    await assert.rejects(db.sql`select certyo.enable_tracking('events_eu')`, /is a partition/);
    await assert.rejects(db.sql`truncate events_eu`, /refused/);
    const rows = await changes('public.events');
    const last = rows.filter((r) => r.record_id === '1').at(-1)!;
    assert.deepEqual(
      rows.slice(0, 3).map((r) => [r.op, r.record_id]),
      [
        ['I', '1'],
        ['I', '2'],
        ['I', '3'],
      ],
    );
    // A row moving between partitions keeps its identity and its last image is the moved row.
    assert.equal(last.record, '{"id":1,"region":"us","body":"a"}');
  });

  test('DDL after enable: added, dropped and renamed columns keep capture working', async () => {
    await db.sql`create table evolving (id int primary key, a text, b text)`;
    await db.sql`select certyo.enable_tracking('evolving')`;
    await db.sql`alter table evolving add column c int default 5`;
    await db.sql`alter table evolving drop column b`;
    await db.sql`insert into evolving (id, a) values (1, 'x')`;
    await db.sql`alter table evolving rename column id to ident`;
    await db.sql`insert into evolving (ident, a) values (2, 'y')`; // key renamed: slow path, same record ids
    await db.sql`select certyo.enable_tracking('evolving')`; // restores the fast path
    await db.sql`insert into evolving (ident, a) values (3, 'z')`;
    const rows = await changes('public.evolving');
    assert.deepEqual(
      rows.map((r) => [r.record_id, r.record]),
      [
        ['1', '{"id":1,"a":"x","c":5}'],
        ['2', '{"ident":2,"a":"y","c":5}'],
        ['3', '{"ident":3,"a":"z","c":5}'],
      ],
    );
  });

  test('DROP TABLE of a tracked table keeps its pending changes deliverable', async () => {
    await db.sql`create table doomed (id int primary key)`;
    await db.sql`select certyo.enable_tracking('doomed')`;
    await db.sql`insert into doomed values (1)`;
    await db.sql`drop table doomed`;
    const rows = await changes('public.doomed');
    assert.equal(rows.length, 1);
  });
});
