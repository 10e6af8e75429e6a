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

  test('a relay waiting: an update wakes it, a status write-back does not', async () => {
    await db.sql`insert into items values (20)`;
    await db.sql`select certyo.relay_wait(${RELAY}::uuid)`;
    await db.sql`update items set id = 21 where id = 20`;
    assert.deepEqual(await drain(), ['certyo_wakeup']);
    // No wake-up trigger of its own any more: capture wakes.
    const [triggers] = await db.sql`
      select count(*)::int as n from pg_trigger where tgrelid = 'items'::regclass and tgname = 'certyo_wake'`;
    assert.equal(triggers!.n, 0);
    await db.sql`select certyo.relay_wait(${RELAY}::uuid)`;
    // The relay's write-back changes status columns only: nothing to deliver, no NOTIFY.
    const [row] = await db.sql`select certyo_record_version::text as v from items where id = 21`;
    await db.sql.begin(async (tx) => {
      await tx`set local certyo.status_write = 'on'`;
      await tx`select certyo.write_status(
        (select table_id from certyo.tracked_table where relid = 'items'::regclass),
        array['21'], array[${row!.v}::bigint], array['anchored'], array['h'], array[now()])`;
    });
    assert.deepEqual(await drain(), []);
    await db.sql`select certyo.relay_busy(${RELAY}::uuid)`;
  });

  test('a relay waiting: writes to a partitioned table wake it, each change kind', async () => {
    await db.sql`create table parts (id int primary key, n int) partition by range (id)`;
    await db.sql`create table parts_1 partition of parts for values from (0) to (100)`;
    await db.sql`create table parts_2 partition of parts for values from (100) to (200)`;
    await db.sql`select certyo.enable_tracking('parts')`;
    const writes = [
      'insert into parts values (1, 1)',
      'update parts set n = 2 where id = 1',
      'update parts set id = 150 where id = 1', // moves to the other partition
      'delete from parts where id = 150',
    ];
    for (const write of writes) {
      await db.sql`select certyo.relay_wait(${RELAY}::uuid)`;
      await db.sql.unsafe(write);
      assert.deepEqual(await drain(), ['certyo_wakeup']);
    }
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

  const inFlight = async () =>
    (await db.sql`select certyo.writers_in_flight(${RELAY}::uuid) as b`)[0]!.b as boolean;

  test('writers_in_flight: open while a transaction that wrote a change is, and only then', async () => {
    assert.equal(await inFlight(), false);
    const writer = await db.sql.reserve();
    try {
      await writer`begin`;
      await writer`select count(*) from items`; // reads take no lock that counts
      assert.equal(await inFlight(), false, 'a reader counted as a writer');
      await writer`insert into items values (10)`;
      assert.equal(await inFlight(), true, 'an open writer was not seen');
      await writer`commit`;
      assert.equal(await inFlight(), false, 'a committed writer still counted');
      await writer`begin`;
      await writer`update items set id = 11 where id = 10`;
      assert.equal(await inFlight(), true);
      await writer`rollback`;
      assert.equal(await inFlight(), false);
    } finally {
      writer.release();
    }
  });

  test('writers_in_flight: a REPEATABLE READ snapshot older than the registration counts', async () => {
    const writer = await db.sql.reserve();
    try {
      // Its snapshot predates the registration: whatever it writes later, it cannot see it.
      await writer`begin isolation level repeatable read`;
      await writer`select count(*) from items`;
      await db.sql`select certyo.relay_wait(${RELAY}::uuid)`;
      assert.equal(await inFlight(), true, 'a snapshot older than the registration was not seen');
      await writer`commit`;
      assert.equal(await inFlight(), false, 'a finished transaction still counted');
      // A snapshot taken after the registration may count too: its xmin is the oldest
      // transaction running anywhere in the cluster (other databases' included).
    } finally {
      writer.release();
      await db.sql`select certyo.relay_busy(${RELAY}::uuid)`;
    }
  });
});
