// Faults with a real relay process (`certyo-pg relay`): SIGKILL after Certyo
// accepted a batch but before it was acknowledged, SIGKILL with a request in
// flight, SIGTERM mid-batch, its backends terminated during a drain, and no
// transaction held open across HTTP. Each ends with "nothing lost".
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { type AddressInfo, connect, createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, before, describe, test } from 'node:test';
import { createServer as createTlsServer } from 'node:tls';
import { freePort } from '../../relay/src/embedded.js';
import { type LocalCertyo, NO_FAULTS, startLocalCertyo } from '../../relay/src/local-certyo/server.js';
import { freshDatabase, type TestDb } from '../harness/db.js';
import { assertNothingLost } from '../harness/delivery.js';
import { joinSockets } from '../harness/proxy.js';
import { RelayProcesses } from '../harness/relay-process.js';
import { until as waitUntil } from '../harness/wait.js';

const KEY = 'certyo_sk_test_crash_0123456789abcdef';
let db: TestDb;
let api: LocalCertyo;
const relays = new RelayProcesses(() => ({
  DATABASE_URL: db.url,
  CERTYO_API_KEY: KEY,
  CERTYO_TENANT_ID: 'acme',
  CERTYO_BASE_URL: api.url,
  CERTYO_LEASE_SECONDS: '5',
  CERTYO_POLL_INTERVAL_MS: '100',
  CERTYO_BACKOFF_BASE_MS: '10',
  CERTYO_BACKOFF_MAX_MS: '500',
  LOG_LEVEL: 'warn',
}));
const spawnRelay = (env: Record<string, string> = {}) => relays.spawn(env);

async function relayBackends() {
  return db.sql`select pid, state, xact_start, wait_event_type from pg_stat_activity
                where application_name = 'certyo-relay' and datname = current_database()`;
}

/** Waits for cond; one that never comes fails with the relays' logs. */
const until = (cond: () => Promise<boolean>) =>
  waitUntil(cond, {
    describe: async () => `${(await relayBackends()).length} relay backends\n${relays.logs()}`,
  });

const drained = () =>
  until(async () => (await db.sql`select count(*)::int as n from certyo.outbox`)[0]!.n === 0);

before(async () => {
  db = await freshDatabase();
  await db.sql`create table items (id int primary key, v int not null)`;
  await db.sql`select certyo.enable_tracking('items')`;
  api = await startLocalCertyo({ keys: { [KEY]: 'acme' }, flushMs: 50, anchorMs: 10 });
});
afterEach(async () => {
  relays.killAll();
  // A killed relay's backends may still be finishing a statement: wait until they are gone.
  await until(async () => {
    await db.sql`select pg_terminate_backend(pid) from pg_stat_activity
                 where application_name = 'certyo-relay' and datname = current_database()`;
    return (await relayBackends()).length === 0;
  });
  Object.assign(api.faults, NO_FAULTS);
  await db.sql`delete from certyo.waiting_relay`; // a killed relay's registration stays behind
  await db.sql`delete from items`;
  await drainWithInProcessCleanup();
  api.requests.length = 0;
});
after(async () => {
  await api.close();
  await db.close();
});

async function drainWithInProcessCleanup() {
  await db.sql`delete from certyo.outbox`;
  await db.sql`delete from certyo.receipt`;
}

async function writeLoad(n: number) {
  await db.sql`insert into items select g, 0 from generate_series(1, ${n}) g`;
  await db.sql`update items set v = v + 1 where id % 10 = 0`;
}

