// The local Certyo server: endpoints, auth, idempotency, hashing, anchoring,
// proofs and every fault knob, over real HTTP on a random port.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { canonical, parseJson } from '../../relay/src/certyo/json.js';
import { walkProof } from '../../relay/src/certyo/merkle.js';
import { type LocalCertyo, NO_FAULTS, startLocalCertyo } from '../../relay/src/local-certyo/server.js';
import { until } from '../harness/wait.js';

const KEY = 'certyo_sk_test_acme';
const OTHER = 'certyo_sk_test_globex';
let srv: LocalCertyo;

const rec = (recordId: string, payload: object = { n: 1 }, extra: object = {}) => ({
  tenantId: 'acme',
  database: 'shop',
  collection: 'public.products',
  recordId,
  recordPayload: payload,
  ...extra,
});

async function call(method: string, path: string, body?: unknown, key: string | null = KEY, raw?: string) {
  const res = await fetch(`${srv.url}${path}`, {
    method,
    headers: { 'content-type': 'application/json', ...(key && { 'x-api-key': key }) },
    ...(body !== undefined || raw !== undefined ? { body: raw ?? JSON.stringify(body) } : {}),
  });
  const text = await res.text();
  return { status: res.status, headers: res.headers, body: text ? JSON.parse(text) : undefined };
}

before(async () => {
  srv = await startLocalCertyo({
    keys: { [KEY]: 'acme', [OTHER]: 'globex' },
    flushRecords: 4,
    flushMs: 50,
    anchorMs: 20,
  });
});
after(() => srv.close());

describe('hashing', () => {
  const vectors: Array<[string, string]> = [
    ['{"b":1,"a":9007199254740993}', 'c6078139f16d37bb31cec1823d29a5725784b86e7f4e9c656d4bc0f37eefcf0e'],
    ['{"a":9007199254740992, "b":1}', 'd2347db0eaf8a78cf54c535b888289ce6cc07eb5694b8ea0b446337707241c1f'],
    ['{"n":0.10000000000000000001}', '7965076908742716b16d70d79864c3ce7f2c969ac5f256048bb0bd8ba5662706'],
    ['{"n":0.1}', 'c20c34ed16c837e86b4dcdb33f98c274c9f7da1231f64302082d2cd50743f951'],
    [
      '{"z":[1,{"y":2,"x":1}],"e":"caf\\u00e9 \\"q\\" \\\\ \\n"}',
      'fcc09f3c51c0a341ebb2885e4abdab52650d87552c9f1e8435046dd0db88dea6',
    ],
  ];
  for (const [payload, expected] of vectors) {
    test(`recordHash of ${payload} matches the vector computed by sha256sum`, async () => {
      const raw = `{"tenantId":"acme","database":"shop","collection":"c","recordId":"h","recordPayload":${payload}}`;
      const res = await call('POST', '/api/v1/records', undefined, KEY, raw);
      assert.equal(res.status, 202);
      assert.equal(res.body.recordHash, expected);
    });
  }
  test('canonical form keeps numbers verbatim and sorts keys', () => {
    assert.equal(canonical(parseJson('{ "b" : 1e3, "a" : -0.0 }')), '{"a":-0.0,"b":1e3}');
  });
});

