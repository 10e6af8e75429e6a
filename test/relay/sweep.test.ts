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

/** Delivers and anchors everything captured so far, with a relay that then stops. */
async function deliverAll() {
  const r = await startTestRelay(db.url, {
    CERTYO_API_KEY: KEY,
    CERTYO_TENANT_ID: 'acme',
    CERTYO_BASE_URL: api.url,
    CERTYO_POLL_INTERVAL_MS: '20',
    CERTYO_VERIFY_DELAY_MS: '0',
    CERTYO_VERIFY_INTERVAL_MS: '20',
  });
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
      'public.notes': { anchored: 0, pending: 0, tampered: 1, never_anchored: 0 },
    });
    const bad = await cli(['verify', 'no_such_table']);
    assert.equal(bad.code, 1);
  });
});
