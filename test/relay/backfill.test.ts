// Backfill end to end, with relay processes and the local Certyo: rows a
// table held before tracking reach Certyo once each, while writers change and
// delete them, through relay kills, for composite keys, quoted names and
// partitioned tables; every row ends anchored and equal to its last
// delivered version.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { promisify } from 'node:util';
import postgres from 'postgres';
import { progressLine } from '../../relay/src/backfill-command.js';
import { freePort } from '../../relay/src/embedded.js';
import { type LocalCertyo, startLocalCertyo } from '../../relay/src/local-certyo/server.js';
import { paths } from '../../relay/src/paths.js';
import { Rand } from '../harness/clients.js';
import { freshDatabase, type TestDb } from '../harness/db.js';
import { assertNothingLost, received } from '../harness/delivery.js';
import { assertFinalState } from '../harness/final-state.js';
import { until } from '../harness/wait.js';
import { drained, STRESS_KEY, stressRelays } from '../harness/workload-env.js';

let db: TestDb;
let api: LocalCertyo;
const relays = stressRelays(
  () => db.url,
  () => api,
);

// Each test on its own database and its own Certyo.
beforeEach(async () => {
  db = await freshDatabase();
  api = await startLocalCertyo({ keys: { [STRESS_KEY]: 'acme' }, flushMs: 50, anchorMs: 10 });
});
afterEach(async () => {
  relays.killAll();
  await api.close();
  await db.close();
});

async function backfillState(table: string) {
  const [b] = await db.sql`select state, rows_done::int from certyo.backfills where table_name = ${table}`;
  return b as { state: string; rows_done: number } | undefined;
}

/** Every row of the table anchored (verification writes it back). */
async function allAnchored(table: string) {
  await until(
    async () =>
      (
        await db.sql.unsafe(
          `select count(*)::int as n from ${table} where certyo_anchor_status is distinct from 'anchored'`,
        )
      )[0]!.n === 0,
    { describe: () => relays.logs() },
  );
}

/** Upserts per record: a backfill sends each row at most once. */
function upsertsPerRecord(collection: string) {
  const n = new Map<string, number>();
  for (const s of api.ledger.all)
    if (s.collection === collection && s.operationType === 'upsert')
      n.set(s.recordId, (n.get(s.recordId) ?? 0) + 1);
  return n;
}

/**
 * Writers on their own connections until stop() says so, each doing at least
 * `min` iterations; contention errors (deadlocks between writers) are counted.
 */
async function writers(
  count: number,
  min: number,
  stop: () => Promise<boolean>,
  iteration: (sql: postgres.Sql, rand: Rand) => Promise<void>,
) {
  let contention = 0;
  await Promise.all(
    Array.from({ length: count }, async (_, c) => {
      const sql = postgres(db.url, { max: 1, onnotice: () => {} });
      const rand = new Rand(Date.now() + c);
      try {
        for (let i = 0; i < min || !(i % 20 === 0 && (await stop())); i++) {
          try {
            await iteration(sql, rand);
          } catch (err) {
            if ((err as { code?: string }).code !== '40P01') throw err;
            contention++;
          }
        }
      } finally {
        await sql.end({ timeout: 1 });
      }
    }),
  );
  return contention;
}

class Rollback extends Error {}

