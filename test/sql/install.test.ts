// Install: migrate twice changes nothing; the committed psql bundle is current
// and installs exactly what `certyo-pg migrate` installs.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import postgres, { type Sql } from 'postgres';
import { installSqlObjects, migrate, psqlBundle, splitMigration } from '../../relay/src/install.js';
import { paths } from '../../relay/src/paths.js';
import { adminUrl, freshDatabase, type TestDb, withDatabase } from '../harness/db.js';

/** Everything certyo installs, as comparable text (no oids, no timestamps). */
async function snapshot(sql: Sql): Promise<string> {
  const parts = await sql`
    select 'fn ' || p.oid::regprocedure::text || ' ' || coalesce(array_to_string(p.proacl, ','), '') || E'\n'
           || pg_get_functiondef(p.oid) as item
    from pg_proc p join pg_namespace n on n.oid = p.pronamespace where n.nspname = 'certyo'
    union all
    select 'rel ' || c.relname || ' ' || c.relkind::text || ' ' || coalesce(array_to_string(c.relacl, ','), '')
           || ' ' || coalesce(array_to_string(c.reloptions, ','), '')
           || coalesce(' ' || pg_get_viewdef(c.oid), '')
           || coalesce(' ' || obj_description(c.oid, 'pg_class'), '')
    from pg_class c join pg_namespace n on n.oid = c.relnamespace where n.nspname = 'certyo'
    union all
    select 'col ' || c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod) || ' '
           || a.attnotnull || ' ' || coalesce(pg_get_expr(d.adbin, d.adrelid), '') || ' stat ' || a.attstattarget
    from pg_attribute a join pg_class c on c.oid = a.attrelid join pg_namespace n on n.oid = c.relnamespace
    left join pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum
    where n.nspname = 'certyo' and a.attnum > 0 and not a.attisdropped
    union all
    select 'idx ' || pg_get_indexdef(i.indexrelid)
    from pg_index i join pg_class c on c.oid = i.indrelid join pg_namespace n on n.oid = c.relnamespace
    where n.nspname = 'certyo'
    union all
    select 'schema ' || coalesce(array_to_string(nspacl, ','), '') from pg_namespace where nspname = 'certyo'
    union all
    select 'migration ' || name from certyo.pgmigrations
    order by 1`;
  return parts.map((p) => p.item).join('\n');
}

let db: TestDb;
before(async () => {
  db = await freshDatabase();
});
after(() => db.close());

describe('install', () => {
  test('migrate on an installed database changes nothing', async () => {
    const first = await snapshot(db.sql);
    const applied = await migrate(db.sql, db.url);
    assert.deepEqual(applied, []);
    assert.equal(await snapshot(db.sql), first);
    assert.match(first, /fn certyo\.enable_tracking/);
  });

  test('ANALYZE of the outbox samples 3,000 rows and skips payloads', async () => {
    const targets = await db.sql`
      select attname, attstattarget from pg_attribute
      where attrelid = 'certyo.outbox'::regclass and attnum > 0 and not attisdropped order by attnum`;
    assert.ok(targets.length >= 12);
    for (const { attname, attstattarget } of targets)
      assert.equal(attstattarget, attname === 'payload' ? 0 : 10, attname);
    await db.sql.unsafe(`
      create table stat_t (id int primary key, v text);
      select certyo.enable_tracking('stat_t');
      insert into stat_t select g, 'x' from generate_series(1, 100) g;
      analyze certyo.outbox;`);
    const sampled = await db.sql`
      select attname from pg_stats where schemaname = 'certyo' and tablename = 'outbox' order by attname`;
    assert.ok(sampled.some((r) => r.attname === 'record_id'));
    assert.ok(!sampled.some((r) => r.attname === 'payload'));
  });

  test('migration 4 on a live outbox: a change leased before it still holds back its record', async () => {
    const d = await freshDatabase();
    try {
      const { up, down } = splitMigration(
        readFileSync(`${paths.migrations}1763800000004_hot-lease.sql`, 'utf8'),
      );
      await d.sql.unsafe(`
        create table t (id int primary key, v int);
        select certyo.enable_tracking('t');
        insert into t values (1, 1), (2, 1);
      `);
      // Back to migration 3's outbox, with record 1's change leased as its claim did it.
      await d.sql.unsafe(down);
      await d.sql`
        update certyo.outbox set lease_token = '00000000-0000-4000-8000-00000000000a',
               lease_until = now() + interval '1 minute', attempts = 1
        where record_id = '1'`;
      await d.sql`update t set v = 2 where id = 1`;
      await d.sql.unsafe(up);
      await installSqlObjects(d.sql);
      const claimed =
        await d.sql`select record_id from certyo.claim('00000000-0000-4000-8000-00000000000b', 10)`;
      assert.deepEqual(
        claimed.map((r) => r.record_id),
        ['2'],
      );
    } finally {
      await d.close();
    }
  });

  test('the committed psql bundle is what `certyo-pg sql` prints', () => {
    const committed = readFileSync(`${paths.sql}dist/certyo-install.sql`, 'utf8');
    assert.equal(committed, psqlBundle(), 'run `npm run sql:bundle` and commit sql/dist/certyo-install.sql');
  });

  test('psql -1 -f sql/dist/certyo-install.sql installs the same schema, and can run twice', async () => {
    const root = postgres(adminUrl(), { max: 1, onnotice: () => {} });
    const name = `${db.name}_psql`;
    await root.unsafe(`create database ${name}`);
    const url = withDatabase(adminUrl(), name);
    const bundled = postgres(url, { max: 1, onnotice: () => {} });
    try {
      for (let i = 0; i < 2; i++) {
        execFileSync(
          'psql',
          ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-1', '-f', `${paths.sql}dist/certyo-install.sql`, url],
          {
            stdio: ['ignore', 'ignore', 'pipe'],
          },
        );
      }
      const normalise = (s: string) => s.replace(/^migration .*$/gm, '');
      assert.equal(normalise(await snapshot(bundled)), normalise(await snapshot(db.sql)));
      // node-pg-migrate accepts the bundle's bookkeeping: nothing left to apply.
      assert.deepEqual(await migrate(bundled, url), []);
    } finally {
      await bundled.end();
      await root.unsafe(`drop database ${name} with (force)`);
      await root.end();
    }
  });
});
