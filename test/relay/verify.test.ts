// Verification and write-back: rows go pending -> submitted -> anchored with
// Certyo's hash and a proof we walked ourselves; failures end in visible
// states without loops; a lying service is caught; write-back never costs a
// user transaction an update or a deadlock. Every test runs against the local
// server twice: in full and in documented-only mode (only what Certyo
// documents: no per-record results, no listing, no batches, no proofs).
import assert from 'node:assert/strict';
import { after, afterEach, before, describe, test } from 'node:test';
import postgres from 'postgres';
import { walkProof } from '../../relay/src/certyo/merkle.js';
import { type LocalCertyo, NO_FAULTS, startLocalCertyo } from '../../relay/src/local-certyo/server.js';
import { freshDatabase, type TestDb } from '../harness/db.js';
import { startTestRelay, type TestRelay } from '../harness/relay.js';
import { until } from '../harness/wait.js';

const KEY = 'certyo_sk_test_verify_0123456789abcdef';
let db: TestDb;
let api: LocalCertyo;
const apis = {} as Record<Mode, LocalCertyo>;
type Mode = 'full' | 'documented';
let logLines: string[] = [];
const running: TestRelay[] = [];

async function startRelay(env: Record<string, string> = {}) {
  const entry = await startTestRelay(
    db.url,
    {
      CERTYO_API_KEY: KEY,
      CERTYO_TENANT_ID: 'acme',
      CERTYO_BASE_URL: api.url,
      CERTYO_BACKOFF_BASE_MS: '5',
      CERTYO_BACKOFF_MAX_MS: '200',
      CERTYO_POLL_INTERVAL_MS: '50',
      CERTYO_VERIFY_DELAY_MS: '0',
      CERTYO_VERIFY_INTERVAL_MS: '20',
      CERTYO_VERIFY_ATTEMPTS: '5',
      CERTYO_VERIFY_RECHECK_MS: '3600000',
      ...env,
    },
    (line) => logLines.push(line),
  );
  running.push(entry);
  return entry;
}

/** Waits until the query returns a row whose n is true (polling the database, not the clock). */

const unsettled = async () => {
  const [r] = await db.sql`
    select (select count(*) from certyo.outbox)::int + (select count(*) from certyo.receipt
      where anchor_status = 'submitted' or (next_check_at is not null and anchor_status <> 'anchor_failed'))::int as n`;
  return r!.n as number;
};

before(async () => {
  db = await freshDatabase();
  await db.sql`create table items (id int primary key, name text not null, qty int not null default 0, note json)`;
  await db.sql`select certyo.enable_tracking('items')`;
  for (const mode of ['full', 'documented'] as const) {
    apis[mode] = await startLocalCertyo({
      keys: { [KEY]: 'acme' },
      flushRecords: 1000,
      flushMs: 20,
      anchorMs: 30,
      documentedOnly: mode === 'documented',
    });
  }
});
afterEach(async () => {
  for (const r of running.splice(0)) await r.close();
  Object.assign(api.faults, NO_FAULTS);
  await db.sql`delete from items`;
  await db.sql`delete from certyo.outbox`;
  await db.sql`delete from certyo.receipt`;
  api.requests.length = 0;
  logLines = [];
});
after(async () => {
  for (const a of Object.values(apis)) await a.close();
  await db.close();
});

