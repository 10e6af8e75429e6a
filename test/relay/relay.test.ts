// The relay against real PostgreSQL and the local Certyo server: nothing lost,
// per-record order, retries, parking, fencing, wake-up, key never logged.
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, afterEach, before, describe, test } from 'node:test';
import postgres, { type ReservedSql, type TransactionSql } from 'postgres';
import { pgArray } from '../../relay/src/db.js';
import { freePort } from '../../relay/src/embedded.js';
import { type LocalCertyo, NO_FAULTS, startLocalCertyo } from '../../relay/src/local-certyo/server.js';
import { freshDatabase, type TestDb } from '../harness/db.js';
import { assertNothingLost } from '../harness/delivery.js';
import { startTestRelay, type TestRelay } from '../harness/relay.js';
import { until, type WaitOptions } from '../harness/wait.js';

const KEY = 'certyo_sk_test_relay_0123456789abcdef';
let db: TestDb;
let api: LocalCertyo;
let logLines: string[] = [];
const running: TestRelay[] = [];

async function startRelay(env: Record<string, string> = {}, key = KEY) {
  const entry = await startTestRelay(
    db.url,
    {
      CERTYO_API_KEY: key,
      CERTYO_TENANT_ID: 'acme',
      CERTYO_BASE_URL: api.url,
      CERTYO_BACKOFF_BASE_MS: '5',
      CERTYO_BACKOFF_MAX_MS: '200',
      CERTYO_POLL_INTERVAL_MS: '60000', // only a NOTIFY can wake it quickly
      LOG_LEVEL: 'debug',
      ...env,
    },
    (line) => logLines.push(line),
  );
  running.push(entry);
  return entry;
}

const drained = (opts: WaitOptions = {}) =>
  until(
    async () =>
      (await db.sql`select count(*)::int as n from certyo.outbox where parked_at is null`)[0]!.n === 0,
    { describe: () => logLines.slice(-30).join(''), ...opts },
  );

/**
 * A writer's transaction spans a relay's start and registration (a relay that
 * polls every 10 minutes); its change must arrive once it commits, not at the poll.
 */
async function deliveredAcrossRegistration(
  beforeRegistration: (writer: ReservedSql) => Promise<unknown>,
  afterRegistration: (writer: ReservedSql) => Promise<unknown>,
) {
  const writer = await db.sql.reserve();
  try {
    await beforeRegistration(writer);
    await startRelay({ CERTYO_POLL_INTERVAL_MS: '600000', CERTYO_VERIFY: 'off' });
    await until(async () => (await db.sql`select count(*)::int as n from certyo.waiting_relay`)[0]!.n > 0);
    await afterRegistration(writer);
    await writer`commit`;
  } finally {
    writer.release();
  }
  await drained({ limitMs: 60_000 });
  await assertNothingLost(db.sql, api, 1);
}

before(async () => {
  db = await freshDatabase();
  await db.sql`create table products (id int primary key, sku text not null, price numeric(10,2))`;
  await db.sql`select certyo.enable_tracking('products')`;
  api = await startLocalCertyo({ keys: { [KEY]: 'acme' }, flushRecords: 1000, flushMs: 50, anchorMs: 10 });
});
afterEach(async () => {
  for (const r of running.splice(0)) await r.close();
  // Every loop noticed the stop (none slept on, nor waited for the deadline).
  assert.ok(!logLines.some((l) => l.includes('shutdown deadline reached')), 'stopped before the deadline');
  Object.assign(api.faults, NO_FAULTS);
  await db.sql`delete from products`; // first: its DELETEs are captured too
  await db.sql`delete from certyo.outbox`;
  await db.sql`delete from certyo.receipt`;
  api.requests.length = 0;
  logLines = [];
});
after(async () => {
  await api.close();
  await db.close();
});

