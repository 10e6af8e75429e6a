// Workloads we did not write, on a few hot rows of tracked tables, while two
// relay processes deliver (one SIGKILLed midway, another started): 8 clients
// mixing UPDATE, INSERT ... ON CONFLICT DO UPDATE, MERGE (PostgreSQL 15 on),
// DELETE and re-insert of the same key, multi-row updates, rolled-back
// savepoints and transactions, with an ADD COLUMN ... DEFAULT in the middle;
// the clients' sessions in four kinds of output settings (UTC; a zone of
// its own; a zone and more; settings that render as UTC does);
// each client ends by upserting and deleting one key of each table, so that
// key ends deleted whatever the interleaving.
// The rows were written before tracking, one table by an earlier release
// (status columns with a stored missing value: the PostgreSQL 13-15 crash's
// condition). Ends with the crash check (a sentinel session opened before the
// workload), the drain, nothing lost in per-record order, and the final
// state: each row is its last delivered version, each deleted key's last
// delivered change is a delete.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Sql } from 'postgres';
import { type LocalCertyo, startLocalCertyo } from '../../relay/src/local-certyo/server.js';
import type { Rand } from '../harness/clients.js';
import { freshDatabase, type TestDb } from '../harness/db.js';
import { assertNothingLost } from '../harness/delivery.js';
import { assertFinalState } from '../harness/final-state.js';
import { assertDeliveredAsRendered, keepRenderings } from '../harness/rendered.js';
import {
  drained,
  PG_MAJOR,
  runWorkload,
  STRESS_KEY,
  STRESS_SCALE,
  stressRelays,
} from '../harness/workload-env.js';

let db: TestDb;
let api: LocalCertyo;
const relays = stressRelays(
  () => db.url,
  () => api,
);
const HOT = 6; // keys 1..6 are hot; upserts and MERGE also bring 7 and 8 in and out
const hasMerge = PG_MAJOR >= 15;
/** The clients' session settings, in turn: capture pins none, the zone alone, the zone and more, none. */
const SESSIONS: Record<string, string>[] = [
  {},
  { TimeZone: 'Europe/Berlin' },
  { TimeZone: 'America/Los_Angeles', extra_float_digits: '0', IntervalStyle: 'iso_8601' },
  { TimeZone: 'GMT', extra_float_digits: '3', DateStyle: 'ISO, DMY' },
];
/** The key of each table every client upserts and then deletes last. */
const ENDING = { hot: HOT + 1, pair: ['US', 3] as const };

before(async () => {
  db = await freshDatabase();
  api = await startLocalCertyo({ keys: { [STRESS_KEY]: 'acme' }, flushMs: 50, anchorMs: 10 });
  await db.sql.unsafe(`
    create table hot (id int primary key, v bigint not null, note text, doc json, at timestamptz, f double precision);
    create table legacy_hot (like hot including all);
    create table pair (region text, id int, qty int not null, primary key (region, id));
    insert into hot select g, 0, 'old', '{"a":1,"a":2}', '2026-06-01 12:00+02', 0.1 from generate_series(1, ${HOT}) g;
    insert into legacy_hot select * from hot;
    insert into pair select r, g, 0 from unnest(array['EU', 'US']) r, generate_series(1, 3) g;
    -- As an earlier release tracked tables: status columns added with the default stored.
    alter table legacy_hot add column certyo_record_hash text, add column certyo_anchor_status text default 'pending',
        add column certyo_verified_at timestamptz, add column certyo_record_version bigint;
    select certyo.enable_tracking(t, backfill => true) from unnest(array['hot', 'legacy_hot', 'pair']::regclass[]) t;`);
  await keepRenderings(db.sql, ['hot', 'legacy_hot']);
});
after(async () => {
  relays.killAll();
  await api.close();
  await db.close();
});

/** One random operation on table t (hot or legacy_hot), keyed by id. */
async function keyed(sql: Sql, t: string, rand: Rand) {
  const k = rand.int(1, rand.next() < 0.9 ? HOT : HOT + 2);
  const op = rand.int(0, hasMerge ? 10 : 9);
  switch (op) {
    case 0:
    case 1:
      // A timestamp and a float: their text depends on the session's settings.
      await sql.unsafe(`update ${t} set v = v + 1, note = $2, at = now(), f = (v + 1) / 3.0 where id = $1`, [
        k,
        `u${rand.int(0, 9)}`,
      ]);
      break;
    case 2:
    case 3:
      await sql.unsafe(
        `insert into ${t} as x (id, v, note) values ($1, 1, 'upsert')
         on conflict (id) do update set v = x.v + 1, note = excluded.note`,
        [k],
      );
      break;
    case 4: // DELETE then re-insert of the same key, in one transaction
      await sql.begin(async (tx) => {
        await tx.unsafe(`delete from ${t} where id = $1`, [k]);
        await tx.unsafe(
          `insert into ${t} (id, v, note) values ($1, 0, 'again') on conflict (id) do nothing`,
          [k],
        );
      });
      break;
    case 5:
      if (rand.next() < 0.3) await sql.unsafe(`delete from ${t} where id = $1`, [k]);
      else await sql.unsafe(`update ${t} set v = v where id = $1`, [k]); // not a change
      break;
    case 6: // a rolled-back savepoint inside a committed transaction
      await sql.begin(async (tx) => {
        await tx.unsafe(`update ${t} set v = v + 1 where id = $1`, [k]);
        await tx
          .savepoint(async (sp) => {
            await sp.unsafe(`update ${t} set v = v + 1000, note = 'never' where id = $1`, [rand.int(1, HOT)]);
            await sp.unsafe(`delete from ${t} where id = $1`, [rand.int(1, HOT)]);
            throw new RollbackSavepoint();
          })
          .catch((err) => {
            if (!(err instanceof RollbackSavepoint)) throw err;
          });
        await tx.unsafe(`update ${t} set note = 'after savepoint' where id = $1`, [k]);
      });
      break;
    case 7: // a whole transaction rolled back
      await sql
        .begin(async (tx) => {
          await tx.unsafe(`update ${t} set v = -1, note = 'rolled back' where id = $1`, [k]);
          await tx.unsafe(`insert into ${t} (id, v) values ($1, -1) on conflict (id) do nothing`, [100 + k]);
          throw new RollbackSavepoint();
        })
        .catch((err) => {
          if (!(err instanceof RollbackSavepoint)) throw err;
        });
      break;
    case 8: // several hot rows in one statement (may deadlock with another: contention)
      await sql.unsafe(`update ${t} set v = v + 1 where id = any($1::int[])`, [
        `{${[rand.int(1, HOT), rand.int(1, HOT), rand.int(1, HOT)].join(',')}}`,
      ]);
      break;
    case 9:
      await sql.unsafe(`update ${t} set doc = $2::json where id = $1`, [
        k,
        `{"n": ${rand.int(0, 99)}.50, "n": 1e3}`,
      ]);
      break;
    case 10:
      await sql.unsafe(
        `merge into ${t} x using (select $1::int as id) s on x.id = s.id
         when matched and x.v % 7 = 3 then delete
         when matched then update set v = x.v + 1, note = 'merge'
         when not matched then insert (id, v, note) values (s.id, 1, 'merge')`,
        [k],
      );
      break;
  }
}

