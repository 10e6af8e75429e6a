// Guarantee 4: payloads are exact and do not depend on the writer's session.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import postgres from 'postgres';
import { migrate } from '../../relay/src/install.js';
import { adminUrl, freshDatabase, type TestDb, withDatabase } from '../harness/db.js';

let db: TestDb;

before(async () => {
  db = await freshDatabase();
  await db.sql.unsafe(`
    create type mood as enum ('sad', 'ok', 'happy');
    create domain positive_int as integer check (value > 0);
    create type pair as (a int, b text);
    create table zoo (
      id int primary key,
      big bigint,
      dec numeric(40,20),
      nan numeric,
      f8 double precision,
      f4 real,
      ts timestamp,
      tstz timestamptz,
      d date,
      iv interval,
      bin bytea,
      arr int[],
      tarr text[],
      j json,
      jb jsonb,
      m mood,
      r int4range,
      dr daterange,
      tr tstzrange,
      pos positive_int,
      gen bigint generated always as (big * 2) stored,
      comp pair,
      ip inet,
      u uuid,
      x xml,
      tv tsvector,
      pt point,
      t text
    );
    select certyo.enable_tracking('zoo');
  `);
});
after(() => db.close());

const insertRow = `insert into zoo (id, big, dec, nan, f8, f4, ts, tstz, d, iv, bin, arr, tarr, j, jb, m, r, dr, tr, pos, comp, ip, u, x, tv, pt, t)
  values ($1, 9007199254740993, 12345678901234567890.12345678901234567891, 'NaN', 0.1, '-0', '2024-02-29 12:34:56.789012',
          '2024-06-01 12:00:00+02', 'infinity', '1 year 2 mons 3 days 04:05:06.7', '\\x00ff10',
          array[1, null, 3], array['a', null, 'c"q'], '{"k": 1, "k": 2, "n": 1.000000000000000000001}',
          '{"b": 1, "a": [1, 2]}', 'happy', '[1,10)', '[2024-01-01,2024-02-01)',
          '[2024-06-01 12:00:00+02,2024-06-02 00:00:00+00)', 7, row(1, 'x'),
          '192.168.0.1/24', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '<a>x</a>', 'the quick fox', '(1.5,2)',
          E'NFC \\u00e9 NFD e\\u0301 emoji \\U0001F600 zero\\u200Bwidth')`;

async function payloadOf(id: number): Promise<string> {
  const [row] = await db.sql`
    select certyo.record_payload(payload, '{}')::text as p from certyo.outbox where record_id = ${String(id)} and op = 'I'`;
  return row!.p as string;
}

