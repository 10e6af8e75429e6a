// The "nothing lost" check of RELIABILITY.md: every committed change (in the
// outbox or acknowledged into receipts) reached the API, deduplicated by
// idempotency key; nothing extra; per-record order kept; a minimum volume.
import assert from 'node:assert/strict';
import type { Sql } from 'postgres';
import type { LocalCertyo } from '../../relay/src/local-certyo/server.js';

/**
 * First receipt of each accepted idempotency key, in arrival order, with its
 * record named by collection and id (ids repeat across tables).
 */
export function received(api: LocalCertyo) {
  const collectionOf = new Map(api.ledger.all.map((s) => [s.idempotencyKey, s.collection]));
  const seen = new Map<string, { record: string; version: bigint }>();
  for (const r of api.requests) {
    for (const x of r.records) {
      if (x.status === 'accepted' && x.idempotencyKey && !seen.has(x.idempotencyKey)) {
        const record = `${collectionOf.get(x.idempotencyKey)} ${x.recordId}`;
        seen.set(x.idempotencyKey, { record, version: BigInt(x.recordVersion ?? '0') });
      }
    }
  }
  return seen;
}

export async function assertNothingLost(sql: Sql, api: LocalCertyo, min: number) {
  // Changes captured since migration 14 store no key: it is derived as the claim derives it.
  const want =
    await sql`select coalesce(o.idempotency_key, certyo.change_key(i.id, o.id, o.changed_at))::text as k
                         from certyo.outbox o, certyo.installation i
                         union all select idempotency_key::text from certyo.receipt`;
  const got = received(api);
  assert.ok(want.length >= min, `only ${want.length} changes`);
  assert.deepEqual(new Set(got.keys()), new Set(want.map((w) => w.k)));
  const last = new Map<string, bigint>();
  for (const { record, version } of got.values()) {
    assert.ok(
      (last.get(record) ?? -1n) < version,
      `record ${record}: version ${version} arrived after a later one`,
    );
    last.set(record, version);
  }
}
