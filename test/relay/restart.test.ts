// PostgreSQL crash-restarted (SIGQUIT, as `pg_ctl -m immediate`) under write
// load while a relay process drains: it reconnects with backoff, re-listens,
// and nothing committed is lost. Uses its own embedded server, so the restart
// cannot disturb other test files.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { connect } from '../../relay/src/db.js';
import { type Server, startEmbedded } from '../../relay/src/embedded.js';
import { migrate } from '../../relay/src/install.js';
import { startLocalCertyo } from '../../relay/src/local-certyo/server.js';
import { withDatabase } from '../harness/db.js';
import { assertNothingLost } from '../harness/delivery.js';
import { RelayProcesses } from '../harness/relay-process.js';
import { until } from '../harness/wait.js';

const KEY = 'certyo_sk_test_restart_0123456789';

test('PostgreSQL restarted (immediate) under load: the relay recovers, nothing lost', async () => {
  const server: Server = await startEmbedded();
  const api = await startLocalCertyo({ keys: { [KEY]: 'acme' }, flushMs: 50, anchorMs: 10 });
  const url = withDatabase(server.adminUrl, 'postgres');
  const sql = connect(url, { max: 4 });
  const relays = new RelayProcesses(() => ({
    DATABASE_URL: url,
    CERTYO_API_KEY: KEY,
    CERTYO_TENANT_ID: 'acme',
    CERTYO_BASE_URL: api.url,
    CERTYO_BATCH_SIZE: '100',
    CERTYO_LEASE_SECONDS: '5',
    CERTYO_POLL_INTERVAL_MS: '200',
    CERTYO_BACKOFF_BASE_MS: '20',
    CERTYO_BACKOFF_MAX_MS: '500',
    LOG_LEVEL: 'warn',
  }));
  relays.spawn();
  // Every wait is bounded and says what the relay logged: a relay stuck after
  // the restart fails here with its log, not at the file's timeout.
  const describe = () => relays.logs();
  const received = (pred: (id: number) => boolean) => () =>
    api.requests.some((r) => r.status === 202 && r.records.some((x) => pred(Number(x.recordId))));
  try {
    await migrate(sql, url);
    await sql`create table events (id int primary key, body text not null)`;
    await sql`select certyo.enable_tracking('events')`;
    const committed: number[] = [];
    let next = 1;
    let writing = true;
    const writer = (async () => {
      while (writing) {
        const id = next++;
        try {
          await sql`insert into events values (${id}, ${`event ${id}`})`;
          committed.push(id);
        } catch {
          await new Promise((r) => setTimeout(r, 20)); // server down: the insert did not commit (or is unknown)
        }
      }
    })();
    await until(
      received(() => true),
      { describe },
    );
    await server.restartImmediate();
    // 100 inserts committed after the restart, and the last of them delivered. (Ids
    // count attempts: those made while the server was down consume ids too, so an id
    // 50 past the commits made before the restart could arrive after only a few more.)
    const after = committed.length;
    await until(() => committed.length >= after + 100, { limitMs: 60_000, describe });
    const last = committed[committed.length - 1]!;
    await until(
      received((id) => id >= last),
      { limitMs: 60_000, describe },
    );
    writing = false;
    await writer;
    await until(async () => (await sql`select count(*)::int as n from certyo.outbox`)[0]!.n === 0, {
      limitMs: 60_000,
      describe,
    });
    await assertNothingLost(sql, api, 100);
    // Every insert the writer saw commit is among the delivered records.
    const delivered = new Set(
      await sql`select record_id from certyo.receipt`.then((rows) => rows.map((r) => Number(r.record_id))),
    );
    assert.deepEqual(
      committed.filter((id) => !delivered.has(id)),
      [],
    );
  } finally {
    relays.killAll();
    await sql.end({ timeout: 1 });
    await api.close();
    await server.stop();
  }
});