describe('relay', () => {
  test('a backlog with a hot record is delivered completely, in order, and rows are marked submitted', async () => {
    await db.sql`insert into products select g, 'sku-' || g, g from generate_series(1, 1500) g`;
    for (let i = 0; i < 40; i++) await db.sql`update products set price = ${i} where id = 7`;
    await db.sql`delete from products where id between 100 and 150`;
    await startRelay({ CERTYO_BATCH_SIZE: '300', CERTYO_CONCURRENCY: '3' });
    await startRelay({ CERTYO_BATCH_SIZE: '300', CERTYO_CONCURRENCY: '2' });
    await drained();
    await assertNothingLost(db.sql, api, 1591);
    const [row] =
      await db.sql`select certyo_anchor_status as s, certyo_record_hash as h, certyo_record_version::text as v from products where id = 7`;
    assert.equal(row!.s, 'submitted');
    const snap = api.ledger.all.find((s) => s.recordId === '7' && s.recordVersion === row!.v);
    assert.equal(row!.h, snap?.recordHash, 'the row carries the hash Certyo returned for its version');
    // Write-back produced no change records: nothing new to deliver.
    const [left] = await db.sql`select count(*)::int as n from certyo.outbox`;
    assert.equal(left!.n, 0);
  });

  test('a batch of changes to two tables marks the rows of each, with their own hashes', async () => {
    await db.sql`create table orders (id int primary key, total numeric(10,2))`;
    await db.sql`select certyo.enable_tracking('orders')`;
    try {
      for (let i = 1; i <= 20; i++) {
        await db.sql`insert into products values (${i}, ${`sku-${i}`}, ${i})`;
        await db.sql`insert into orders values (${i}, ${i * 2})`;
      }
      await db.sql`delete from products where id = 20`; // a delete in the batch: no row to mark
      await startRelay();
      await drained();
      assert.ok(
        api.requests.some((r) => new Set(r.records.map((x) => x.recordId)).size < r.records.length),
        'one request carried both tables (record ids repeat across them)',
      );
      for (const table of ['products', 'orders']) {
        const rows = await db.sql`select id::text, certyo_anchor_status as s, certyo_record_hash as h
                                  from ${db.sql(table)} order by id`;
        assert.equal(rows.length, table === 'products' ? 19 : 20);
        for (const row of rows) {
          const snap = api.ledger.all.find(
            (x) => x.collection === `public.${table}` && x.recordId === row.id,
          );
          assert.equal(row.s, 'submitted', `${table} ${row.id}`);
          assert.equal(row.h, snap?.recordHash, `${table} ${row.id} carries its own hash`);
        }
      }
    } finally {
      await db.sql`drop table orders`;
    }
  });

  test('array literals (acknowledgements, park reasons) reach PostgreSQL exactly', async () => {
    const values = [
      'plain',
      'a "quoted" reason',
      'back\\slash\\',
      '{braces},commas',
      '',
      ' spaced ',
      'NULL',
      'Ünï 😀',
      null,
      42,
    ];
    // As JSON text: postgres.js would read a NULL element back as the string 'NULL'.
    const [row] = await db.sql`select array_to_json(${pgArray(values)}::text[])::text as a`;
    assert.deepEqual(
      JSON.parse(row!.a),
      values.map((v) => (v === null ? null : String(v))),
    );
  });

  test('the request body maps fields as DESIGN.md says and keeps numbers exact', async () => {
    await db.sql`alter table products add column big bigint`;
    await db.sql`insert into products (id, sku, price, big) values (1, 'x', 1.10, 9007199254740993)`;
    await startRelay();
    await drained();
    const snap = api.ledger.all.findLast((s) => s.recordId === '1')!;
    assert.equal(snap.collection, 'public.products');
    assert.equal(snap.database, db.name);
    assert.equal(snap.operationType, 'insert');
    const { createHash } = await import('node:crypto');
    const canonical = '{"big":9007199254740993,"id":1,"price":1.10,"sku":"x"}';
    assert.equal(snap.recordHash, createHash('sha256').update(canonical).digest('hex'));
    await db.sql`alter table products drop column big`;
  });

  test('an idle relay is woken by NOTIFY, not by its (60 s) poll', async () => {
    const r = await startRelay();
    await db.sql`insert into products values (2, 'a', 1)`;
    await api.waitFor((x) => x.records.some((y) => y.recordId === '2'));
    await drained();
    for (let i = 3; i < 6; i++) {
      await db.sql`insert into products values (${i}, 'a', 1)`;
      await api.waitFor((x) => x.records.some((y) => y.recordId === String(i)));
    }
    await drained();
    // The relay counts an acknowledgement once its commit returns: a moment after the outbox shows it.
    await until(() => r.relay.metrics.delivered >= 4, { describe: () => logLines.slice(-30).join('') });
  });

  test('CERTYO_LINGER_MS: changes committed while a busy stream lingers go in one batch', async () => {
    await startRelay({ CERTYO_LINGER_MS: '1000', CERTYO_VERIFY: 'off' });
    await db.sql`insert into products values (1, 'a', 1)`; // an idle relay: the NOTIFY wakes it
    const { arrivedMs: arrivedAt } = await api.waitFor((x) => x.records.some((y) => y.recordId === '1'));
    assert.equal(api.requests.length, 1);
    // Twenty commits of their own while the loop lingers after that batch (a second):
    // without the linger, it claims again at once and they go in several batches.
    for (let i = 2; i <= 21; i++) await db.sql`insert into products values (${i}, 'a', 1)`;
    const took = performance.now() - arrivedAt;
    assert.ok(took < 1000, `the twenty commits took ${Math.round(took)} ms, longer than the linger`);
    await drained();
    assert.deepEqual(
      api.requests.slice(1).map((r) => r.records.length),
      [20],
      'one batch after the linger',
    );
    await assertNothingLost(db.sql, api, 21);
  });

  // Keeping up, a batch's acknowledgement goes with the next claim (certyo.ack_and_claim);
  // lingering (or in a backlog) it runs in the background while the loop claims again.
  for (const [mode, env, waiting, claiming] of [
    ['acknowledged with the next claim', {}, 'certyo.ack_and_claim(', 'certyo.ack_and_claim('],
    ['acknowledged in the background (lingering)', { CERTYO_LINGER_MS: '1' }, 'certyo.ack(', 'certyo.claim('],
  ] as const) {
    test(`a change held back by its record's change in flight goes once that one is acknowledged, ${mode} (no NOTIFY, no poll)`, async () => {
      // The first change's acknowledgement waits on a lock. In the background, the loop
      // meanwhile finds the second change held back, registers and goes to sleep: only the
      // acknowledgement's commit can send it back to claim. With the next claim, that claim
      // waits too, and finds the second change once the acknowledgement is done.
      // The first change is a delete: acknowledging it writes no status back, so no write
      // to the table sends a NOTIFY either. Verification off: its loops would queue on the lock.
      await startRelay({ CERTYO_POLL_INTERVAL_MS: '600000', CERTYO_VERIFY: 'off', ...env });
      await db.sql`insert into products values (1, 'a', 1)`;
      await drained();
      const locker = await db.sql.reserve();
      try {
        await locker`begin`;
        await locker`lock table certyo.receipt in share mode`;
        api.faults.latencyMs = 300;
        const inFlight = api.nextArrival();
        await db.sql`delete from products where id = 1`;
        await inFlight;
        api.faults.latencyMs = 0;
        await db.sql`insert into products values (1, 'b', 2)`; // no relay registered: no NOTIFY
        const background = waiting !== claiming;
        await until(
          async () =>
            (
              await db.sql`
                select (not ${background} or exists (select from certyo.waiting_relay))
                   and exists (select from pg_stat_activity
                               where wait_event_type = 'Lock' and query like ${`%${waiting}%`})
                   and (not ${background}
                        or not exists (select from pg_stat_activity
                                       where state = 'active' and query like ${`%${claiming}%`}
                                         and pid <> pg_backend_pid())) as asleep`
            )[0]!.asleep,
          { describe: () => logLines.slice(-30).join('') },
        );
        await locker`commit`;
      } finally {
        locker.release();
      }
      await until(async () => (await db.sql`select count(*)::int as n from certyo.outbox`)[0]!.n === 0, {
        limitMs: 30_000,
        describe: () => logLines.slice(-30).join(''),
      });
      await assertNothingLost(db.sql, api, 3);
    });
  }

  test('429 storms and 503s: retried with the same keys, nothing lost', async () => {
    // Per request: 429 at 40%, else 503 at 30%, else handled and then dropped at 50% (about 1 in 5
    // requests is dropped, so a run without a drop is practically impossible).
    Object.assign(api.faults, { rate429: 0.4, retryAfterSeconds: 0, rate503: 0.3, dropRate: 0.5 });
    await db.sql`insert into products select g, 's', g from generate_series(1, 2000) g`;
    await db.sql`update products set price = price + 1 where id % 3 = 0`;
    await startRelay({ CERTYO_BATCH_SIZE: '100', CERTYO_CONCURRENCY: '3' });
    await drained();
    await assertNothingLost(db.sql, api, 2666);
    assert.ok(api.requests.some((r) => r.outcome === '429'));
    assert.ok(api.requests.some((r) => r.outcome === 'dropped'));
    assert.ok(
      api.requests.some((r) => r.records.some((x) => x.replayed)),
      'a dropped response was resent and replayed',
    );
  });

  test('Certyo down (connections refused), then back: backoff while down, one request per batch on recovery, nothing lost', async () => {
    const port = await freePort(); // nothing listens there yet
    await db.sql`insert into products select g, 's', g from generate_series(1, 500) g`;
    const entry = await startRelay({
      CERTYO_BASE_URL: `http://127.0.0.1:${port}`,
      CERTYO_BATCH_SIZE: '100',
      CERTYO_CONCURRENCY: '3',
    });
    const retries = () =>
      logLines
        .filter((l) => l.includes('delivery will be retried'))
        .map((l) => JSON.parse(l) as { reason: string; attempt: number; waitMs: number });
    await until(() => retries().length >= 8);
    for (const r of retries()) {
      assert.match(r.reason, /ECONNREFUSED/);
      assert.ok(r.waitMs <= 200, `waits are capped (CERTYO_BACKOFF_MAX_MS): ${r.waitMs}`);
    }
    assert.ok(
      Math.max(...retries().map((r) => r.attempt)) >= 3,
      'attempts are counted, so the backoff grows',
    );
    assert.equal(entry.relay.healthy, true, 'unreachable is not a configuration error');
    const back = await startLocalCertyo({ keys: { [KEY]: 'acme' }, port, flushMs: 50, anchorMs: 10 });
    try {
      await drained();
      await assertNothingLost(db.sql, back, 500);
      // The backlog arrives as batches, each once: nothing was half-sent while Certyo was down.
      assert.equal(back.requests.length, 5);
    } finally {
      for (const r of running.splice(0)) await r.close();
      await back.close();
    }
  });

  test('stop() reaches a loop that was mid-claim: it does not sleep on until the deadline', async () => {
    const waitsOnLock = async (event: string) => {
      for (;;) {
        const rows = await db.sql`select 1 from pg_stat_activity where datname = current_database()
                                  and wait_event_type = 'Lock' and wait_event = ${event}`;
        if (rows.length > 0) return;
        await new Promise((r) => setTimeout(r, 10));
      }
    };
    // Hold the relay in its registration, then in the claim that follows it (claims take
    // advisory lock 7283002): the claim finds nothing and the loop would go to sleep.
    const table = await db.sql.reserve();
    const advisory = await db.sql.reserve();
    try {
      await table`begin`;
      await table`lock table certyo.waiting_relay in access exclusive mode`;
      const entry = await startRelay({ CERTYO_SHUTDOWN_TIMEOUT_MS: '3000' });
      await waitsOnLock('relation');
      await advisory`select pg_advisory_lock(7283002)`;
      await table`rollback`;
      await waitsOnLock('advisory');
      const stopped = entry.close();
      running.splice(running.indexOf(entry), 1);
      await advisory`select pg_advisory_unlock(7283002)`;
      await stopped;
      assert.ok(logLines.some((l) => l.includes('relay stopped')));
    } finally {
      table.release();
      advisory.release();
    }
    // afterEach: no 'shutdown deadline reached' line.
  });

  for (const garble of ['html', 'truncated', 'endlessHeaders'] as const) {
    test(`answers that are not JSON (${garble}) after Certyo took the records: resent, replayed, nothing lost`, async () => {
      Object.assign(api.faults, { garble, garbleRate: 0.5 });
      await db.sql`insert into products select g, 's', g from generate_series(1, 600) g`;
      await startRelay({ CERTYO_BATCH_SIZE: '50', CERTYO_HTTP_TIMEOUT_MS: '300' });
      await drained();
      await assertNothingLost(db.sql, api, 600);
      assert.ok(api.requests.some((r) => r.outcome === garble));
      assert.ok(
        api.requests.some((r) => r.records.some((x) => x.replayed)),
        'a garbled answer was resent and replayed',
      );
    });
  }

  test('a 202 without per-record results is accepted: receipts without hashes, rows submitted', async () => {
    Object.assign(api.faults, { garble: 'noResults', garbleRate: 1 });
    await db.sql`insert into products select g, 's', g from generate_series(1, 300) g`;
    await startRelay({ CERTYO_BATCH_SIZE: '100', CERTYO_VERIFY: 'off' });
    await drained();
    await assertNothingLost(db.sql, api, 300);
    const [r] =
      await db.sql`select count(*)::int as n, count(record_hash)::int as hashed from certyo.receipt`;
    assert.deepEqual({ ...r }, { n: 300, hashed: 0 });
    const [p] =
      await db.sql`select count(*)::int as n from products where certyo_anchor_status = 'submitted'`;
    assert.equal(p!.n, 300);
  });

  test('a redirect is never followed: the key stays home, the relay reports unhealthy, nothing is lost', async () => {
    const followed: string[] = [];
    const elsewhere = createServer((req, res) => {
      followed.push(`${req.method} ${req.url} key=${req.headers['x-api-key'] ?? ''}`);
      res.end();
    });
    await new Promise<void>((resolve) => elsewhere.listen(0, '127.0.0.1', resolve));
    try {
      const port = (elsewhere.address() as AddressInfo).port;
      Object.assign(api.faults, {
        garble: 'redirect',
        garbleRate: 1,
        redirectTo: `http://127.0.0.1:${port}/api/v1/records/bulk`,
      });
      await db.sql`insert into products select g, 's', g from generate_series(1, 20) g`;
      const { relay } = await startRelay();
      await api.waitFor((r) => r.outcome === 'redirect');
      await until(() => !relay.healthy);
      assert.match(relay.lastError ?? '', /307/);
      const [left] = await db.sql`select count(*)::int as n from certyo.outbox`;
      assert.equal(left!.n, 20, 'nothing was acknowledged on a redirect');
      Object.assign(api.faults, NO_FAULTS);
      await drained();
      await assertNothingLost(db.sql, api, 20);
      assert.deepEqual(followed, [], 'the redirect was followed');
    } finally {
      elsewhere.closeAllConnections();
      await new Promise((resolve) => elsewhere.close(resolve));
    }
  });

  test('never notified (its registration lost): changes still arrive by the fallback poll', async () => {
    await startRelay({ CERTYO_POLL_INTERVAL_MS: '200' });
    // Idle and registered for a wake-up that will not come: only its poll finds the changes.
    for (;;) {
      const [w] = await db.sql`select count(*)::int as n from certyo.waiting_relay`;
      if (w!.n > 0) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    // Its registration lost: the writing transaction takes it away first, so capture
    // finds no relay waiting and sends no NOTIFY.
    await db.sql.begin(async (tx) => {
      await tx`delete from certyo.waiting_relay`;
      await tx`insert into products select g, 's', g from generate_series(1, 50) g`;
    });
    await drained();
    await assertNothingLost(db.sql, api, 50);
  });

  test('a trickle of single writes, each waited for: every one wakes the relay, none waits for the poll', async () => {
    // Each write follows the last acknowledgement closely (checked every 2 ms),
    // as the relay registers again: before certyo.writers_in_flight, 3 in 100 of these
    // changes missed the registration and waited for the poll (here 10 minutes).
    await startRelay({ CERTYO_POLL_INTERVAL_MS: '600000', CERTYO_VERIFY: 'off' });
    for (let i = 1; i <= 200; i++) {
      await db.sql`insert into products values (${i}, 's', 1)`;
      await drained({
        limitMs: 60_000,
        intervalMs: 2,
        describe: () => `change ${i} of 200 waits for the poll`,
      });
    }
    await assertNothingLost(db.sql, api, 200);
  });

  test('a writer open when the relay registers sent no NOTIFY: its change arrives once it commits, not at the poll', async () => {
    await deliveredAcrossRegistration(
      async (writer) => {
        await writer`begin`;
        await writer`insert into products values (1, 's', 1)`; // no relay waits yet: no NOTIFY comes
      },
      async () => {},
    );
  });

  test('a REPEATABLE READ writer whose snapshot predates the registration: delivered once it commits, not at the poll', async () => {
    await deliveredAcrossRegistration(
      async (writer) => {
        await writer`begin isolation level repeatable read`;
        await writer`select count(*) from products`; // its snapshot: before the relay registers
      },
      // It cannot see the registration: no NOTIFY.
      (writer) => writer`insert into products values (1, 's', 1)`,
    );
  });

  test('an install older than the relay (no writers_in_flight): it delivers and warns once', async () => {
    await db.sql`alter function certyo.writers_in_flight(uuid) rename to writers_in_flight_hidden`;
    try {
      await startRelay({ CERTYO_VERIFY: 'off' });
      for (let i = 1; i <= 3; i++) {
        await db.sql`insert into products values (${i}, 's', 1)`;
        await drained();
      }
      await assertNothingLost(db.sql, api, 3);
      const warned = logLines.filter((l) => l.includes('writers_in_flight(relay) is not installed'));
      assert.equal(warned.length, 1, 'warned once');
      assert.ok(!logLines.some((l) => l.includes('relay loop error')), 'the missing function broke the loop');
    } finally {
      await db.sql`alter function certyo.writers_in_flight_hidden(uuid) rename to writers_in_flight`;
    }
  });

  test('an install older than the relay (no ack_and_claim): it acknowledges apart, marks rows and warns once', async () => {
    const signature =
      'uuid, bigint[], text[], timestamptz[], text[], text[], integer[], text[], integer, interval, bigint';
    await db.sql.unsafe(`alter function certyo.ack_and_claim(${signature}) rename to ack_and_claim_hidden`);
    try {
      await startRelay({ CERTYO_VERIFY: 'off' });
      for (let i = 1; i <= 3; i++) {
        await db.sql`insert into products values (${i}, 's', 1)`;
        await drained();
      }
      await until(
        async () =>
          (await db.sql`select count(*)::int as n from products where certyo_anchor_status = 'submitted'`)[0]!
            .n === 3,
        { describe: () => logLines.slice(-30).join('') },
      );
      await assertNothingLost(db.sql, api, 3);
      const warned = logLines.filter((l) => l.includes('certyo.ack_and_claim is not installed'));
      assert.equal(warned.length, 1, 'warned once');
      assert.ok(!logLines.some((l) => l.includes('relay loop error')), 'the missing function broke the loop');
    } finally {
      await db.sql.unsafe(`alter function certyo.ack_and_claim_hidden(${signature}) rename to ack_and_claim`);
    }
  });

  test('one delivery loop keeps up with a trickle; the others join only for a backlog', async () => {
    const loops = () =>
      new Set(
        logLines
          .filter((l) => l.includes('"batch done"'))
          .map((l) => (JSON.parse(l) as { worker: number }).worker),
      );
    await startRelay({ CERTYO_BATCH_SIZE: '100', CERTYO_CONCURRENCY: '3' });
    for (let i = 1; i <= 20; i++) {
      await db.sql`insert into products values (${i}, 's', 1)`;
      await drained();
    }
    assert.deepEqual([...loops()], [0], 'a trickle was split between loops');
    api.faults.latencyMs = 50; // requests overlap only if several loops work
    await db.sql`insert into products select g, 's', g from generate_series(1000, 3999) g`;
    await drained();
    await assertNothingLost(db.sql, api, 3020);
    assert.deepEqual([...loops()].sort(), [0, 1, 2], 'the backlog was not shared by every loop');
  });

  test('a relay whose role may vacuums the outbox itself once 10,000 changes are delivered', async () => {
    // vacuum_count counts manual vacuums only (autovacuum has its own counter).
    const vacuums = async () =>
      (
        await db.sql`select vacuum_count::int as n, analyze_count::int as a
                     from pg_stat_user_tables where relid = 'certyo.outbox'::regclass`
      )[0]!;
    const before = await vacuums();
    await db.sql`insert into products select g, 's', g from generate_series(1, 10500) g`;
    await startRelay();
    await drained();
    const vacuumed = () => logLines.find((l) => l.includes('"outbox vacuumed"'));
    await until(() => vacuumed() !== undefined, {
      limitMs: 30_000,
      describe: () => logLines.filter((l) => l.includes('vacuum')).join(''),
    });
    const logged = JSON.parse(vacuumed()!) as { deleted: number; analyze: boolean };
    assert.ok(logged.deleted >= 10_000);
    assert.equal(logged.analyze, true, "a relay's first vacuum analyzes too");
    // PostgreSQL 13 and 14 count through the statistics collector: a moment later.
    let after = await vacuums();
    await until(
      async () => {
        after = await vacuums();
        return after.n > before.n && after.a > before.a;
      },
      { limitMs: 30_000, describe: () => JSON.stringify({ before, after }) },
    ).catch(() => {});
    assert.ok(after.n > before.n, 'PostgreSQL counted the vacuum');
    assert.ok(after.a > before.a, 'and the analyze');
  });

  test('poison records are parked with the reason; the rest flow; later changes of that record wait', async () => {
    Object.assign(api.faults, { rejectField: 'sku', rejectValue: 'POISON' });
    await db.sql`insert into products values (1, 'ok', 1), (2, 'POISON', 2), (3, 'ok', 3)`;
    await startRelay();
    await api.waitFor((r) => r.records.some((x) => x.recordId === '3' && x.status === 'accepted'));
    for (;;) {
      const rows = await db.sql`select record_id, last_error from certyo.parked`;
      if (rows.length === 1) {
        assert.equal(rows[0]!.record_id, '2');
        assert.match(rows[0]!.last_error, /rejected/);
        break;
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    // A later change of the parked record waits behind it, while other records flow.
    await db.sql`update products set sku = 'fixed' where id = 2`;
    await db.sql`insert into products values (4, 'ok', 4)`;
    await api.waitFor((r) => r.records.some((x) => x.recordId === '4'));
    const [waiting] =
      await db.sql`select count(*)::int as n from certyo.outbox where record_id = '2' and parked_at is null`;
    assert.equal(waiting!.n, 1, 'the later change of the parked record waits behind it');
    assert.deepEqual(
      api.requests.flatMap((r) => r.records.filter((x) => x.recordId === '2').map((x) => x.status)),
      ['rejected'],
    );
    Object.assign(api.faults, NO_FAULTS);
    await db.sql`select certyo.retry_parked('products')`;
    await drained();
    await assertNothingLost(db.sql, api, 5);
    const [row] = await db.sql`select certyo_anchor_status as s from products where id = 2`;
    assert.equal(row!.s, 'submitted');
  });

  test('batches are bounded by bytes; an oversized record is parked with a reason, the rest flow', async () => {
    await db.sql`insert into products select g, repeat('x', 2000), 1 from generate_series(1, 200) g`;
    await db.sql`insert into products values (999, repeat('y', 300000), 1)`;
    await startRelay({ CERTYO_MAX_BATCH_BYTES: '65536', CERTYO_MAX_RECORD_BYTES: '100000' });
    await drained();
    const sizes = api.requests.filter((r) => r.status === 202).map((r) => r.records.length);
    assert.ok(Math.max(...sizes) < 40 && sizes.length >= 6, `records per request: ${sizes}`);
    const parked = await db.sql`select record_id, last_error from certyo.parked`;
    assert.deepEqual(
      parked.map((p) => p.record_id),
      ['999'],
    );
    assert.match(parked[0]!.last_error, /exceeds CERTYO_MAX_RECORD_BYTES/);
    const [sent] = await db.sql`select count(*)::int as n from certyo.receipt`;
    assert.equal(sent!.n, 200);
  });

  test('a transaction that commits out of id order is still delivered', async () => {
    await startRelay();
    const slow = postgres(db.url, { max: 1, onnotice: () => {} });
    let commit!: () => void;
    const gate = new Promise<void>((r) => {
      commit = r;
    });
    const late = slow.begin(async (tx) => {
      await tx`insert into products values (10, 'late', 1)`; // takes the smaller id
      await gate;
    });
    await db.sql`insert into products values (11, 'early', 1)`;
    await api.waitFor((r) => r.records.some((x) => x.recordId === '11'));
    commit();
    await late;
    await api.waitFor((r) => r.records.some((x) => x.recordId === '10'));
    await slow.end();
  });

  test('a relay whose lease was taken over cannot acknowledge', async () => {
    await db.sql`insert into products values (1, 'a', 1)`;
    const a = '00000000-0000-4000-8000-00000000000a';
    const b = '00000000-0000-4000-8000-00000000000b';
    const [mine] = await db.sql`select id from certyo.claim(${a}, 10, '-1 second')`; // lease already expired
    const [theirs] = await db.sql`select id from certyo.claim(${b}, 10, '60 seconds')`;
    assert.equal(theirs!.id, mine!.id);
    const [lateAck] =
      await db.sql`select certyo.ack(${a}, ${[mine!.id]}::bigint[], '{h}', '{}', '{}', '{}') as n`;
    assert.equal(lateAck!.n, 0);
    const [row] = await db.sql`select certyo_anchor_status as s from products`;
    assert.equal(row!.s, 'pending');
    const [ack] =
      await db.sql`select certyo.ack(${b}, ${[mine!.id]}::bigint[], '{h}', '{}', '{}', '{}') as n`;
    assert.equal(ack!.n, 1);
  });

  test('a change id already receipted (change_seq set back): acknowledged, the old receipt kept, a warning', async () => {
    const t = '00000000-0000-4000-8000-00000000000c';
    await db.sql`insert into products values (1, 'a', 1)`;
    const [first] =
      await db.sql`select id, idempotency_key::text as k from certyo.claim(${t}, 10, '60 seconds')`;
    await db.sql`select certyo.ack(${t}, ${[first!.id]}::bigint[], '{h1}', '{}', '{}', '{}')`;
    // As after a copy by logical replication, which leaves sequences behind.
    await db.sql`select setval('certyo.change_seq', ${first!.id} - 1)`;
    await db.sql`insert into products values (2, 'b', 2), (3, 'c', 3)`;
    const claimed =
      await db.sql`select id, idempotency_key::text as k from certyo.claim(${t}, 10, '60 seconds') order by id`;
    assert.equal(claimed[0]!.id, first!.id);
    // Sent under a key of its own: under the first change's, Certyo would answer with that change's receipt.
    assert.notEqual(claimed[0]!.k, first!.k);
    const notices: string[] = [];
    const watched = postgres(db.url, { max: 1, onnotice: (n) => notices.push(`${n.message} ${n.hint}`) });
    try {
      const [ack] = await watched`
        select certyo.ack(${t}, ${claimed.map((c) => c.id)}::bigint[], '{h2,h3}', '{}', '{}', '{}') as n`;
      assert.equal(ack!.n, 2);
    } finally {
      await watched.end();
    }
    assert.equal(notices.length, 1);
    assert.match(notices[0]!, new RegExp(`change ids \\{${first!.id}\\} already have receipts.*change_seq`));
    assert.equal((await db.sql`select count(*)::int as n from certyo.outbox`)[0]!.n, 0);
    const receipts = await db.sql`select record_id, record_hash from certyo.receipt order by id`;
    assert.deepEqual(
      receipts.map((r) => [r.record_id, r.record_hash]),
      [
        ['1', 'h1'],
        ['3', 'h3'],
      ],
    );
    const rows =
      await db.sql`select id, certyo_anchor_status as s, certyo_record_hash as h from products order by id`;
    assert.deepEqual(
      rows.map((r) => [r.id, r.s, r.h]),
      [
        [1, 'submitted', 'h1'],
        [2, 'submitted', 'h2'],
        [3, 'submitted', 'h3'],
      ],
    );
  });

  test("the relay logs PostgreSQL's warnings: reused change ids are delivered, and said so", async () => {
    const relay = await startRelay();
    await db.sql`insert into products values (1, 'a', 1)`;
    await drained();
    const [{ id }] = (await db.sql`select max(id)::text as id from certyo.receipt`) as unknown as [
      { id: string },
    ];
    await db.sql`select setval('certyo.change_seq', ${id}::bigint - 1)`;
    await db.sql`insert into products values (2, 'b', 2)`;
    await until(() => logLines.some((l) => l.includes('already have receipts')));
    await drained();
    const line = JSON.parse(logLines.find((l) => l.includes('already have receipts'))!);
    assert.equal(line.level, 40); // warn
    assert.match(line.msg, new RegExp(`^PostgreSQL: certyo.ack: change ids \\{${id}\\}`));
    assert.match(line.hint, /Moving the database/);
    const [row] = await db.sql`select certyo_anchor_status as s from products where id = 2`;
    assert.equal(row!.s, 'submitted');
    await relay.close();
  });

  test("a leased change holds back its record's later changes; a lease is a HOT update", async () => {
    await db.sql`insert into products values (1, 'a', 1)`;
    await db.sql`insert into products values (2, 'b', 1)`;
    const a = '00000000-0000-4000-8000-00000000000a';
    const b = '00000000-0000-4000-8000-00000000000b';
    const [first] = await db.sql`select id, record_id from certyo.claim(${a}, 1)`;
    assert.equal(first!.record_id, '1');
    await db.sql`update products set sku = 'a2' where id = 1`;
    await db.sql`insert into products values (3, 'c', 1)`;
    await db.sql.begin(async (tx) => {
      // This backend's counts not yet flushed to the statistics (its earlier work included).
      const counts = () =>
        tx`select n_tup_upd::int as upd, n_tup_hot_upd::int as hot from pg_stat_xact_user_tables where relid = 'certyo.outbox'::regclass`.then(
          (rows) => rows[0]!,
        );
      const before = await counts();
      const theirs = await tx`select record_id from certyo.claim(${b}, 10)`;
      assert.deepEqual(
        theirs.map((r) => r.record_id),
        ['2', '3'],
      );
      // No index names the lease columns and pages keep room: no index entry per lease.
      const after = await counts();
      assert.deepEqual({ upd: after.upd - before.upd, hot: after.hot - before.hot }, { upd: 2, hot: 2 });
    });
    await db.sql`select certyo.ack(${a}, ${[first!.id]}::bigint[], '{h}', '{}', '{}', '{}')`;
    const next = await db.sql`select record_id, record from certyo.claim(${b}, 10)`;
    assert.deepEqual(
      next.map((r) => [r.record_id, JSON.parse(r.record).sku]),
      [['1', 'a2']],
    );
  });

  test('claim and ack commit without waiting for the disk, and only their own transactions', async () => {
    await db.sql`insert into products values (1, 'a', 1)`;
    const a = '00000000-0000-4000-8000-00000000000a';
    const setting = (tx: TransactionSql) =>
      tx`select current_setting('synchronous_commit') as s`.then((rows) => rows[0]!.s as string);
    const [sessionDefault] = await db.sql`select current_setting('synchronous_commit') as s`;
    assert.notEqual(sessionDefault!.s, 'off', 'the test server commits synchronously by default');
    const claimed = await db.sql.begin(async (tx) => {
      const rows = await tx`select id from certyo.claim(${a}, 10)`;
      assert.equal(await setting(tx), 'off');
      return rows;
    });
    await db.sql.begin(async (tx) => {
      await tx`select certyo.ack(${a}, ${[claimed[0]!.id]}::bigint[], '{h}', '{}', '{}', '{}')`;
      assert.equal(await setting(tx), 'off');
    });
    await db.sql.begin(async (tx) => {
      assert.equal(await setting(tx), sessionDefault!.s);
    });
  });

  test('401, 500 and timeouts: everything stays queued and the key never reaches the logs', async () => {
    await db.sql`insert into products values (1, 'a', 1)`;
    const wrong = 'certyo_sk_test_wrong_key_do_not_log_me';
    const r = await startRelay({ CERTYO_HTTP_TIMEOUT_MS: '200' }, wrong);
    await api.waitFor((x) => x.status === 401);
    await r.close();
    running.length = 0;
    Object.assign(api.faults, { rate500: 1 });
    const r2 = await startRelay({ CERTYO_HTTP_TIMEOUT_MS: '200' });
    await api.waitFor((x) => x.status === 500);
    Object.assign(api.faults, { rate500: 0, latencyMs: 1000 });
    const before = api.requests.length;
    await new Promise<void>((resolve) => {
      const check = () =>
        logLines.some((l) => /aborted|timeout|Timeout/i.test(l)) ? resolve() : setTimeout(check, 20);
      check();
    });
    await r2.close();
    running.length = 0;
    assert.ok(api.requests.length >= before);
    const [left] = await db.sql`select count(*)::int as n from certyo.outbox`;
    assert.equal(left!.n, 1, 'the change stays queued');
    const all = logLines.join('');
    assert.ok(all.length > 0);
    assert.ok(!all.includes(wrong) && !all.includes(KEY), 'an API key appeared in the logs');
    assert.match(all, /check CERTYO_API_KEY/);
  });
});
