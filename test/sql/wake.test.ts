// Wake-up: writers NOTIFY only while a relay is registered as waiting.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { freshDatabase, type TestDb } from '../harness/db.js';

let db: TestDb;
const received: string[] = [];
let arrived: (() => void) | undefined;

before(async () => {
  db = await freshDatabase();
  await db.sql`create table items (id int primary key)`;
  await db.sql`select certyo.enable_tracking('items')`;
  for (const channel of ['certyo_wakeup', 'test_sentinel']) {
    await db.sql.listen(channel, () => {
      received.push(channel);
      arrived?.();
    });
  }
});
after(() => db.close());

/** Notifications arrive in commit order: once the sentinel is here, any earlier wake-up is too. */
async function drain(): Promise<string[]> {
  const done = new Promise<void>((resolve) => {
    arrived = () => received.at(-1) === 'test_sentinel' && resolve();
  });
  await db.sql`select pg_notify('test_sentinel', '')`;
  await done;
  return received.splice(0).filter((c) => c !== 'test_sentinel');
}

describe('wake-up', () => {
  test('no relay waiting: writes send no notification', async () => {
    await db.sql`insert into items values (1)`;
    await db.sql`update items set id = 2`;
    assert.deepEqual(await drain(), []);
  });

  test('a relay waiting: one notification per wait, taken by the first writer', async () => {
    await db.sql`insert into certyo.waiting_relay (pid) values (pg_backend_pid())`;
    await db.sql`insert into items values (3)`;
    // The writer took the registration: later writers neither notify nor wait.
    assert.deepEqual([...(await db.sql`select pid from certyo.waiting_relay`)], []);
    await db.sql.begin(async (tx) => {
      await tx`insert into items values (4)`;
      await tx`insert into items values (5)`;
    });
    assert.deepEqual(await drain(), ['certyo_wakeup']);
    // Registered again (as a relay does once it finds nothing to claim): one more.
    await db.sql`select certyo.relay_wait()`;
    await db.sql`insert into items values (6)`;
    await db.sql`insert into items values (7)`;
    assert.deepEqual(await drain(), ['certyo_wakeup']);
  });
});