for (const mode of ['full', 'documented'] as const)
  describe(`verification (${mode} API)`, () => {
    const documented = mode === 'documented';
    before(() => {
      api = apis[mode];
    });

    test('rows go pending -> submitted -> anchored with Certyo hash, time and a proof that walks to the root', async (t) => {
      api.ledger.options.anchorMs = 400; // long enough to see 'submitted' first
      try {
        await db.sql`insert into items select g, 'item ' || g from generate_series(1, 2500) g`;
        const [before] =
          await db.sql`select count(*) filter (where certyo_anchor_status = 'pending')::int as n from items`;
        assert.equal(before!.n, 2500);
        const r = await startRelay();
        await until(async () => {
          const [x] =
            await db.sql`select count(*)::int as n from items where certyo_anchor_status = 'submitted'`;
          return x!.n > 0;
        });
        await until(async () => (await unsettled()) === 0);
        const rows = await db.sql`
        select id, certyo_anchor_status as s, certyo_record_hash as h, certyo_verified_at as va,
               certyo_record_version::text as v
        from items order by id`;
        assert.equal(rows.filter((x) => x.s === 'anchored').length, 2500);
        const snaps = new Map(api.ledger.all.map((s) => [`${s.recordId}/${s.recordVersion}`, s]));
        for (const row of rows) {
          assert.equal(row.h, snaps.get(`${row.id}/${row.v}`)?.recordHash, `row ${row.id}: Certyo's hash`);
          assert.ok(row.va instanceof Date, `row ${row.id}: verified_at set`);
        }
        const hist = await db.sql`select * from certyo.record_history('items', '17')`;
        assert.equal(hist.length, 1);
        const h = hist[0]!;
        assert.equal(h.anchor_status, 'anchored');
        const requests = r.relay.verifier!.metrics.requests;
        if (documented) {
          // No hash at acceptance: each record was asked about with its payload (kept until
          // verified, then cleared); Certyo's verified: true stands, as no proof comes with it.
          const [kept] = await db.sql`
            select count(*) filter (where accepted_at is null)::int as no_results,
                   count(*) filter (where payload is not null)::int as payloads,
                   count(*) filter (where detail like 'verified by Certyo%')::int as trusted
            from certyo.receipt`;
          assert.deepEqual({ ...kept }, { no_results: 2500, payloads: 0, trusted: 2500 });
          assert.equal(h.merkle_proof, null);
          const perRecord = api.requests.filter((q) => q.path === '/api/v1/verify/record').length;
          // Reported in the note. Each record is asked until its batch anchors (400 ms
          // here), with a backoff: a loop that asked without one would make hundreds per record.
          t.diagnostic(
            `documented-only verification: ${requests} requests for 2500 records (${perRecord} /verify/record), ${(requests / 2500).toFixed(2)} per record`,
          );
          assert.ok(perRecord >= 2500 && requests <= 4 * 2500, `${requests} requests for 2500 records`);
          return;
        }
        // The proof kept in the receipt walks from the hash to the root kept with it, which is the batch's.
        assert.equal(walkProof(h.record_hash, h.merkle_proof), h.merkle_root);
        const view = api.ledger.view(snaps.get(`17/${h.version}`)!);
        assert.equal(`0x${h.merkle_root}`, view.onChainMerkleRoot);
        assert.equal(h.polygon_tx_hash, view.polygonTxHash);
        assert.equal(Number(h.block_number), view.blockNumber);
        assert.ok(h.anchored_at instanceof Date);
        // Far fewer requests than records: listing pages and one batch fetch per batch. How many
        // rounds look before a batch anchors (400 ms here) depends on the pace of the machine: up to 62
        // requests were seen; asking per record would take at least 2,500.
        assert.ok(requests > 0 && requests <= 125, `${requests} verification requests for 2500 records`);
        // Write-back produced no change records.
        const [left] = await db.sql`select count(*)::int as n from certyo.outbox`;
        assert.equal(left!.n, 0);
      } finally {
        api.ledger.options.anchorMs = 30;
      }
    });

    test('a row updated between submit and anchor ends with the newer version status; the older keeps its proof', async () => {
      api.faults.anchorNever = true; // the first version's batch waits until we say so
      await db.sql`insert into items values (1, 'first')`;
      await startRelay();
      await until(async () => {
        const [x] = await db.sql`select certyo_anchor_status as s from items where id = 1`;
        return x!.s === 'submitted';
      });
      const [v1] = await db.sql`select certyo_record_version::text as v from items where id = 1`;
      api.faults.anchorNever = false;
      await db.sql`update items set name = 'second' where id = 1`;
      const [v2] = await db.sql`select certyo_record_version::text as v from items where id = 1`;
      // Now anchor the old batch: its write-back must not touch the newer version.
      await until(async () => (await db.sql`select 1 from certyo.receipt where id = ${v2!.v}`).length > 0);
      api.ledger.anchorNow();
      await until(async () => {
        const rs = await db.sql`select anchor_status from certyo.receipt where anchor_status = 'anchored'`;
        return rs.length === 2;
      });
      const [row] =
        await db.sql`select certyo_anchor_status as s, certyo_record_hash as h, certyo_record_version::text as v from items where id = 1`;
      assert.equal(row!.v, v2!.v);
      assert.equal(row!.s, 'anchored');
      const snap2 = api.ledger.all.find((s) => s.recordVersion === v2!.v)!;
      assert.equal(row!.h, snap2.recordHash, 'the row carries the newer version hash');
      const hist = await db.sql`select version::text from certyo.record_history('items', '1')`;
      assert.deepEqual(
        hist.map((x) => x.version),
        [v2!.v, v1!.v],
        'both versions anchored, newest first',
      );
    });

    test('anchoring that fails or never completes ends in anchor_failed after bounded checks, not a loop', async () => {
      for (const fault of ['anchorFail', 'anchorNever'] as const) {
        api.faults[fault] = true;
        await db.sql`insert into items select g, 'x' from generate_series(1, 20) g`;
        const r = await startRelay();
        await until(async () => {
          const [x] =
            await db.sql`select count(*)::int as n from items where certyo_anchor_status = 'anchor_failed'`;
          return x!.n === 20;
        });
        const receipts = await db.sql`
        select checks, extract(epoch from next_check_at - now())::float8 as wait, detail from certyo.receipt`;
        for (const rc of receipts) {
          assert.ok(rc.checks <= 5, `${fault}: ${rc.checks} checks (at most CERTYO_VERIFY_ATTEMPTS)`);
          assert.ok(
            rc.wait > 3000,
            `${fault}: re-checked only after CERTYO_VERIFY_RECHECK_MS, got ${rc.wait} s`,
          );
        }
        // Counted once the settlement's commit returns: a moment after the rows show it.
        await until(() => r.relay.verifier!.metrics.anchorFailed >= 20);
        for (const x of running.splice(0)) await x.close();
        api.faults[fault] = false;
        await db.sql`delete from items`;
        await db.sql`delete from certyo.outbox`;
        await db.sql`delete from certyo.receipt`;
      }
    });

    test('a root or a hash that Certyo misreports is caught as mismatch, logged and counted', async () => {
      // Without a proof in Certyo's answers (documented), a wrong root cannot be seen here.
      for (const fault of documented ? (['wrongHash'] as const) : (['wrongRoot', 'wrongHash'] as const)) {
        api.faults[fault] = true;
        await db.sql`insert into items select g, 'x' from generate_series(1, 10) g`;
        const r = await startRelay();
        await until(async () => {
          const [x] =
            await db.sql`select count(*)::int as n from items where certyo_anchor_status = 'mismatch'`;
          return x!.n === 10;
        });
        const [rc] = await db.sql`select detail from certyo.receipt limit 1`;
        assert.match(
          rc!.detail,
          fault === 'wrongRoot'
            ? /walks to [0-9a-f]{64}, but Certyo reports root/
            : documented
              ? /does not verify this version as delivered \(payload_mismatch; it holds hash [0-9a-f]{64}\)/
              : /reports record hash/,
        );
        // Counted and logged once the settlement's commit returns: a moment after the rows show it.
        await until(() => r.relay.verifier!.metrics.mismatches >= 10);
        assert.equal(r.relay.verifier!.metrics.mismatches, 10);
        assert.ok(logLines.some((l) => l.includes('"level":50') && l.includes('verification mismatch')));
        // Not final yet: checked again on the anchor_failed schedule (an hour here).
        const [due] = await db.sql`select count(*)::int as n from certyo.receipt
                                 where anchor_status = 'mismatch' and next_check_at > now() + interval '50 minutes'`;
        assert.equal(due!.n, 10);
        for (const x of running.splice(0)) await x.close();
        api.faults[fault] = false;
        await db.sql`delete from items`;
        await db.sql`delete from certyo.outbox`;
        await db.sql`delete from certyo.receipt`;
        logLines = [];
      }
    });

    test('a mismatch is checked again before it is final: a transient wrong answer heals, a second one stays', async () => {
      const lie = documented ? 'wrongHash' : 'wrongRoot';
      api.faults[lie] = true;
      await db.sql`insert into items select g, 'x' from generate_series(1, 10) g`;
      const statuses = async () =>
        (
          await db.sql`select certyo_anchor_status as s, count(*)::int as n from items group by 1 order by 1`
        ).map((x) => [x.s, x.n]);
      await startRelay({ CERTYO_VERIFY_RECHECK_MS: '1000' });
      await until(async () => JSON.stringify(await statuses()) === '[["mismatch",10]]');
      // Certyo answers right again: the re-check anchors them.
      api.faults[lie] = false;
      await until(async () => JSON.stringify(await statuses()) === '[["anchored",10]]');
      for (const x of running.splice(0)) await x.close();
      await db.sql`delete from items`;
      await db.sql`delete from certyo.outbox`;
      await db.sql`delete from certyo.receipt`;
      // Wrong twice: final.
      api.faults[lie] = true;
      await db.sql`insert into items select g, 'x' from generate_series(1, 10) g`;
      const r = await startRelay({ CERTYO_VERIFY_RECHECK_MS: '1000' });
      await until(async () => {
        const [x] = await db.sql`select count(*)::int as n from certyo.receipt
                               where anchor_status = 'mismatch' and next_check_at is null`;
        return x!.n === 10;
      });
      // The verifier counts a round once its settlement's commit returns: a moment after the receipts show it.
      await until(() => r.relay.verifier!.metrics.mismatches >= 20);
      assert.equal(r.relay.verifier!.metrics.mismatches, 20);
      const [rc] = await db.sql`select detail from certyo.receipt limit 1`;
      assert.match(rc!.detail, /a second time: final/);
      assert.deepEqual(await statuses(), [['mismatch', 10]]);
      for (const x of running.splice(0)) await x.close();
      api.faults[lie] = false;
      await db.sql`delete from items`;
      await db.sql`delete from certyo.outbox`;
      await db.sql`delete from certyo.receipt`;
    });

    // The documented-only server has neither the listing nor the batch endpoint: these two
    // are its cases, run against the full server with one endpoint taken away.
    if (!documented)
      test('without the record listing, every record is verified by its hash and reaches anchored', async (t) => {
        api.faults.noListing = true;
        api.faults.noBatchApi = true;
        await db.sql`insert into items select g, 'x' from generate_series(1, 60) g`;
        const before = api.requests.length;
        const r = await startRelay();
        await until(async () => (await unsettled()) === 0);
        const [x] =
          await db.sql`select count(*)::int as n from items where certyo_anchor_status = 'anchored'`;
        assert.equal(x!.n, 60);
        const asked = api.requests.slice(before);
        const listings = asked.filter((q) => q.method === 'GET' && q.path === '/api/v1/records');
        // Remembered: asked at most once by each verification loop that started a round before
        // the first 404 came back (2 x CERTYO_CONCURRENCY + 1 loops), not once per round.
        assert.ok(
          listings.length >= 1 && listings.length <= 5,
          `the listing was asked ${listings.length} times`,
        );
        const perRecord = asked.filter((q) => q.path === '/api/v1/verify/payload').length;
        // Reported in the note: verification requests per record without the listing.
        t.diagnostic(
          `verification without the listing: ${r.relay.verifier!.metrics.requests} requests for 60 records (${perRecord} /verify/payload)`,
        );
        assert.ok(perRecord >= 60);
        for (const h of await db.sql`select * from certyo.history`)
          assert.equal(walkProof(h.record_hash, h.merkle_proof), h.merkle_root);
        api.faults.noListing = false;
        api.faults.noBatchApi = false;
      });

    if (!documented)
      test('without the batch endpoint, proofs come from /verify/payload and still walk', async () => {
        api.faults.noBatchApi = true;
        await db.sql`insert into items select g, 'x' from generate_series(1, 30) g`;
        await startRelay();
        await until(async () => (await unsettled()) === 0);
        const [x] =
          await db.sql`select count(*)::int as n from items where certyo_anchor_status = 'anchored'`;
        assert.equal(x!.n, 30);
        assert.ok(api.requests.some((q) => q.path === '/api/v1/verify/payload'));
        const hist = await db.sql`select * from certyo.history`;
        for (const h of hist) assert.equal(walkProof(h.record_hash, h.merkle_proof), h.merkle_root);
      });

    test('429 from verification: not counted as a check, Retry-After honoured, nothing lost', async () => {
      await db.sql`insert into items select g, 'x' from generate_series(1, 50) g`;
      await startRelay({ CERTYO_VERIFY: 'off' });
      await until(async () => (await db.sql`select 1 from certyo.receipt`).length === 50);
      for (const x of running.splice(0)) await x.close();
      const verifying = (q: { path: string; outcome: string }) =>
        !q.path.endsWith('/bulk') && q.outcome === '429';
      // A 429 storm with Retry-After: 0: asked again and again, never counted as a check
      // (with 2 attempts allowed, counting would have failed every row long before).
      Object.assign(api.faults, { rate429: 1, retryAfterSeconds: 0 });
      await startRelay({ CERTYO_VERIFY_ATTEMPTS: '2' });
      await until(async () => api.requests.filter(verifying).length >= 100);
      for (const x of running.splice(0)) await x.close();
      const [rc] = await db.sql`
        select sum(checks)::int as checks, count(*) filter (where anchor_status <> 'submitted')::int as decided
        from certyo.receipt`;
      assert.deepEqual({ ...rc }, { checks: 0, decided: 0 });
      // Retry-After: 30 s: the receipts wait that long.
      api.faults.retryAfterSeconds = 30;
      const seen = api.requests.filter(verifying).length;
      await startRelay();
      await until(async () => {
        const [x] =
          await db.sql`select count(*)::int as n from certyo.receipt where next_check_at > now() + interval '20 seconds'`;
        return x!.n === 50;
      });
      for (const x of running.splice(0)) await x.close();
      assert.ok(api.requests.filter(verifying).length > seen);
      // Certyo is back: every row anchors.
      api.faults.rate429 = 0;
      await db.sql`update certyo.receipt set next_check_at = now()`;
      await startRelay();
      await until(async () => (await unsettled()) === 0);
      const [x] = await db.sql`select count(*)::int as n from items where certyo_anchor_status = 'anchored'`;
      assert.equal(x!.n, 50);
    });

    test('write-back under concurrent user updates: no lost update, no deadlock, newest version wins', async () => {
      await db.sql`insert into items select g, 'x' from generate_series(1, 200) g`;
      api.ledger.options.anchorMs = 5;
      await startRelay({ CERTYO_CONCURRENCY: '2' });
      const users = Array.from({ length: 4 }, () => postgres(db.url, { max: 1, onnotice: () => {} }));
      const perUser = 150;
      try {
        await Promise.all(
          users.map(async (u, n) => {
            for (let i = 0; i < perUser; i++) {
              // Several rows per transaction, locked in id order (users never deadlock each other,
              // so a deadlock could only come from the write-back).
              const ids = Array.from({ length: 5 }, (_, k) => 1 + ((i * 7 + k * 13 + n * 31) % 200)).sort(
                (a, b) => a - b,
              );
              await u.begin(async (tx) => {
                for (const id of ids) await tx`update items set qty = qty + 1 where id = ${id}`;
              });
            }
          }),
        );
      } finally {
        await Promise.all(users.map((u) => u.end()));
      }
      const [sum] = await db.sql`select sum(qty)::int as n from items`;
      assert.equal(sum!.n, 4 * perUser * 5, 'every user increment is there');
      await until(async () => (await unsettled()) === 0);
      const bad = await db.sql`
      select i.id, i.certyo_anchor_status, r.anchor_status, r.next_check_at, r.checks, r.detail, i.certyo_record_hash = r.record_hash as same
      from items i
      left join certyo.receipt r on r.id = i.certyo_record_version
      where i.certyo_anchor_status <> 'anchored' or r.anchor_status is distinct from 'anchored'
        or i.certyo_record_hash is distinct from r.record_hash`;
      assert.deepEqual([...bad], [], 'every row shows its own (newest) version anchored');
      api.ledger.options.anchorMs = 30;
    });

    // Database only: once is enough.
    if (!documented)
      test('settle is fenced by the lease: another token settles nothing', async () => {
        await db.sql`insert into items values (5, 'x')`;
        await startRelay({ CERTYO_VERIFY: 'off' });
        await until(async () => (await db.sql`select 1 from certyo.receipt`).length === 1);
        const [rc] = await db.sql`select id::text from certyo.receipt`;
        const [claimed] =
          await db.sql`select count(*)::int as n from certyo.claim_verification(gen_random_uuid(), 10, '60 s', '0 s')`;
        assert.equal(claimed!.n, 1);
        const forged = [{ id: rc!.id, status: 'anchored', checked: true, next_check_ms: null }];
        const [n] =
          await db.sql`select certyo.settle_verification(gen_random_uuid(), ${db.sql.json(forged)}) as n`;
        assert.equal(n!.n, 0);
        const [row] = await db.sql`select certyo_anchor_status as s from items where id = 5`;
        assert.equal(row!.s, 'submitted');
      });
  });