describe('ingestion', () => {
  test('POST /records: 202 with hash, correlation id; 400 names each bad field', async () => {
    const ok = await call(
      'POST',
      '/api/v1/records',
      rec('r1', { price: 12.5 }, { recordVersion: '3', operationType: 'update' }),
    );
    assert.equal(ok.status, 202);
    assert.match(ok.body.recordHash, /^[0-9a-f]{64}$/);
    assert.equal(ok.body.idempotencyReplayed, false);
    assert.ok(ok.headers.get('x-correlation-id'));
    for (const [field, patch] of [
      ['tenantId', { tenantId: undefined }],
      ['database', { database: '' }],
      ['collection', { collection: 5 }],
      ['recordId', { recordId: undefined }],
      ['recordPayload', { recordPayload: [1] }],
      ['recordVersion', { recordVersion: 'v2' }],
      ['operationType', { operationType: 'merge' }],
      ['sourceTimestamp', { sourceTimestamp: 'yesterday' }],
    ] as const) {
      const bad = await call('POST', '/api/v1/records', { ...rec('r2'), ...patch });
      assert.equal(bad.status, 400, field);
      assert.equal(bad.headers.get('content-type'), 'application/problem+json');
      assert.ok(
        bad.body.errors.some((e: { field: string }) => e.field === field),
        `${field}: ${JSON.stringify(bad.body)}`,
      );
    }
    assert.equal((await call('POST', '/api/v1/records', undefined, KEY, '{"tenantId":')).status, 400);
  });

  test('401 without or with an unknown key; 403 for another tenant', async () => {
    assert.equal((await call('POST', '/api/v1/records', rec('a'), null)).status, 401);
    assert.equal((await call('POST', '/api/v1/records', rec('a'), 'certyo_sk_test_nope')).status, 401);
    assert.equal((await call('POST', '/api/v1/records', rec('a'), OTHER)).status, 403);
    assert.equal(
      (await call('POST', '/api/v1/records/bulk', { tenantId: 'acme', records: [rec('a')] }, OTHER)).status,
      403,
    );
    // Records before the tenant in the body: still refused whole, nothing ingested.
    const before = srv.ledger.all.length;
    const theirs = [rec('b', { n: 1 }, { tenantId: 'globex' }), rec('c', { n: 1 }, { tenantId: 'globex' })];
    const recordsFirst = `{"records":${JSON.stringify(theirs)},"tenantId":"acme"}`;
    assert.equal((await call('POST', '/api/v1/records/bulk', undefined, OTHER, recordsFirst)).status, 403);
    assert.equal(srv.ledger.all.length, before);
    assert.equal((await call('GET', '/api/v1/snapshots?tenantId=acme', undefined, OTHER)).status, 403);
    const mine = await call('POST', '/api/v1/records', rec('private'));
    assert.equal(
      (await call('GET', `/api/v1/snapshots/${mine.body.snapshotId}`, undefined, OTHER)).status,
      403,
    );
  });

  test('idempotent replay returns the original response and creates nothing', async () => {
    const first = await call('POST', '/api/v1/records', rec('idem', { v: 1 }, { idempotencyKey: 'k-1' }));
    const again = await call('POST', '/api/v1/records', rec('idem', { v: 2 }, { idempotencyKey: 'k-1' }));
    assert.equal(again.body.idempotencyReplayed, true);
    assert.equal(again.body.recordHash, first.body.recordHash);
    assert.equal(again.body.snapshotId, first.body.snapshotId);
    const list = await call('GET', '/api/v1/records?database=shop&collection=public.products&recordId=idem');
    assert.equal(list.body.items.length, 1);
    // Scoped per tenant: the same key from another tenant is a new record.
    const other = await call(
      'POST',
      '/api/v1/records',
      { ...rec('idem', { v: 1 }, { idempotencyKey: 'k-1' }), tenantId: 'globex' },
      OTHER,
    );
    assert.equal(other.body.idempotencyReplayed, false);
  });

  test('bulk: each record validated on its own; empty and over 1000 refused', async () => {
    const res = await call('POST', '/api/v1/records/bulk', {
      tenantId: 'acme',
      records: [
        rec('b1'),
        { ...rec('b2'), recordPayload: 'x' },
        rec('b3'),
        { ...rec('b4'), tenantId: 'globex' },
      ],
    });
    assert.equal(res.status, 202);
    assert.equal(res.body.accepted, 2);
    assert.equal(res.body.rejected, 2);
    assert.deepEqual(
      res.body.results.map((r: { index: number; status: string }) => [r.index, r.status]),
      [
        [0, 'accepted'],
        [1, 'rejected'],
        [2, 'accepted'],
        [3, 'rejected'],
      ],
    );
    assert.match(res.body.results[1].error, /recordPayload/);
    assert.equal((await call('POST', '/api/v1/records/bulk', { tenantId: 'acme', records: [] })).status, 400);
    const tooMany = Array.from({ length: 1001 }, (_, i) => rec(`m${i}`));
    const over = await call('POST', '/api/v1/records/bulk', { tenantId: 'acme', records: tooMany });
    assert.equal(over.status, 400);
    assert.equal(over.body.errors[0].field, 'records');
  });
});

