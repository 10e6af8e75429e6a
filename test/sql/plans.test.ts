// The relay's verbs read the outbox and the receipts by index, one probe per
// change, whatever the statistics say. Analyzed while nothing was leased, the
// statistics put "lease_token = this token" at one row, and the planner read
// the whole outbox once and the acknowledged ids once per row it kept (0.8 s
// to acknowledge 1,000 changes of a 24,000-change backlog); the receipts, which
// only grow, were read whole to lease or settle a thousand. Each test looks at
// the plan of every statement the verb ran (auto_explain).
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import postgres, { type Sql } from 'postgres';
import { freshDatabase, type TestDb } from '../harness/db.js';

let db: TestDb;
const BACKLOG = 3000;
const BATCH = 1000;

before(async () => {
  db = await freshDatabase();
  await db.sql.unsafe(`
    create table t (id int primary key, v int not null);
    select certyo.enable_tracking('t');
    insert into t select g, 0 from generate_series(1, ${BACKLOG}) g;
    analyze certyo.outbox;`);
});
after(async () => {
  await db.close();
});

/**
 * Runs the verb on a connection of its own with auto_explain on, and returns
 * its result and which of the tables that grow (outbox, receipts) it read by
 * a sequential scan: in the plan of any statement it ran, its functions' too.
 */
async function scansOf(verb: (sql: Sql) => Promise<unknown>) {
  const plans: string[] = [];
  const sql = postgres(db.url, { max: 1, onnotice: (n) => plans.push(n.message ?? '') });
  try {
    await sql.unsafe(`load 'auto_explain';
                      set auto_explain.log_min_duration = 0;
                      set auto_explain.log_nested_statements = on;
                      set auto_explain.log_level = notice`);
    const result = await verb(sql);
    assert.ok(plans.length > 0, 'auto_explain logged the plans');
    const seq = new Set<string>();
    for (const plan of plans)
      for (const m of plan.matchAll(/Seq Scan on (outbox|receipt)\b/g)) seq.add(m[1]!);
    return { result, seq: [...seq].sort() };
  } finally {
    await sql.end({ timeout: 1 });
  }
}

const ids = (rows: Array<{ id: string }>) => `{${rows.map((r) => r.id).join(',')}}`;

describe('relay verbs on a large analyzed backlog', () => {
  test('park and ack probe the outbox by id', async () => {
    const token = '00000000-0000-4000-8000-00000000b001';
    const claimed = await db.sql<{ id: string }[]>`select id::text from certyo.claim(${token}, ${BATCH})`;
    assert.equal(claimed.length, BATCH);
    const parked = claimed.slice(0, 10);
    const acked = claimed.slice(10);
    const park = await scansOf(async (sql) => {
      const [r] = await sql`select certyo.park(${token}, ${ids(parked)}::bigint[],
                                              array_fill('rejected'::text, array[${parked.length}::int])) as n`;
      return r!.n;
    });
    assert.equal(park.result, parked.length);
    assert.deepEqual(park.seq, [], 'park read these sequentially');
    const ack = await scansOf(async (sql) => {
      const [r] = await sql`select certyo.ack(${token}, ${ids(acked)}::bigint[],
                                             array(select md5(g::text) from generate_series(1, ${acked.length}::int) g),
                                             '{}', '{}', '{}') as n`;
      return r!.n;
    });
    assert.equal(ack.result, acked.length);
    assert.deepEqual(ack.seq, [], 'ack read these sequentially');
    const [left] = await db.sql`select count(*)::int as n from certyo.outbox`;
    assert.equal(left!.n, BACKLOG - acked.length);
  });

  test('claim_verification, settle_verification and write_due probe the receipts by index', async () => {
    // Enough receipts for a sequential scan to look cheap: deliver the rest of the backlog.
    const token = '00000000-0000-4000-8000-00000000b002';
    for (;;) {
      const claimed = await db.sql<{ id: string }[]>`select id::text from certyo.claim(${token}, ${BATCH})`;
      if (claimed.length === 0) break;
      await db.sql`select certyo.ack(${token}, ${ids(claimed)}::bigint[], '{}', '{}', '{}', '{}')`;
    }
    await db.sql`analyze certyo.receipt`;
    const lease = await scansOf(
      (sql) =>
        sql`select id::text from certyo.claim_verification(${token}, ${BATCH}, '60 seconds', '0 seconds')`,
    );
    const leased = lease.result as Array<{ id: string }>;
    assert.equal(leased.length, BATCH);
    assert.deepEqual(lease.seq, [], 'claim_verification read these sequentially');
    const results = leased.map((r) => ({
      id: Number(r.id),
      status: 'submitted',
      checked: true,
      next_check_ms: 0,
    }));
    const settle = await scansOf(async (sql) => {
      const [r] = await sql`select certyo.settle_verification(${token}, ${sql.json(results)}) as n`;
      return r!.n;
    });
    assert.equal(settle.result, BATCH);
    assert.deepEqual(settle.seq, [], 'settle_verification read these sequentially');
    await db.sql`update certyo.receipt set write_due_at = now() - interval '1 second'
                 where id in (select id from certyo.receipt order by id limit 100)`;
    const due = await scansOf(async (sql) => {
      const [r] = await sql`select certyo.write_due() as n`;
      return r!.n;
    });
    assert.deepEqual(due.seq, [], 'write_due read these sequentially');
    const [pending] =
      await db.sql`select count(*)::int as n from certyo.receipt where write_due_at is not null`;
    assert.equal(pending!.n, 0, 'every due write-back was done');
  });

  test('release gives back the leases by index', async () => {
    const token = '00000000-0000-4000-8000-00000000b003';
    await db.sql`insert into t select g, 0 from generate_series(${BACKLOG + 1}::int, ${BACKLOG + 100}::int) g`;
    const claimed = await db.sql`select id from certyo.claim(${token}, ${BATCH})`;
    assert.equal(claimed.length, 100);
    const checking =
      await db.sql`select id from certyo.claim_verification(${token}, 50, '60 seconds', '0 seconds')`;
    assert.equal(checking.length, 50);
    const release = await scansOf(async (sql) => {
      const [r] = await sql`select certyo.release(${token}) as n`;
      return r!.n;
    });
    assert.equal(release.result, 100);
    assert.deepEqual(release.seq, [], 'release read these sequentially');
    const [held] =
      await db.sql`select (select count(*) from certyo.outbox where lease_token = ${token})::int as o,
                                       (select count(*) from certyo.receipt where lease_token = ${token})::int as r`;
    assert.deepEqual({ ...held }, { o: 0, r: 0 }, 'every lease was given back');
  });
});
