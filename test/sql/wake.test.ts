// Wake-up: writers NOTIFY only while a relay is registered as waiting.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { freshDatabase, type TestDb } from '../harness/db.js';

let db: TestDb;
const RELAY = '5f0c2a43-6a1e-4c59-9d8e-2b7a4f1d3c11';
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
    await db.sql`select certyo.relay_wait(${RELAY}::uuid)`;
    await db.sql`insert into items values (3)`;
    // The writer took the registration: later writers neither notify nor wait.
    assert.deepEqual([...(await db.sql`select relay from certyo.waiting_relay`)], []);
    await db.sql.begin(async (tx) => {
      await tx`insert into items values (4)`;
      await tx`insert into items values (5)`;
    });
    assert.deepEqual(await drain(), ['certyo_wakeup']);
    // Registered again (as a relay does once it finds nothing to claim): one more.
    await db.sql`select certyo.relay_wait(${RELAY}::uuid)`;
    await db.sql`insert into items values (6)`;
    await db.sql`insert into items values (7)`;
    assert.deepEqual(await drain(), ['certyo_wakeup']);
  });

  test('registering never waits for a writer that is taking the registration', async () => {
    await db.sql`select certyo.relay_wait(${RELAY}::uuid)`;
    const writer = await db.sql.reserve();
    try {
      await writer`begin`;
      await writer`insert into items values (8)`; // takes (locks, deletes) the registration
      await db.sql.begin(async (tx) => {
        await tx`set local lock_timeout = '2s'`;
        await tx`select certyo.relay_wait(${RELAY}::uuid)`;
        await tx`select certyo.relay_busy(${RELAY}::uuid)`;
      });
      await writer`commit`;
    } finally {
      writer.release();
    }
    assert.deepEqual(await drain(), ['certyo_wakeup']);
    // Registered and unregistered: the next writer sends nothing.
    await db.sql`select certyo.relay_wait(${RELAY}::uuid)`;
    await db.sql`select certyo.relay_busy(${RELAY}::uuid)`;
    await db.sql`insert into items values (9)`;
    assert.deepEqual(await drain(), []);
  });
});
