// The final-state check for workloads: once the outbox is drained, what
// Certyo holds last for each record (the change with the highest
// recordVersion it received) is the row as it is now: same version, same
// payload hash, not a delete. A record with no row ends with a delivered
// delete, and a row that was never captured has nothing in Certyo.
import assert from 'node:assert/strict';
import type { Sql } from 'postgres';
import { type JsonObject, parseJson } from '../../relay/src/certyo/json.js';
import { pgArray } from '../../relay/src/db.js';
import { recordHash, type Snapshot } from '../../relay/src/local-certyo/ledger.js';
import type { LocalCertyo } from '../../relay/src/local-certyo/server.js';

export interface FinalState {
  /** Rows whose last delivered version was compared. */
  rows: number;
  /** Records whose last delivered change is a delete. */
  deleted: number;
}

/** The latest snapshot per record of one collection. */
function latest(api: LocalCertyo, collection: string): Map<string, Snapshot> {
  const last = new Map<string, Snapshot>();
  for (const s of api.ledger.all) {
    if (s.collection !== collection) continue;
    const had = last.get(s.recordId);
    if (!had || BigInt(had.recordVersion) < BigInt(s.recordVersion)) last.set(s.recordId, s);
  }
  return last;
}

export async function assertFinalState(sql: Sql, api: LocalCertyo, table: string): Promise<FinalState> {
  const [t] = await sql`select collection, relid::regclass::text as rel, key_columns::text[] as keys,
                               exclude_columns::text[] as excluded
                        from certyo.tracked_table where relid = ${table}::regclass and active`;
  assert.ok(t, `${table} is tracked`);
  // Each row rendered as capture renders it (its pinned settings), then as the claim sends it.
  const rows = await sql.begin(async (tx) => {
    await tx`select set_config('timezone', 'UTC', true), set_config('datestyle', 'ISO, YMD', true),
                    set_config('intervalstyle', 'postgres', true), set_config('extra_float_digits', '1', true),
                    set_config('bytea_output', 'hex', true)`;
    return tx.unsafe(
      `select certyo.record_key(x.j, $1::text[]) as id, x.j ->> 'certyo_record_version' as version,
              certyo.record_payload(x.j, $2::text[])::text as payload
       from (select row_to_json(r.*) as j from ${t.rel} r) as x`,
      [pgArray(t.keys), pgArray(t.excluded)],
    );
  });
  const last = latest(api, t.collection as string);
  const present = new Set<string>();
  for (const r of rows) {
    const id = r.id as string;
    present.add(id);
    const s = last.get(id);
    if (r.version === null) {
      assert.equal(
        s,
        undefined,
        `${table} ${id} was never captured, yet Certyo has version ${s?.recordVersion}`,
      );
      continue;
    }
    assert.ok(s, `${table} ${id} (version ${r.version}) never reached Certyo`);
    assert.equal(s.recordVersion, r.version, `${table} ${id}: Certyo's last version is not the row's`);
    assert.notEqual(
      s.operationType,
      'delete',
      `${table} ${id} exists, but its last delivered change is a delete`,
    );
    assert.equal(
      s.recordHash,
      recordHash(parseJson(r.payload as string) as JsonObject),
      `${table} ${id}: the row differs from its last delivered version ${r.version}`,
    );
  }
  let deleted = 0;
  for (const [id, s] of last) {
    if (present.has(id)) continue;
    assert.equal(
      s.operationType,
      'delete',
      `${table} ${id} is gone, but its last delivered change is ${s.operationType}`,
    );
    deleted++;
  }
  return { rows: rows.filter((r) => r.version !== null).length, deleted };
}