describe('anchoring and verification', () => {
  test('a batch sealed by count moves to Anchored and its proofs walk to the root', async () => {
    const payloads = [{ a: 1 }, { a: 2 }, { a: 3 }, { a: 9007199254740993n.toString() }];
    const res = await call('POST', '/api/v1/records/bulk', {
      tenantId: 'acme',
      records: payloads.map((p, i) => rec(`anc${i}`, p)),
    });
    const ids: string[] = res.body.results.map((r: { snapshotId: string }) => r.snapshotId);
    const batched = await call('GET', `/api/v1/snapshots/${ids[0]}`);
    assert.ok(['Batched', 'Anchored'].includes(batched.body.status));
    await until(async () => (await call('GET', `/api/v1/snapshots/${ids[3]}`)).body.status === 'Anchored');
    const snap = await call('GET', `/api/v1/snapshots/${ids[3]}`);
    assert.equal(snap.body.onChainConfirmed, true);
    assert.match(snap.body.onChainMerkleRoot, /^0x[0-9a-f]{64}$/);
    for (const [i, p] of payloads.entries()) {
      const v = await call('POST', '/api/v1/verify/record', {
        tenantId: 'acme',
        database: 'shop',
        collection: 'public.products',
        recordId: `anc${i}`,
        payload: p,
      });
      assert.equal(v.body.verified, true);
      assert.equal(v.body.reasonCategory, 'verified_anchored');
      assert.equal(`0x${walkProof(v.body.recordHash, v.body.merkleProof)}`, v.body.merkleRoot);
    }
    const tampered = await call('POST', '/api/v1/verify/record', {
      tenantId: 'acme',
      database: 'shop',
      collection: 'public.products',
      recordId: 'anc1',
      payload: { a: 20 },
    });
    assert.deepEqual(
      [tampered.body.verified, tampered.body.verificationStatus, tampered.body.reasonCategory],
      [false, 'fail', 'payload_mismatch'],
    );
    const byHash = await call('POST', '/api/v1/verify/payload', {
      tenantId: 'acme',
      recordHash: `sha256:${snap.body.recordHash}`,
    });
    assert.equal(byHash.body.verified, true);
    assert.equal((await call('GET', `/api/v1/verify/snapshot/${ids[2]}`)).body.verified, true);
    assert.equal(
      (
        await call('POST', '/api/v1/verify/record', {
          tenantId: 'acme',
          database: 'shop',
          collection: 'x',
          recordId: 'none',
          payload: {},
        })
      ).status,
      404,
    );
    assert.equal((await call('GET', '/api/v1/snapshots/nope')).status, 404);
  });

  test('a batch sealed by age anchors too; before that verification says pending', async () => {
    srv.ledger.flush(); // start from an empty queue
    const one = await call('POST', '/api/v1/records', rec('aged', { x: 1 }));
    const early = await call('POST', '/api/v1/verify/record', {
      tenantId: 'acme',
      database: 'shop',
      collection: 'public.products',
      recordId: 'aged',
      payload: { x: 1 },
    });
    assert.deepEqual(
      [early.body.verificationStatus, early.body.reasonCategory],
      ['pending', 'not_yet_anchored'],
    );
    await until(
      async () => (await call('GET', `/api/v1/snapshots/${one.body.snapshotId}`)).body.status === 'Anchored',
    );
  });
});

describe('faults', () => {
  const reset = () => Object.assign(srv.faults, NO_FAULTS);

  test('429 with Retry-After, 500 and 503, each at rate 1', async () => {
    Object.assign(srv.faults, { rate429: 1, retryAfterSeconds: 7 });
    const r = await call('POST', '/api/v1/records', rec('f'));
    assert.equal(r.status, 429);
    assert.equal(r.headers.get('retry-after'), '7');
    reset();
    Object.assign(srv.faults, { rate500: 1 });
    assert.equal((await call('POST', '/api/v1/records', rec('f'))).status, 500);
    reset();
    Object.assign(srv.faults, { rate503: 1 });
    assert.equal((await call('POST', '/api/v1/records', rec('f'))).status, 503);
    reset();
  });

  test('latency is added', async () => {
    Object.assign(srv.faults, { latencyMs: 150 });
    const t0 = performance.now();
    await call('GET', '/api/v1/snapshots');
    reset();
    assert.ok(performance.now() - t0 >= 140);
  });

  test('a dropped connection: the client sees an error, the server accepted the record', async () => {
    Object.assign(srv.faults, { dropRate: 1 });
    await assert.rejects(call('POST', '/api/v1/records', rec('dropped', {}, { idempotencyKey: 'drop-1' })));
    reset();
    const entry = await srv.waitFor((r) => r.outcome === 'dropped');
    assert.equal(entry.records[0]?.idempotencyKey, 'drop-1');
    const again = await call('POST', '/api/v1/records', rec('dropped', {}, { idempotencyKey: 'drop-1' }));
    assert.equal(again.body.idempotencyReplayed, true);
  });

  test('records rejected by a rule, inside a bulk 202 and as a single 400', async () => {
    Object.assign(srv.faults, { rejectField: 'sku', rejectValue: 'POISON' });
    const res = await call('POST', '/api/v1/records/bulk', {
      tenantId: 'acme',
      records: [rec('p1', { sku: 'POISON' }), rec('p2', { sku: 'ok' })],
    });
    assert.deepEqual(
      res.body.results.map((r: { status: string }) => r.status),
      ['rejected', 'accepted'],
    );
    assert.equal((await call('POST', '/api/v1/records', rec('p3', { sku: 'POISON' }))).status, 400);
    reset();
  });

  test('anchoring that fails, and anchoring that never completes', async () => {
    srv.ledger.flush();
    Object.assign(srv.faults, { anchorFail: true });
    const failed = await call('POST', '/api/v1/records', rec('af', { q: 1 }));
    srv.ledger.flush();
    reset();
    await until(
      async () => (await call('GET', `/api/v1/snapshots/${failed.body.snapshotId}`)).body.status === 'Failed',
    );
    Object.assign(srv.faults, { anchorNever: true });
    const never = await call('POST', '/api/v1/records', rec('an', { q: 2 }));
    srv.ledger.flush();
    reset();
    const anchoredLater = await call('POST', '/api/v1/records', rec('an2', { q: 3 }));
    srv.ledger.flush();
    await until(
      async () =>
        (await call('GET', `/api/v1/snapshots/${anchoredLater.body.snapshotId}`)).body.status === 'Anchored',
    );
    assert.equal((await call('GET', `/api/v1/snapshots/${never.body.snapshotId}`)).body.status, 'Batched');
  });

  test('the admin endpoint changes faults at run time, only when enabled', async () => {
    const admin = await startLocalCertyo({ keys: { [KEY]: 'acme' }, admin: true });
    try {
      const set = await fetch(`${admin.url}/_admin/faults`, {
        method: 'POST',
        body: JSON.stringify({ rate503: 1, bogus: 1 }),
      });
      assert.equal(((await set.json()) as { rate503: number }).rate503, 1);
      const res = await fetch(`${admin.url}/api/v1/snapshots`, { headers: { 'x-api-key': KEY } });
      assert.equal(res.status, 503);
      const log = (await (await fetch(`${admin.url}/_admin/requests`)).json()) as Array<{ outcome: string }>;
      assert.equal(log.at(-1)?.outcome, '503');
    } finally {
      await admin.close();
    }
    assert.equal((await call('POST', '/_admin/faults', { rate503: 1 })).status, 404);
  });
});