describe('relay process faults', () => {
  test('SIGKILL after Certyo accepted a batch, before the acknowledgement: resent with the same keys', async () => {
    await writeLoad(500);
    // Hold the receipts table so the acknowledgement blocks after a 202.
    const blocker = await db.sql.reserve();
    await blocker`begin`;
    await blocker`lock table certyo.receipt in share row exclusive mode`;
    const r = spawnRelay({ CERTYO_BATCH_SIZE: '100', CERTYO_CONCURRENCY: '1' });
    await api.waitFor((x) => x.status === 202 && x.records.length > 0);
    await until(async () => (await relayBackends()).some((b) => b.wait_event_type === 'Lock'));
    r.child.kill('SIGKILL');
    await r.exited;
    // The process is gone; so is its connection (PostgreSQL would notice at its next write).
    await db.sql`select pg_terminate_backend(pid) from pg_stat_activity
                 where application_name = 'certyo-relay' and datname = current_database()`;
    await blocker`rollback`;
    blocker.release();
    spawnRelay();
    await drained();
    await assertNothingLost(db.sql, api, 550);
    assert.ok(
      api.requests.some((x) => x.records.some((y) => y.replayed)),
      'the accepted but unacknowledged batch was resent and replayed',
    );
  });

  test('SIGKILL with a request in flight: the claimed changes are delivered after the lease expires', async () => {
    await writeLoad(300);
    api.faults.latencyMs = 3000;
    const r = spawnRelay({ CERTYO_BATCH_SIZE: '100' });
    await api.nextArrival();
    r.child.kill('SIGKILL');
    await r.exited;
    api.faults.latencyMs = 0;
    spawnRelay();
    await drained();
    await assertNothingLost(db.sql, api, 330);
  });

  test('SIGTERM mid-batch: exits cleanly and gives back its leases; nothing lost', async () => {
    await writeLoad(300);
    api.faults.latencyMs = 5000;
    const r = spawnRelay({ CERTYO_SHUTDOWN_TIMEOUT_MS: '500', CERTYO_BATCH_SIZE: '100' });
    await api.nextArrival();
    r.child.kill('SIGTERM');
    assert.equal(await r.exited, 0, r.log());
    const [leased] = await db.sql`select count(*)::int as n from certyo.outbox where lease_token is not null`;
    assert.equal(leased!.n, 0, 'every lease was given back');
    api.faults.latencyMs = 0;
    spawnRelay({ CERTYO_LEASE_SECONDS: '60' }); // no lease expiry needed: the leases were released
    await drained();
    await assertNothingLost(db.sql, api, 330);
  });

  test("the relay's backends terminated again and again during a drain: it reconnects, nothing lost", async () => {
    await writeLoad(3000);
    // Small, slowed batches: the drain outlasts the six terminations (a fast relay could
    // finish before them, and the test would wait for an arrival that never comes).
    api.faults.latencyMs = 20;
    spawnRelay({ CERTYO_BATCH_SIZE: '20' });
    for (let i = 0; i < 6; i++) {
      await api.nextArrival();
      await db.sql`select pg_terminate_backend(pid) from pg_stat_activity
                   where application_name = 'certyo-relay' and datname = current_database()`;
    }
    await drained();
    await assertNothingLost(db.sql, api, 3300);
  });

  test('backends terminated while the relay registers for wake-ups: it recovers and delivers', async () => {
    // Hold the registration in flight (postgres.js 3.4.9 never recovers a pool after a
    // reserved connection whose query was cut off is released: porsager/postgres#1199).
    const blocker = await db.sql.reserve();
    await blocker`begin`;
    await blocker`lock table certyo.waiting_relay in access exclusive mode`;
    spawnRelay({ CERTYO_BATCH_SIZE: '100' });
    await until(async () => (await relayBackends()).some((b) => b.wait_event_type === 'Lock'));
    await db.sql`select pg_terminate_backend(pid) from pg_stat_activity
                 where application_name = 'certyo-relay' and datname = current_database()`;
    await blocker`rollback`;
    blocker.release();
    await until(async () => (await db.sql`select count(*)::int as n from certyo.waiting_relay`)[0]!.n > 0);
    await writeLoad(1000);
    await drained();
    await assertNothingLost(db.sql, api, 1100);
  });

  test("an idle relay's backends terminated: it still wakes up and delivers, again and again", async () => {
    spawnRelay({ CERTYO_BATCH_SIZE: '100' });
    const registered = async () =>
      (await db.sql`select count(*)::int as n from certyo.waiting_relay`)[0]!.n > 0;
    for (let round = 0; round < 3; round++) {
      await until(registered); // idle, waiting for a wake-up
      await db.sql`select pg_terminate_backend(pid) from pg_stat_activity
                   where application_name = 'certyo-relay' and datname = current_database()`;
      await db.sql`insert into items select g, 0 from generate_series(${round * 1000 + 1}::int, ${round * 1000 + 1000}::int) g`;
      await drained();
    }
    await assertNothingLost(db.sql, api, 3000);
  });

  test('backends terminated as soon as they appear, from the first connection on: the relay never crashes', async () => {
    // Every new connection's first statements (postgres.js fetches array types there unless
    // told not to: porsager/postgres#1192) and the relay's start-up are cut off.
    await writeLoad(2000);
    api.faults.latencyMs = 5;
    const r = spawnRelay({ CERTYO_BATCH_SIZE: '50' });
    let terminated = 0;
    while (terminated < 40 && r.child.exitCode === null && r.child.signalCode === null) {
      const [t] = await db.sql`select count(*) filter (where pg_terminate_backend(pid))::int as n
                               from pg_stat_activity
                               where application_name = 'certyo-relay' and datname = current_database()`;
      terminated += t!.n;
    }
    const crashed = r.exited.then((code) => {
      throw new Error(`the relay exited (${code}):\n${r.log()}`);
    });
    await Promise.race([drained(), crashed]);
    assert.equal(r.child.exitCode, null);
    await assertNothingLost(db.sql, api, 2200);
  });

  test('a relay started before PostgreSQL accepts connections waits, then delivers; SIGTERM while it waits exits 0', async () => {
    const port = await freePort(); // nothing listens there (yet)
    const real = new URL(db.url);
    const url = new URL(db.url);
    url.hostname = '127.0.0.1';
    url.port = String(port);
    const cannotReach = (r: { log: () => string }) => async () =>
      r.log().includes('cannot reach PostgreSQL yet');

    const early = spawnRelay({ DATABASE_URL: url.toString() });
    await until(cannotReach(early));
    early.child.kill('SIGTERM');
    assert.equal(await early.exited, 0, early.log());

    const healthPort = await freePort();
    const patient = spawnRelay({ DATABASE_URL: url.toString(), CERTYO_HEALTH_PORT: String(healthPort) });
    await until(cannotReach(patient));
    const probe = async (path: string) => {
      const res = await fetch(`http://127.0.0.1:${healthPort}${path}`);
      return { status: res.status, body: await res.text() };
    };
    // Alive while it waits, not ready.
    assert.equal((await probe('/healthz')).status, 200);
    const waiting = await probe('/readyz');
    assert.equal(waiting.status, 503);
    assert.equal(JSON.parse(waiting.body).started, false);
    await writeLoad(300);
    // PostgreSQL "comes up" on that port: a TCP proxy to the real server.
    const sockets = new Set<Socket>();
    const proxy = createServer((client) => {
      const server = connect(Number(real.port || 5432), real.hostname);
      sockets.add(client).add(server);
      joinSockets(client, server);
    });
    await new Promise<void>((resolve) => proxy.listen(port, '127.0.0.1', resolve));
    try {
      await drained();
      await assertNothingLost(db.sql, api, 330);
      assert.equal(patient.child.exitCode, null);
      assert.equal((await probe('/readyz')).status, 200);
    } finally {
      proxy.close();
      for (const s of sockets) s.destroy();
    }
  });

  test('3 relay processes on a 50,000-change backlog with one record updated 2,000 times: in order, nothing lost', async () => {
    await db.sql`insert into items select g, 0 from generate_series(1, 48000) g`;
    for (let i = 0; i < 2000; i += 100) {
      // 100 UPDATE statements of the hot record per round trip
      await db.sql.unsafe(
        Array.from({ length: 100 }, () => 'update items set v = v + 1 where id = 7;').join(''),
      );
    }
    for (let i = 0; i < 3; i++) spawnRelay({ CERTYO_BATCH_SIZE: '500', CERTYO_CONCURRENCY: '2' });
    await drained();
    await assertNothingLost(db.sql, api, 50000);
    const [hot] = await db.sql`select count(*)::int as n from certyo.receipt where record_id = '7'`;
    assert.equal(hot!.n, 2001);
  });

  test('a relay frozen (SIGSTOP) past its lease cannot acknowledge after another took over', async () => {
    await writeLoad(200);
    api.faults.latencyMs = 1500;
    const frozen = spawnRelay({ CERTYO_BATCH_SIZE: '1000', CERTYO_CONCURRENCY: '1' });
    await api.nextArrival();
    frozen.child.kill('SIGSTOP');
    api.faults.latencyMs = 0;
    const [claimed] =
      await db.sql`select lease_token::text as t from certyo.outbox where lease_token is not null limit 1`;
    spawnRelay();
    await drained();
    // Its lease is gone: the frozen relay's acknowledgement must change nothing.
    const before = await db.sql`select count(*)::int as n, max(delivered_at) as at from certyo.receipt`;
    const [fenced] =
      await db.sql`select count(*)::int as n from certyo.outbox where lease_token = ${claimed!.t}::uuid`;
    assert.equal(fenced!.n, 0);
    frozen.child.kill('SIGCONT');
    await until(async () => frozen.log().includes('lease lost'));
    const after = await db.sql`select count(*)::int as n, max(delivered_at) as at from certyo.receipt`;
    assert.deepEqual(after, before);
    await assertNothingLost(db.sql, api, 220);
  });

  test('TLS to Certyo: an untrusted certificate gets no request through; trusted (NODE_EXTRA_CA_CERTS), delivered', async () => {
    // A real TLS endpoint (self-signed, for localhost) in front of the local Certyo.
    const dir = mkdtempSync(join(tmpdir(), 'certyo-tls-'));
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:prime256v1',
        '-nodes',
        '-days',
        '1',
        '-subj',
        '/CN=localhost',
        '-addext',
        'subjectAltName=DNS:localhost',
        '-keyout',
        join(dir, 'key.pem'),
        '-out',
        join(dir, 'cert.pem'),
      ],
      { stdio: 'ignore' },
    );
    const apiPort = Number(new URL(api.url).port);
    const front = createTlsServer(
      { key: readFileSync(join(dir, 'key.pem')), cert: readFileSync(join(dir, 'cert.pem')) },
      (socket) => joinSockets(socket, connect(apiPort, '127.0.0.1')),
    );
    await new Promise<void>((resolve) => front.listen(0, '127.0.0.1', resolve));
    try {
      const baseUrl = `https://localhost:${(front.address() as AddressInfo).port}`;
      await writeLoad(100);
      const untrusted = spawnRelay({ CERTYO_BASE_URL: baseUrl, LOG_LEVEL: 'warn' });
      await until(async () => /self[- ]signed|certificate/i.test(untrusted.log()));
      assert.equal(api.requests.length, 0, 'a request got through an unverified TLS connection');
      untrusted.child.kill('SIGKILL');
      await untrusted.exited;
      spawnRelay({ CERTYO_BASE_URL: baseUrl, NODE_EXTRA_CA_CERTS: join(dir, 'cert.pem') });
      await drained();
      await assertNothingLost(db.sql, api, 110);
    } finally {
      front.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('no relay transaction stays open while Certyo is slow', async () => {
    await writeLoad(50);
    api.faults.latencyMs = 2000;
    spawnRelay({ CERTYO_CONCURRENCY: '1' });
    await api.nextArrival();
    const open = (await db.sql`select state, query from pg_stat_activity
                               where application_name = 'certyo-relay' and datname = current_database()
                                 and (state like 'idle in transaction%' or xact_start < now() - interval '1 second')`) as unknown as Array<{
      state: string;
      query: string;
    }>;
    assert.deepEqual(
      open.map((b) => `${b.state}: ${b.query}`),
      [],
      'a relay backend is inside a transaction while its request is in flight',
    );
    api.faults.latencyMs = 0;
    await drained();
  });
});
