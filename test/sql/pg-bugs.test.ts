// PostgreSQL bugs that capture must never trigger, each kept as its minimal
// reproduction in test/sql/pg-bugs/. Capture is tried on the conditions of
// each reproduction with a sentinel session open, which a backend crash would
// end (the postmaster restarts every session). The reproduction itself runs
// on a private server of the run's major, when the run's server is embedded.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import postgres from 'postgres';
import { startEmbedded } from '../../relay/src/embedded.js';
import { paths } from '../../relay/src/paths.js';
import { freshDatabase, type TestDb } from '../harness/db.js';
import { openSentinel } from '../harness/sentinel.js';
import { until } from '../harness/wait.js';

let db: TestDb;
before(async () => {
  db = await freshDatabase();
});
after(async () => {
  await db.close();
});

describe('PostgreSQL 13-15 crash on a PL/pgSQL assignment to a field holding a missing value', () => {
  test('capture survives it: rows older than the status columns, concurrent updates, an earlier trigger returning OLD', async () => {
    // A table tracked by an earlier certyo: its status columns were added, with
    // certyo_anchor_status's constant default, after its rows were written.
    await db.sql.unsafe(`
      create table legacy (id int primary key, v int not null);
      insert into legacy select g, 0 from generate_series(1, 1000) g;
      alter table legacy add column certyo_record_hash text, add column certyo_anchor_status text default 'pending',
          add column certyo_verified_at timestamptz, add column certyo_record_version bigint;
      select certyo.enable_tracking('legacy');
      -- Fires before certyo_before (names in order): hands OLD on for even ids.
      create function keep_even() returns trigger language plpgsql as $$
      begin
          if old.id % 2 = 0 then return old; end if;
          return new;
      end $$;
      create trigger a_keep_even before update on legacy for each row execute function keep_even();`);
    const sentinel = await openSentinel(db.url);
    // 8 sessions on 40 rows none of which has been rewritten yet (so some
    // updates recheck a row another session just changed), then every row at once.
    const updated = new Map<number, number>();
    await Promise.all(
      Array.from({ length: 8 }, async (_, c) => {
        const s = postgres(db.url, { max: 1, onnotice: () => {} });
        for (let i = 0; i < 40; i++) {
          const id = 1 + ((c * 7 + i * 13) % 40);
          await s`update legacy set v = v + 1 where id = ${id}`;
          if (id % 2 === 1) updated.set(id, (updated.get(id) ?? 0) + 1);
        }
        await s.end();
      }),
    );
    await db.sql`update legacy set v = v + 1`;
    await db.sql`update legacy set certyo_anchor_status = 'submitted' where id <= 10`; // a write-back (owner)
    await db.sql`update legacy set v = v`; // no change
    await sentinel.assertNoCrash();

    const [o] =
      await db.sql`select count(*)::int as n, count(*) filter (where op <> 'U')::int as other from certyo.outbox`;
    const concurrent = [...updated.values()].reduce((a, b) => a + b, 0);
    assert.deepEqual(o, { n: concurrent + 500, other: 0 }, 'one change per update of an odd row');
    const rows = await db.sql`
      select l.id, l.v, l.certyo_anchor_status as s, l.certyo_record_version = (
                 select max(x.id) from certyo.outbox x where x.record_id = l.id::text) as latest
      from legacy l order by l.id`;
    for (const r of rows) {
      const id = r.id as number;
      const odd = id % 2 === 1;
      assert.equal(r.v, odd ? 1 + (updated.get(id) ?? 0) : 0, `row ${id}'s value`);
      assert.equal(r.s, odd ? (id <= 10 ? 'submitted' : 'pending') : 'pending', `row ${id}'s status`);
      assert.equal(r.latest, odd ? true : null, `row ${id}'s version`);
    }
  });

  test('enable_tracking stores no missing value: rows already there read a NULL status, new rows pending', async () => {
    await db.sql`create table existing (id int primary key, name text)`;
    await db.sql`insert into existing select g, 'n' || g from generate_series(1, 5) g`;
    await db.sql`select certyo.enable_tracking('existing')`;
    const missing = await db.sql`select attname from pg_attribute
                                 where attrelid = 'existing'::regclass and attname like 'certyo%' and atthasmissing`;
    assert.deepEqual([...missing], []);
    await db.sql`insert into existing values (6, 'n6')`;
    const rows =
      await db.sql`select id, certyo_anchor_status as s from existing where id in (1, 6) order by id`;
    assert.deepEqual(
      rows.map((r) => [r.id, r.s]),
      [
        [1, null],
        [6, 'pending'],
      ],
    );
  });

  const embedded = Number(process.env.CERTYO_TEST_EMBEDDED || 0);
  test(
    'the reproduction crashes PostgreSQL 13-15 and not 16 on (on a private server)',
    {
      skip: embedded
        ? false
        : 'needs the embedded binaries of the server under test (run without DATABASE_URL)',
    },
    async () => {
      let log = '';
      const server = await startEmbedded({
        major: embedded,
        log: (l) => {
          log += l;
        },
      });
      const sql = postgres(server.adminUrl, { max: 1, onnotice: () => {} });
      try {
        const repro = readFileSync(
          `${paths.root}test/sql/pg-bugs/missing-value-field-assignment.sql`,
          'utf8',
        );
        const outcome = await sql.unsafe(repro).then(
          () => 'survived',
          (err: Error & { code?: string }) => err.code ?? err.message,
        );
        if (embedded <= 15) {
          assert.notEqual(outcome, 'survived');
          await until(() => log.includes('terminated by signal 11'), { describe: () => log.slice(-2000) });
        } else {
          assert.equal(outcome, 'survived');
        }
      } finally {
        await sql.end({ timeout: 1 });
        await server.stop();
      }
    },
  );
});
