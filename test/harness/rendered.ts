// Every delivered payload is the row rendered as a UTC session with default
// settings renders it, whoever wrote it. A row trigger of the test's own (its
// SET clauses pin those settings) keeps each inserted or updated row's
// rendering under its version; once the outbox is drained, every insert,
// update and backfilled row Certyo received must hash as that rendering does.
// The final-state check cannot tell: the last change to a row may come from
// any session.
import assert from 'node:assert/strict';
import type { Sql } from 'postgres';
import { type JsonObject, parseJson } from '../../relay/src/certyo/json.js';
import { recordHash } from '../../relay/src/local-certyo/ledger.js';
import type { LocalCertyo } from '../../relay/src/local-certyo/server.js';

/** Keeps, from now on, every row version written to these tables as a UTC session renders it. */
export async function keepRenderings(sql: Sql, tables: string[]): Promise<void> {
  await sql.unsafe(`
    create table if not exists public.rendered (tbl regclass, version bigint, j json);
    create or replace function public.keep_rendering() returns trigger language plpgsql
      set timezone = 'UTC' set datestyle = 'ISO, YMD' set intervalstyle = 'postgres'
      set extra_float_digits = 1 set bytea_output = 'hex'
    as $$
    begin
      insert into public.rendered values (tg_relid, new.certyo_record_version, row_to_json(new));
      return null;
    end $$;`);
  for (const t of tables) {
    await sql.unsafe(`create trigger keep_rendering after insert or update on ${t}
                      for each row execute function public.keep_rendering()`);
  }
}

/** Every insert, update and backfill of the table that Certyo received hashes as its kept rendering. */
export async function assertDeliveredAsRendered(sql: Sql, api: LocalCertyo, table: string): Promise<number> {
  const [t] = await sql`select collection, exclude_columns::text[] as excluded
                        from certyo.tracked_table where relid = ${table}::regclass and active`;
  assert.ok(t, `${table} is tracked`);
  // A version's renderings differ in status columns at most (write-backs), which the payload leaves out.
  const rows =
    await sql`select distinct r.version::text as version, certyo.record_payload(r.j, ${t.excluded})::text as payload
                         from public.rendered r where r.tbl = ${table}::regclass and r.version is not null`;
  const expected = new Map<string, Set<string>>();
  for (const r of rows) {
    const hashes = expected.get(r.version as string) ?? new Set<string>();
    hashes.add(recordHash(parseJson(r.payload as string) as JsonObject));
    expected.set(r.version as string, hashes);
  }
  let checked = 0;
  for (const s of api.ledger.all) {
    if (s.collection !== t.collection || s.operationType === 'delete') continue;
    const hashes = expected.get(s.recordVersion);
    assert.ok(hashes, `${table} ${s.recordId} version ${s.recordVersion}: no rendering kept`);
    assert.ok(
      hashes.has(s.recordHash),
      `${table} ${s.recordId} version ${s.recordVersion} (${s.operationType}): delivered differs from the row as UTC renders it`,
    );
    checked++;
  }
  return checked;
}
