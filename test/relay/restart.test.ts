// PostgreSQL crash-restarted (SIGQUIT, as `pg_ctl -m immediate`) under write
// load while a relay process drains: it reconnects with backoff, re-listens,
// and nothing committed is lost. Uses its own embedded server, so the restart
// cannot disturb other test files.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { test } from 'node:test';
import postgres from 'postgres';
import { type Server, startEmbedded } from '../../relay/src/embedded.js';
import { migrate } from '../../relay/src/install.js';
import { startLocalCertyo } from '../../relay/src/local-certyo/server.js';
import { paths } from '../../relay/src/paths.js';
import { withDatabase } from '../harness/db.js';
import { assertNothingLost } from '../harness/delivery.js';

const KEY = 'certyo_sk_test_restart_0123456789';

test('PostgreSQL restarted (immediate) under load: the relay recovers, nothing lost', async () => {
  const server: Server = await startEmbedded();
  const api = await startLocalCertyo({ keys: { [KEY]: 'acme' }, flushMs: 50, anchorMs: 10 });
  const url = withDatabase(server.adminUrl, 'postgres');
  const sql = postgres(url, { max: 4, onnotice: () => {} });
  const relay = spawn(process.execPath, [`${paths.root}bin/certyo-pg.js`, 'relay'], {
    env: {
      PATH: process.env.PATH ?? '',
      DATABASE_URL: url,
      CERTYO_API_KEY: KEY,
      CERTYO_TENANT_ID: 'acme',
      CERTYO_BASE_URL: api.url,
      CERTYO_BATCH_SIZE: '100',
      CERTYO_LEASE_SECONDS: '5',
      CERTYO_POLL_INTERVAL_MS: '200',
      CERTYO_BACKOFF_BASE_MS: '20',
      CERTYO_BACKOFF_MAX_MS: '500',
      LOG_LEVEL: 'error',
    },
    stdio: 'ignore',
  });
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
    await api.waitFor((r) => r.status === 202 && r.records.length > 0);
    await server.restartImmediate();
    const after = committed.length;
    await api.waitFor((r) => r.status === 202 && r.records.some((x) => Number(x.recordId) > after + 50));
    writing = false;
    await writer;
    for (;;) {
      const [row] = await sql`select count(*)::int as n from certyo.outbox`;
      if (row!.n === 0) break;
      await new Promise((r) => setTimeout(r, 20));
    }
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
    relay.kill('SIGKILL');
    await sql.end({ timeout: 1 });
    await api.close();
    await server.stop();
  }
});