describe('backfill', () => {
  test('20,000 rows backfilled while 2 writers update and delete random rows', async () => {
    await db.sql.unsafe(`
      create table items (id int primary key, v int not null, note text);
      insert into items select g, 0, 'before tracking ' || g from generate_series(1, 20000) g;
      select certyo.enable_tracking('items', backfill => true);`);
    relays.spawn();
    relays.spawn();
    let next = 20_000;
    await writers(
      2,
      300,
      async () => (await backfillState('public.items'))?.state === 'finished',
      async (sql, rand) => {
        const id = rand.int(1, 20_000);
        const op = rand.next();
        const work = sql.begin(async (tx) => {
          if (op < 0.6) await tx`update items set v = v + 1, note = 'live' where id = ${id}`;
          else if (op < 0.75) await tx`delete from items where id = ${id}`;
          else if (op < 0.85) await tx`insert into items values (${++next}, 1, 'new')`;
          else {
            await tx`update items set v = -1, note = 'rolled back' where id = ${id}`;
            throw new Rollback();
          }
        });
        await work.catch((err) => {
          if (!(err instanceof Rollback)) throw err;
        });
      },
    );
    await drained(db.sql, relays);
    await allAnchored('items');
    const final = await assertFinalState(db.sql, api, 'items');
    const [n] = await db.sql`select count(*)::int as rows from items`;
    assert.equal(final.rows, n!.rows, 'every row has a delivered version');
    assert.ok(final.deleted > 0, 'some rows were deleted');
    assert.deepEqual(api.replayMismatches, [], 'an idempotency key was sent with two payloads');
    const upserts = upsertsPerRecord('public.items');
    assert.ok(
      [...upserts.values()].every((c) => c === 1),
      'a row was backfilled twice',
    );
    const b = await backfillState('public.items');
    assert.equal(b?.rows_done, upserts.size);
    // Rows the writers changed before their chunk came are not backfilled: sent by their own change.
    assert.ok(upserts.size < 20_000 && upserts.size > 15_000, `${upserts.size} rows backfilled`);
    await assertNothingLost(db.sql, api, 20_000);
  });

  test('relay SIGKILLed twice during a 50,000-row backfill: completes, each change received once', async () => {
    await db.sql.unsafe(`
      create table big (id int primary key, v int not null, pad text);
      insert into big select g, 0, repeat('x', 40) from generate_series(1, 50000) g;
      select certyo.enable_tracking('big', backfill => true);`);
    let relay = relays.spawn();
    let killed = 0;
    let next = 100_000;
    // Live changes meanwhile: rows of their own (inserted, then updated), so every old row is backfilled.
    await writers(
      1,
      200,
      async () => (await backfillState('public.big'))?.state === 'finished',
      async (sql, rand) => {
        const done = (await backfillState('public.big'))?.rows_done ?? 0;
        if (killed < 2 && done >= (killed + 1) * 15_000) {
          relay.child.kill('SIGKILL');
          await relay.exited;
          killed++;
          relay = relays.spawn();
        }
        if (rand.next() < 0.5 || next === 100_000) await sql`insert into big values (${++next}, 0, 'live')`;
        else await sql`update big set v = v + 1 where id = ${rand.int(100_001, next)}`;
      },
    );
    assert.equal(killed, 2, 'the relay was killed twice during the backfill');
    await drained(db.sql, relays);
    const [b] = await db.sql`select rows_done::int, state from certyo.backfills`;
    assert.deepEqual([b!.state, b!.rows_done], ['finished', 50_000]);
    const [r] = await db.sql`select count(*) filter (where op = 'B')::int as backfilled,
                                    count(*) filter (where op <> 'B')::int as live from certyo.receipt`;
    assert.equal(r!.backfilled, 50_000);
    assert.equal(received(api).size, 50_000 + r!.live, 'distinct changes received: rows plus live changes');
    assert.deepEqual(api.replayMismatches, []);
    assert.ok([...upsertsPerRecord('public.big').values()].every((c) => c === 1));
    await assertNothingLost(db.sql, api, 50_000);
    await assertFinalState(db.sql, api, 'big');
  });

  test('composite keys, quoted identifiers, partitioned tables and insert-only tracking', async () => {
    await db.sql.unsafe(`
      create schema "Sales Dept";
      create table "Sales Dept"."Order ""Lines""" ("Region" text, "line no" int, qty numeric(12, 3), primary key ("Region", "line no"));
      insert into "Sales Dept"."Order ""Lines""" select r, g, g / 7.0 from unnest(array['EU', 'US', 'O''Hare']) r, generate_series(1, 700) g;
      create table events (id bigint, at date, body json, primary key (id, at)) partition by range (at);
      create table events_2025 partition of events for values from ('2025-01-01') to ('2026-01-01');
      create table events_2026 partition of events for values from ('2026-01-01') to ('2027-01-01');
      insert into events select g, date '2025-06-01' + (g % 400), json_build_object('n', g) from generate_series(1, 3000) g;
      create table log (id int primary key, line text);
      insert into log select g, 'line ' || g from generate_series(1, 1500) g;
      select certyo.enable_tracking('"Sales Dept"."Order ""Lines"""', backfill => true);
      select certyo.enable_tracking('events', backfill => true);
      select certyo.enable_tracking('log', operations => '{insert}', backfill => true);`);
    relays.spawn({ CERTYO_BACKFILL_CHUNK: '250' });
    await until(
      async () =>
        (await db.sql`select count(*)::int as n from certyo.backfills where state = 'finished'`)[0]!.n === 3,
      { describe: () => relays.logs() },
    );
    await drained(db.sql, relays);
    for (const table of ['"Sales Dept"."Order ""Lines"""', 'events', 'log']) {
      await allAnchored(table);
      const final = await assertFinalState(db.sql, api, table);
      const [n] = await db.sql.unsafe(`select count(*)::int as n from ${table}`);
      assert.equal(final.rows, n!.n, table);
    }
    const counts = await db.sql`select table_name, rows_done::int from certyo.backfills order by 1`;
    assert.deepEqual(
      counts.map((c) => [c.table_name, c.rows_done]),
      [
        ['"Sales Dept"."Order ""Lines"""', 2100],
        ['public.events', 3000],
        ['public.log', 1500],
      ],
    );
  });

  test('certyo-pg backfill follows it to the end; status and /metrics show it', async () => {
    await db.sql.unsafe(`
      create table items (id int primary key, v text);
      insert into items select g, 'v' || g from generate_series(1, 5000) g;
      select certyo.enable_tracking('items');`);
    const port = await freePort();
    relays.spawn({ CERTYO_HEALTH_PORT: String(port), CERTYO_BACKFILL_CHUNK: '500' });
    const exec = promisify(execFile);
    const cli = (...args: string[]) =>
      exec(process.execPath, [`${paths.root}bin/certyo-pg.js`, ...args], {
        env: { ...process.env, DATABASE_URL: db.url },
      });
    const { stdout } = await cli('backfill', 'items', '--interval-ms', '50');
    const lines = stdout.trim().split('\n');
    assert.match(lines[0]!, /^public\.items: backfill scheduled \(about 5,000 rows\); the relay sends them$/);
    assert.match(lines.at(-1)!, /^public\.items {2}5,000\/5,000 rows \(100%\) {2}finished$/);
    const status = await cli('status');
    assert.match(status.stdout, /backfills:\n {2}public\.items {2}5,000\/5,000 rows \(100%\) {2}finished/);
    await drained(db.sql, relays);
    const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    assert.match(metrics, /^certyo_backfill_rows_done\{table="public\.items"\} 5000$/m);
    assert.match(metrics, /^certyo_backfill_running\{table="public\.items"\} 0$/m);
    assert.match(metrics, /^certyo_backfilled_rows_total 5000$/m);
    // On a terminal: a bar, the rate and the time left.
    assert.equal(
      progressLine(
        {
          table_name: 'public.items',
          state: 'running',
          rows_done: 2500,
          rows_total: 10_000,
          stopped_because: null,
        },
        1250,
        true,
      ),
      'public.items  [######..................]  2,500/10,000 rows (25%)  1,250 rows/s  ETA 6s',
    );
  });
});