describe('payload exactness', () => {
  test('every type arrives as stored, not rounded through a double', async () => {
    await db.sql.unsafe(insertRow, [1]);
    const p = await payloadOf(1);
    for (const fragment of [
      '"big":9007199254740993',
      '"dec":12345678901234567890.12345678901234567891',
      '"nan":"NaN"',
      '"f8":0.1',
      '"f4":-0',
      '"ts":"2024-02-29T12:34:56.789012"',
      '"tstz":"2024-06-01T10:00:00+00:00"',
      '"d":"infinity"',
      '"iv":"1 year 2 mons 3 days 04:05:06.7"',
      '"bin":"\\\\x00ff10"',
      '"arr":[1,null,3]',
      '"tarr":["a",null,"c\\"q"]',
      '"j":{"k": 1, "k": 2, "n": 1.000000000000000000001}',
      '"jb":{"a": [1, 2], "b": 1}',
      '"m":"happy"',
      '"r":"[1,10)"',
      '"dr":"[2024-01-01,2024-02-01)"',
      '"tr":"[\\"2024-06-01 10:00:00+00\\",\\"2024-06-02 00:00:00+00\\")"',
      '"pos":7',
      '"gen":18014398509481986',
      '"comp":{"a":1,"b":"x"}',
      '"ip":"192.168.0.1/24"',
      '"u":"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"',
      '"x":"<a>x</a>"',
      "\"tv\":\"'fox' 'quick' 'the'\"",
      '"pt":"(1.5,2)"',
    ]) {
      assert.ok(p.includes(fragment), `payload lacks ${fragment}\n${p}`);
    }
    // Unicode bytes preserved: NFC and NFD stay distinct, emoji and zero-width kept.
    assert.ok(p.includes('NFC \u00e9 NFD e\u0301 emoji \u{1F600} zero\u200Bwidth'), p);
    assert.doesNotThrow(() => JSON.parse(p), 'payload is valid JSON');
    // What a claim sends is that same text (it cuts the status members off in bytes).
    const [claimed] =
      await db.sql`select record from certyo.claim('00000000-0000-4000-8000-0000000000aa', 10) where record_id = '1'`;
    assert.equal(claimed?.record, p);
  });

  test('sessions with different output settings produce the same payload', async () => {
    const settings = [
      "set timezone = 'Pacific/Chatham'; set datestyle = 'SQL, DMY'; set intervalstyle = 'iso_8601'; set extra_float_digits = -15; set bytea_output = 'escape'",
      "set timezone = 'America/Los_Angeles'; set datestyle = 'German'; set intervalstyle = 'sql_standard'; set extra_float_digits = 3; set bytea_output = 'hex'",
      // The zone alone (a server outside UTC): capture pins it alone.
      "set timezone = 'Europe/Berlin'",
      // The zone holds, another setting does not.
      "set timezone = 'UTC'; set intervalstyle = 'sql_standard'",
      // Settings capture takes as they are (they render every value alike).
      "set timezone = 'GMT'; set datestyle = 'ISO, DMY'; set extra_float_digits = 3",
    ];
    const reference = await payloadOf(1);
    const ofOp = async (id: number, op: string) => {
      const [row] = await db.sql`select certyo.record_payload(payload, '{}')::text as p from certyo.outbox
                                 where record_id = ${String(id)} and op = ${op}`;
      return row!.p as string;
    };
    const session = `select current_setting('TimeZone') || current_setting('DateStyle') || current_setting('IntervalStyle')
                            || current_setting('extra_float_digits') || current_setting('bytea_output') as s`;
    await db.sql`update zoo set t = 'updated' where id = 1`;
    const referenceUpdate = await ofOp(1, 'U');
    // A deleted row's image: the updated row, deleted in a session of the server's settings.
    await db.sql.unsafe(insertRow, [99]);
    await db.sql`update zoo set t = 'updated' where id = 99`;
    await db.sql`delete from zoo where id = 99`;
    const referenceDelete = (await ofOp(99, 'D')).replace('"id":99', '"id":1');
    for (const [i, s] of settings.entries()) {
      const id = 100 + i;
      await db.sql.begin(async (tx) => {
        await tx.unsafe(s);
        const [before] = await tx.unsafe(session);
        await tx.unsafe(insertRow, [id]);
        await tx.unsafe(`update zoo set t = 'updated' where id = ${id}`);
        await tx.unsafe(`delete from zoo where id = ${id}`);
        // Capture set them for its own statements only: the session keeps its settings.
        const [after] = await tx.unsafe(session);
        assert.equal(after!.s, before!.s, s);
      });
      assert.equal((await payloadOf(id)).replace(`"id":${id}`, '"id":1'), reference, s);
      assert.equal((await ofOp(id, 'U')).replace(`"id":${id}`, '"id":1'), referenceUpdate, s);
      assert.equal((await ofOp(id, 'D')).replace(`"id":${id}`, '"id":1'), referenceDelete, s);
    }
  });

  test('capture renders without pinning under settings that render alike, and pins under any other', async () => {
    // SET LOCAL: the earlier tests' sessions left their settings on the pool's connections.
    const server =
      "set timezone = 'UTC'; set datestyle = 'ISO, YMD'; set intervalstyle = 'postgres'; set extra_float_digits = 1; set bytea_output = 'hex'";
    const pinned = async (s: string) =>
      await db.sql.begin(async (tx) => {
        await tx.unsafe(`${server}; ${s}`.replaceAll('set ', 'set local '));
        const [row] = await tx`select certyo.output_pinned() as p`;
        return row!.p as boolean;
      });
    for (const s of [
      "set timezone = 'UTC'",
      "set timezone = 'Etc/UTC'; set datestyle = 'ISO, MDY'",
      "set timezone = 'GMT'; set datestyle = 'ISO, DMY'",
      "set timezone = 'Zulu'; set extra_float_digits = 3",
      "set timezone = 'UCT'; set extra_float_digits = 2",
    ]) {
      assert.equal(await pinned(s), true, s);
    }
    for (const s of [
      // UTC in winter only: today's rendering would match, a summer day's not.
      "set timezone = 'Europe/London'",
      "set timezone = 'Europe/Berlin'",
      "set datestyle = 'SQL, DMY'",
      "set intervalstyle = 'iso_8601'",
      // 0 and below round to a number of digits.
      'set extra_float_digits = 0',
      "set bytea_output = 'escape'",
    ]) {
      assert.equal(await pinned(s), false, s);
    }
  });

  test('a LATIN1 database: a claim sends non-ASCII text whole (the status members are cut in its encoding)', async () => {
    const root = postgres(adminUrl(), { max: 1, onnotice: () => {} });
    const name = `${db.name}_latin1`;
    await root.unsafe(
      `create database ${name} template template0 encoding 'LATIN1' lc_collate 'C' lc_ctype 'C'`,
    );
    const url = withDatabase(adminUrl(), name);
    const latin = postgres(url, { max: 1, onnotice: () => {} });
    try {
      await migrate(latin, url);
      await latin.unsafe(`
        create table t (id int primary key, v text);
        select certyo.enable_tracking('t');
        insert into t values (1, 'café ¼ ÿ');`);
      const [claimed] =
        await latin`select record from certyo.claim('00000000-0000-4000-8000-0000000000ab', 10)`;
      assert.equal(claimed?.record, '{"id":1,"v":"café ¼ ÿ"}');
    } finally {
      await latin.end();
      await root.unsafe(`drop database ${name} with (force)`);
      await root.end();
    }
  });

  test('large values are captured without failing the write', async () => {
    await db.sql`insert into zoo (id, t, bin) values (200, repeat('x', 20 * 1024 * 1024), decode(repeat('ab', 1024 * 1024), 'hex'))`;
    const [row] =
      await db.sql`select length(payload::text)::int as n from certyo.outbox where record_id = '200'`;
    assert.ok(row!.n > 20 * 1024 * 1024);
  });
});