/** Polls a condition on the server's state (anchoring runs on its own timers). */

describe('documented-only mode', () => {
  let full: LocalCertyo;
  before(async () => {
    full = srv;
    srv = await startLocalCertyo({
      keys: { [KEY]: 'acme' },
      flushRecords: 2,
      flushMs: 50,
      anchorMs: 5,
      documentedOnly: true,
    });
  });
  after(async () => {
    await srv.close();
    srv = full;
  });

  test('only the documented endpoints, parameters and fields', async () => {
    const bulk = await call('POST', '/api/v1/records/bulk', {
      tenantId: 'acme',
      records: [rec('d1', { n: 1 }), rec('d2', { n: 2 })],
    });
    assert.deepEqual([bulk.status, bulk.body], [202, {}], 'a bulk 202 without per-record results');
    const one = await call('POST', '/api/v1/records', rec('d3'));
    assert.deepEqual(Object.keys(one.body).sort(), [
      'acceptedAt',
      'idempotencyReplayed',
      'recordHash',
      'recordId',
      'tenantId',
    ]);
    await until(() => srv.ledger.all.filter((s) => s.status === 'Anchored').length >= 2);
    const listing = await call(
      'GET',
      '/api/v1/records?tenantId=acme&database=shop&collection=public.products&from=2020-01-01T00:00:00Z',
    );
    assert.equal(listing.status, 400, 'from is not a documented parameter');
    const snaps = await call('GET', '/api/v1/snapshots?tenantId=acme&recordId=d1');
    assert.deepEqual(Object.keys(snaps.body.items[0]).sort(), [
      'ingestedAt',
      'onChainConfirmed',
      'onChainMerkleRoot',
      'recordId',
      'snapshotId',
      'status',
      'updatedAt',
    ]);
    const batchId = srv.ledger.all[0]!.batchId;
    assert.equal((await call('GET', `/api/v1/batches/${batchId}`)).status, 404);
    // verify/record: the payload's own version is found without recordVersion ([local], ignored).
    const v = await call('POST', '/api/v1/verify/record', {
      tenantId: 'acme',
      database: 'shop',
      collection: 'public.products',
      recordId: 'd1',
      payload: { n: 1 },
      recordVersion: 'no such version',
    });
    assert.deepEqual(v.body, {
      verified: true,
      verificationStatus: 'pass',
      reasonCategory: 'verified_anchored',
      snapshotHash: srv.ledger.all[0]!.recordHash,
    });
    const bad = await call('POST', '/api/v1/verify/record', {
      tenantId: 'acme',
      database: 'shop',
      collection: 'public.products',
      recordId: 'd1',
      payload: { n: 99 },
    });
    assert.deepEqual([bad.body.verified, bad.body.reasonCategory], [false, 'payload_mismatch']);
    assert.equal(bad.body.merkleProof, undefined);
  });
});
