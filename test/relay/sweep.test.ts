// The tamper sweep (certyo.verify / certyo-pg verify): every row edited while
// capture was bypassed is found, with evidence, and flagged; rows changed the
// normal way are not.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { type LocalCertyo, startLocalCertyo } from '../../relay/src/local-certyo/server.js';
import { paths } from '../../relay/src/paths.js';
import { freshDatabase, type TestDb } from '../harness/db.js';
import { startTestRelay } from '../harness/relay.js';
import { until } from '../harness/wait.js';

const KEY = 'certyo_sk_test_sweep_0123456789abcdef';
const exec = promisify(execFile);
let db: TestDb;
let api: LocalCertyo;

async function cli(args: string[]) {
  try {
    const { stdout } = await exec(process.execPath, [`${paths.root}bin/certyo-pg.js`, ...args], {
      env: { ...process.env, DATABASE_URL: db.url },
      maxBuffer: 64 * 1024 * 1024,
    });
    return { code: 0, stdout };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

const settled = () =>
  until(async () => {
    const [r] = await db.sql`
      select (select count(*) from certyo.outbox)::int
           + (select count(*) from certyo.receipt where anchor_status <> 'anchored')::int as n`;
    return r!.n === 0;
  });

/** Delivers and anchors everything captured (and backfilled) so far, with a relay that then stops. */
async function deliverAll() {
  const r = await startTestRelay(db.url, {
    CERTYO_API_KEY: KEY,
    CERTYO_TENANT_ID: 'acme',
    CERTYO_BASE_URL: api.url,
    CERTYO_POLL_INTERVAL_MS: '20',
    CERTYO_VERIFY_DELAY_MS: '0',
    CERTYO_VERIFY_INTERVAL_MS: '20',
  });
  await until(async () => (await db.sql`select from certyo.backfill where finished_at is null`).length === 0);
  await settled();
  await r.close();
}

before(async () => {
  db = await freshDatabase();
  api = await startLocalCertyo({ keys: { [KEY]: 'acme' }, flushRecords: 1000, flushMs: 10, anchorMs: 10 });
  await db.sql`
    create table ledger_entries (
      id bigint primary key, account text not null, amount numeric(14,2) not null,
      booked_at timestamptz not null default '2026-01-01T00:00:00Z', memo json, big bigint
    )`;
  await db.sql`select certyo.enable_tracking('ledger_entries')`;
  await db.sql`
    insert into ledger_entries (id, account, amount, memo, big)
    select g, 'acct-' || (g % 97), g * 1.01, json_build_object('n', g, 's', 'é"\\'), 9007199254740993 + g
    from generate_series(1, 10000) g`;
  await deliverAll();
});
after(async () => {
  await api.close();
  await db.close();
});

describe('tamper sweep', () => {
  test('finds all 50 rows edited with triggers bypassed among 10,000, flags them, and none changed normally', async () => {
    const tamperedIds = Array.from({ length: 50 }, (_, i) => 37 + i * 197);
    const normalIds = Array.from({ length: 30 }, (_, i) => 101 + i * 311);
    await db.sql.begin(async (tx) => {
      await tx`set local session_replication_role = replica`;
      // Edits of every kind of column, none of them visible to capture.
      await tx`update ledger_entries set amount = amount + 0.01 where id = any(${tamperedIds.slice(0, 20)})`;
      await tx`update ledger_entries set memo = '{"n": 0}' where id = any(${tamperedIds.slice(20, 35)})`;
      await tx`update ledger_entries set big = big + 1 where id = any(${tamperedIds.slice(35, 50)})`;
    });
    // A normal update is captured, and stays pending (no relay running).
    await db.sql`update ledger_entries set amount = amount * 2 where id = any(${normalIds})`;
    // A row inserted while capture was bypassed was never captured.
    await db.sql.begin(async (tx) => {
      await tx`set local session_replication_role = replica`;
      await tx`insert into ledger_entries (id, account, amount) values (20001, 'ghost', 1)`;
    });

    const { code, stdout } = await cli(['verify', 'ledger_entries', '--json']);
    assert.equal(code, 1, 'exit 1: tampering found');
    const report = JSON.parse(stdout);
    assert.equal(report.checked, 10001);
    assert.deepEqual(report.tables['public.ledger_entries'], {
      anchored: 10000 - 50 - 30,
      pending: 30,
      tampered: 50,
      deleted: 0,
      partially_anchored: 0,
      unverifiable: 0,
      never_anchored: 1,
    });
    assert.deepEqual(
      report.tampered
        .map((r: { record_id: string }) => Number(r.record_id))
        .sort((a: number, b: number) => a - b),
      tamperedIds,
    );
    for (const r of report.tampered) {
      assert.match(r.record_hash, /^[0-9a-f]{64}$/);
      assert.notEqual(r.anchored_digest, r.current_digest, 'the evidence: digest then vs now');
      assert.equal(r.anchor_status, 'anchored');
    }
    assert.equal(report.flagged, 50);
    const flagged =
      await db.sql`select id from ledger_entries where certyo_anchor_status = 'tampered' order by id`;
    assert.deepEqual(
      flagged.map((r) => Number(r.id)),
      tamperedIds,
    );

    // A second sweep finds them again; a later real change clears the flag.
    const [again] =
      await db.sql`select count(*)::int as n from certyo.verify('ledger_entries') where verdict = 'tampered'`;
    assert.equal(again!.n, 50);
    await db.sql`update ledger_entries set account = 'fixed' where id = ${tamperedIds[0]!}`;
    const [one] =
      await db.sql`select verdict, anchor_status from certyo.verify('ledger_entries', ${String(tamperedIds[0])})`;
    assert.equal(one!.verdict, 'pending');
    const human = await cli(['verify', 'ledger_entries', '--no-flag']);
    assert.equal(human.code, 1);
    assert.match(human.stdout, /49 TAMPERED/);
    assert.match(human.stdout, /TAMPERED public\.ledger_entries record \d+ \(version \d+\): row differs/);
  });

  test('a change made with the capture trigger disabled is tampered; a clean table exits 0', async () => {
    await db.sql`create table notes (id int primary key, body text)`;
    await db.sql`select certyo.enable_tracking('notes')`;
    await db.sql`insert into notes values (1, 'a'), (2, 'b')`;
    await deliverAll();
    const clean = await cli(['verify', 'notes']);
    assert.equal(clean.code, 0, clean.stdout);
    assert.match(clean.stdout, /public\.notes: 2 rows: 2 anchored, 0 pending, 0 TAMPERED/);
    await db.sql`alter table notes disable trigger certyo_capture_update`;
    await db.sql`update notes set body = 'edited' where id = 2`;
    await db.sql`alter table notes enable trigger certyo_capture_update`;
    const rows =
      await db.sql`select record_id, verdict, detail from certyo.verify('notes', all_rows => true) order by record_id`;
    assert.deepEqual(
      rows.map((r) => [r.record_id, r.verdict]),
      [
        ['1', 'anchored'],
        ['2', 'tampered'],
      ],
    );
    assert.match(rows[1]!.detail, /never captured/);
    const one = await cli(['verify', 'notes', '--record', '2', '--json', '--no-flag']);
    assert.equal(one.code, 1);
    assert.deepEqual(JSON.parse(one.stdout).tables, {
      'public.notes': {
        anchored: 0,
        pending: 0,
        tampered: 1,
        deleted: 0,
        partially_anchored: 0,
        unverifiable: 0,
        never_anchored: 0,
      },
    });
    const bad = await cli(['verify', 'no_such_table']);
    assert.equal(bad.code, 1);
  });

  test('50 edits and 20 deletes behind capture in 10,000 rows are exactly the 70 findings; key changes and deletes made normally are none', async () => {
    await db.sql`create table stock (sku int primary key, qty int not null, place text)`;
    await db.sql`select certyo.enable_tracking('stock')`;
    await db.sql`insert into stock select g, g % 50, 'shelf ' || (g % 7) from generate_series(1, 10000) g`;
    await deliverAll();
    const edited = Array.from({ length: 50 }, (_, i) => 13 + i * 191);
    const gone = Array.from({ length: 20 }, (_, i) => 29 + i * 487);
    await db.sql.begin(async (tx) => {
      await tx`set local session_replication_role = replica`;
      await tx`update stock set qty = qty + 1 where sku = any(${edited})`;
      await tx`delete from stock where sku = any(${gone})`;
    });
    // Captured the normal way: a key changed by UPDATE (the old key ends with a delete,
    // the new one starts with an insert), a delete, both delivered; and a delete still
    // waiting in the outbox.
    await db.sql`update stock set sku = 20001 where sku = 2`;
    await db.sql`delete from stock where sku = 3`;
    await deliverAll();
    await db.sql`delete from stock where sku = 4`;
    const history = await db.sql`select record_id, operation from certyo.history
                                 where table_name = 'public.stock' and record_id in ('2', '20001')
                                 order by record_id, version`;
    assert.deepEqual(
      history.map((h) => [h.record_id, h.operation]),
      [
        ['2', 'insert'],
        ['2', 'delete'],
        ['20001', 'insert'],
      ],
    );
    const { code, stdout } = await cli(['verify', 'stock', '--json']);
    assert.equal(code, 1);
    const report = JSON.parse(stdout);
    assert.deepEqual(report.tables['public.stock'], {
      anchored: 10000 - 20 - 2 - 50,
      pending: 0,
      tampered: 50,
      deleted: 20,
      partially_anchored: 0,
      unverifiable: 0,
      never_anchored: 0,
    });
    assert.deepEqual(
      report.tampered
        .map((r: { record_id: string }) => Number(r.record_id))
        .sort((a: number, b: number) => a - b),
      edited,
    );
    assert.deepEqual(
      report.deleted
        .map((r: { record_id: string }) => Number(r.record_id))
        .sort((a: number, b: number) => a - b),
      gone,
    );
    // The evidence: the version delivered last, its Certyo hash and the digest of its payload.
    const receipts =
      await db.sql`select record_id, id::text as version, record_hash, encode(payload_digest, 'hex') as digest, finding
                                  from certyo.receipt r join certyo.tracked_table t using (table_id)
                                  where t.relid = 'stock'::regclass and record_id = any(${gone.map(String)})`;
    const byRecord = new Map(receipts.map((r) => [r.record_id, r]));
    for (const d of report.deleted) {
      const r = byRecord.get(d.record_id)!;
      assert.equal(d.version, r.version);
      assert.equal(d.record_hash, r.record_hash);
      assert.equal(d.anchored_digest, r.digest);
      assert.match(d.anchored_digest, /^[0-9a-f]{64}$/);
      assert.equal(r.finding, 'deleted', 'flagged on the receipt');
    }
    assert.equal(report.flaggedDeleted, 20);
    const text = await cli(['verify', 'stock', '--no-flag']);
    assert.match(
      text.stdout,
      /public\.stock: 9978 rows: 9928 anchored, 0 pending, 50 TAMPERED, 0 never anchored; 20 records DELETED behind capture/,
    );
    assert.match(
      text.stdout,
      /DELETED public\.stock record 29: the row is gone, but the last change delivered is insert version \d+/,
    );
  });

  test('10,000 anchored rows through ADD COLUMN, RENAME, ALTER TYPE and DROP COLUMN: no false alarm, edits still found', async () => {
    await db.sql`create table parts (id int primary key, qty int not null, place text, n int)`;
    await db.sql`select certyo.enable_tracking('parts')`;
    await db.sql`insert into parts select g, g % 50, 'bin ' || (g % 9), g from generate_series(1, 10000) g`;
    await deliverAll();
    const verify = async () => {
      const { code, stdout } = await cli(['verify', 'parts', '--json', '--no-flag']);
      return { code, report: JSON.parse(stdout), counts: JSON.parse(stdout).tables['public.parts'] };
    };
    const step = async (ddl: string, expect: Record<string, number>) => {
      await db.sql.unsafe(ddl);
      const { code, counts } = await verify();
      assert.equal(code, 0, `${ddl}: ${JSON.stringify(counts)}`);
      for (const [verdict, n] of Object.entries(expect))
        assert.equal(counts[verdict], n, `${ddl}: ${verdict}`);
      assert.equal(counts.tampered, 0, ddl);
    };
    await step('alter table parts add column note text', { partially_anchored: 10000 });
    await step("alter table parts add column flag text default 'x'", { partially_anchored: 10000 });
    await step('alter table parts rename column qty to quantity', { partially_anchored: 10000 });
    await step('alter table parts alter column n type bigint', { partially_anchored: 10000 });
    // Edited behind capture after those: found.
    await db.sql.begin(async (tx) => {
      await tx`set local session_replication_role = replica`;
      await tx`update parts set quantity = quantity + 1 where id in (11, 22, 33)`;
      await tx`update parts set n = n + 1 where id = 44`;
    });
    const edited = await verify();
    assert.equal(edited.code, 1);
    assert.deepEqual(edited.report.tampered.map((r: { record_id: string }) => r.record_id).sort(), [
      '11',
      '22',
      '33',
      '44',
    ]);
    // A column dropped: the anchored versions cannot be compared any more (not an alarm).
    await step('alter table parts drop column place', { unverifiable: 10000 });
    const { report } = await verify();
    assert.match(
      Object.keys(report.migrations)[0]!,
      /column\(s\) place dropped since this version was anchored/,
    );
    // Re-anchored in one call (after checking), edits are found again.
    await db.sql`select certyo.backfill('parts')`;
    await deliverAll();
    const again = await verify();
    assert.equal(again.code, 0);
    assert.equal(again.counts.anchored, 10000);
    await db.sql.begin(async (tx) => {
      await tx`set local session_replication_role = replica`;
      await tx`update parts set note = 'sneaky' where id = 5`;
    });
    const last = await verify();
    assert.equal(last.code, 1);
    assert.deepEqual(
      last.report.tampered.map((r: { record_id: string }) => r.record_id),
      ['5'],
    );
  });

  test('a type change that changes how values render is explained, not called tampering', async () => {
    await db.sql`create table prices (id int primary key, amount numeric(10,2))`;
    await db.sql`select certyo.enable_tracking('prices')`;
    await db.sql`insert into prices select g, g * 1.5 from generate_series(1, 100) g`;
    await deliverAll();
    await db.sql`alter table prices alter column amount type numeric(12,4)`;
    const { code, stdout } = await cli(['verify', 'prices', '--json', '--no-flag']);
    assert.equal(code, 0);
    const report = JSON.parse(stdout);
    assert.equal(report.tables['public.prices'].unverifiable, 100);
    assert.equal(report.tables['public.prices'].tampered, 0);
    assert.match(
      Object.keys(report.migrations)[0]!,
      /amount changed type from numeric\(10,2\) to numeric\(12,4\) since/,
    );
  });
});
