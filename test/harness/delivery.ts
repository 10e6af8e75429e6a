// The "nothing lost" check of RELIABILITY.md: every committed change (in the
// outbox or acknowledged into receipts) reached the API, deduplicated by
// idempotency key; nothing extra; per-record order kept; a minimum volume.
import assert from 'node:assert/strict';
import type { Sql } from 'postgres';
import type { LocalCertyo } from '../../relay/src/local-certyo/server.js';

/** First receipt of each accepted idempotency key, in arrival order. */
export function received(api: LocalCertyo) {
  const seen = new Map<string, { recordId: string; version: bigint }>();
  for (const r of api.requests) {
    for (const x of r.records) {
      if (x.status === 'accepted' && x.idempotencyKey && !seen.has(x.idempotencyKey)) {
        seen.set(x.idempotencyKey, { recordId: x.recordId, version: BigInt(x.recordVersion ?? '0') });
      }
    }
  }
  return seen;
}

export async function assertNothingLost(sql: Sql, api: LocalCertyo, min: number) {
  const want = await sql`select idempotency_key::text as k from certyo.outbox
                         union all select idempotency_key::text from certyo.receipt`;
  const got = received(api);
  assert.ok(want.length >= min, `only ${want.length} changes`);
  assert.deepEqual(new Set(got.keys()), new Set(want.map((w) => w.k)));
  const last = new Map<string, bigint>();
  for (const { recordId, version } of got.values()) {
    assert.ok(
      (last.get(recordId) ?? -1n) < version,
      `record ${recordId}: version ${version} arrived after a later one`,
    );
    last.set(recordId, version);
  }
}