class RollbackSavepoint extends Error {}

describe('hot rows under 8 clients, relays running', () => {
  test(`mixed writes${hasMerge ? '' : ' (no MERGE: PostgreSQL 13 and 14 have none)'}: no crash, final state is the last delivered version`, async (t) => {
    if (!hasMerge) t.diagnostic(`PostgreSQL ${PG_MAJOR} has no MERGE: the workload runs without it`);
    const outcome = await runWorkload(
      db.url,
      relays,
      {
        clients: 8,
        iterations: 150 * STRESS_SCALE,
        // Capture renders every payload as a UTC session does, whatever the writer's.
        settings: (c) => SESSIONS[c % SESSIONS.length]!,
        midway: {
          after: 75 * STRESS_SCALE,
          run: async (sql) => {
            // DDL in the middle of the run; and one relay dies, another takes over.
            await sql`alter table hot add column extra text default 'x'`;
            await sql`alter table legacy_hot add column tag text default 'tagged'`;
            relays.spawned[0]!.child.kill('SIGKILL');
            relays.spawn();
          },
        },
        // The last write to each ending key is some client's delete: its client's
        // upsert, the last one, committed before that delete's snapshot.
        finish: async (sql) => {
          for (const t of ['hot', 'legacy_hot']) {
            await sql.unsafe(
              `insert into ${t} as x (id, v, note) values ($1, 1, 'ending')
               on conflict (id) do update set v = x.v + 1, note = excluded.note`,
              [ENDING.hot],
            );
            await sql.unsafe(`delete from ${t} where id = $1`, [ENDING.hot]);
          }
          const [region, id] = ENDING.pair;
          await sql`insert into pair as x (region, id, qty) values (${region}, ${id}, 1)
                      on conflict (region, id) do update set qty = x.qty + 1`;
          await sql`delete from pair where region = ${region} and id = ${id}`;
        },
      },
      async (sql, rand) => {
        const r = rand.next();
        if (r < 0.4) await keyed(sql, 'hot', rand);
        else if (r < 0.8) await keyed(sql, 'legacy_hot', rand);
        else if (r < 0.9) {
          await sql`insert into pair as x (region, id, qty) values (${rand.pick(['EU', 'US'])}, ${rand.int(1, 3)}, 1)
                      on conflict (region, id) do update set qty = x.qty + 1`;
        } else {
          await sql`delete from pair where region = ${rand.pick(['EU', 'US'])} and id = ${rand.int(1, 3)}`;
        }
      },
    );
    t.diagnostic(
      `seed ${outcome.seed}: ${outcome.committed} transactions committed; contention: ${JSON.stringify(outcome.contention)}`,
    );
    assert.ok(
      outcome.committed >= 8 * 100 * STRESS_SCALE,
      `only ${outcome.committed} transactions committed`,
    );
    // Rows not changed since the ADD COLUMN were delivered without it (how the sweep
    // judges that is the schema-evolution work): change each once more.
    await db.sql`update hot set v = v + 1`;
    await db.sql`update legacy_hot set v = v + 1`;
    await drained(db.sql, relays);
    await assertNothingLost(db.sql, api, 900 * STRESS_SCALE);
    const states = [];
    for (const table of ['hot', 'legacy_hot', 'pair']) {
      const state = await assertFinalState(db.sql, api, table);
      states.push(state);
      // Not vacuous: at least the ending key was checked as a delivered delete.
      assert.ok(state.deleted > 0, `${table}: no key ended deleted (seed ${outcome.seed})`);
    }
    t.diagnostic(`final state: ${JSON.stringify(states)}`);
    // Every payload as a UTC session renders it, whichever client's session wrote it.
    for (const table of ['hot', 'legacy_hot']) {
      const checked = await assertDeliveredAsRendered(db.sql, api, table);
      assert.ok(
        checked >= 100 * STRESS_SCALE,
        `${table}: only ${checked} deliveries compared with their rendering`,
      );
    }
  });
});
