// Statuses stay true: a write-back that a user's transaction made the relay
// skip (it held the row, then rolled back) is written later from the
// receipt, without waiting for verification: the row ends 'submitted' (or
// 'anchored'), never 'pending' with its version delivered.
import assert from 'node:assert/strict';
import { after, afterEach, before, describe, test } from 'node:test';
import { type LocalCertyo, startLocalCertyo } from '../../relay/src/local-certyo/server.js';
import { freshDatabase, type TestDb } from '../harness/db.js';
import { startTestRelay, type TestRelay } from '../harness/relay.js';
import { until } from '../harness/wait.js';

const KEY = 'certyo_sk_test_status_0123456789abcdef';
let db: TestDb;
let api: LocalCertyo;
const running: TestRelay[] = [];

before(async () => {
  db = await freshDatabase();
  await db.sql`create table items (id int primary key, name text not null)`;
  await db.sql`select certyo.enable_tracking('items')`;
  api = await startLocalCertyo({ keys: { [KEY]: 'acme' }, flushMs: 20, anchorMs: 30 });
});
afterEach(async () => {
  for (const r of running.splice(0)) await r.close();
});
after(async () => {
  await api.close();
  await db.close();
});

const row = async (id: number) => {
  const [r] =
    await db.sql`select certyo_anchor_status as s, certyo_record_version::text as v from items where id = ${id}`;
  return r as { s: string; v: string };
};

describe('statuses stay true', () => {
  for (const [id, verify] of [
    [1, 'off'],
    [2, 'on'],
  ] as const) {
    test(`a write-back skipped for a row a user held, then rolled back, is written anyway (verification ${verify})`, async () => {
      await db.sql`insert into items values (${id}, 'first')`;
      const { v } = await row(id);
      const user = await db.sql.reserve();
      try {
        await user`begin`;
        await user`update items set name = 'never' where id = ${id}`;
        // Verification, when on, would not look before an hour: it is not what writes the status.
        const relay = await startTestRelay(db.url, {
          CERTYO_API_KEY: KEY,
          CERTYO_TENANT_ID: 'acme',
          CERTYO_BASE_URL: api.url,
          CERTYO_POLL_INTERVAL_MS: '50',
          CERTYO_VERIFY: verify,
          CERTYO_VERIFY_DELAY_MS: '3600000',
        });
        running.push(relay);
        await until(
          async () => (await db.sql`select from certyo.receipt where id = ${v}::bigint`).length === 1,
        );
        // Acknowledged while the user held the row: the write-back skipped it, and said so.
        assert.equal((await row(id)).s, 'pending');
        const [due] =
          await db.sql`select write_due_at is not null as due from certyo.receipt where id = ${v}::bigint`;
        assert.equal(due!.due, true);
        await user`rollback`;
      } finally {
        user.release();
      }
      await until(async () => (await row(id)).s === 'submitted');
      assert.equal((await row(id)).v, v, 'the version Certyo has');
      const [left] =
        await db.sql`select count(*)::int as n from certyo.receipt where write_due_at is not null`;
      assert.equal(left!.n, 0);
    });
  }

  test('a skipped write-back whose row got a newer version meanwhile is dropped, not written', async () => {
    await db.sql`insert into items values (3, 'first')`;
    const { v } = await row(3);
    const user = await db.sql.reserve();
    try {
      await user`begin`;
      await user`update items set name = 'second' where id = 3`;
      const relay = await startTestRelay(db.url, {
        CERTYO_API_KEY: KEY,
        CERTYO_TENANT_ID: 'acme',
        CERTYO_BASE_URL: api.url,
        CERTYO_POLL_INTERVAL_MS: '50',
        CERTYO_VERIFY: 'off',
      });
      running.push(relay);
      await until(
        async () => (await db.sql`select from certyo.receipt where id = ${v}::bigint`).length === 1,
      );
      await user`commit`;
    } finally {
      user.release();
    }
    // The newer version is delivered and written; the older one's due write is dropped.
    await until(async () => {
      const r = await row(3);
      return r.v !== v && r.s === 'submitted';
    });
    await until(
      async () =>
        (await db.sql`select count(*)::int as n from certyo.receipt where write_due_at is not null`)[0]!.n ===
        0,
    );
  });
});
