// `certyo-pg demo` end to end, non-interactively: with DATABASE_URL (then its
// numbers are checked against the database it kept) and with an embedded PostgreSQL.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { test } from 'node:test';
import { promisify } from 'node:util';
import postgres from 'postgres';
import { paths } from '../relay/src/paths.js';
import { adminUrl, withDatabase } from './harness/db.js';

const run = promisify(execFile);
const bin = `${paths.root}bin/certyo-pg.js`;

function summary(stdout: string) {
  const m =
    /^summary: captured=(\d+) submitted=(\d+) anchored=(\d+) parked=(\d+) tampered=(\d+) database=(\w+)$/m.exec(
      stdout,
    );
  assert.ok(m, `no summary line in:\n${stdout}`);
  return {
    captured: Number(m[1]),
    submitted: Number(m[2]),
    anchored: Number(m[3]),
    parked: Number(m[4]),
    tampered: Number(m[5]),
    database: m[6]!,
  };
}

test('demo with DATABASE_URL: summary numbers match the database', async () => {
  const { stdout } = await run(process.execPath, [bin, 'demo', '--keep'], {
    env: { ...process.env, DATABASE_URL: adminUrl() },
  });
  const s = summary(stdout);
  assert.deepEqual([s.captured, s.submitted, s.anchored, s.parked, s.tampered], [560, 560, 560, 0, 1]);
  assert.match(stdout, /\(match\)/);
  assert.doesNotMatch(stdout, /^progress: .*\r/m);
  const sql = postgres(withDatabase(adminUrl(), s.database), { max: 1, onnotice: () => {} });
  try {
    const [db] = await sql`
      select (select count(*) from certyo.receipt)::int as receipts, (select count(*) from certyo.outbox)::int as outbox,
             (select count(*) from products)::int as products,
             (select count(*) from products where certyo_anchor_status = 'anchored'
                                               and certyo_verified_at is not null)::int as anchored_rows,
             (select array_agg(id)::text from products where certyo_anchor_status = 'tampered') as tampered_rows,
             (select count(*) from products where sku = 'SKU-GHOST')::int as ghost`;
    assert.deepEqual(db, {
      receipts: s.submitted,
      outbox: 0,
      products: 390,
      anchored_rows: 389,
      tampered_rows: '{42}',
      ghost: 0,
    });
  } finally {
    await sql.end();
    const root = postgres(adminUrl(), { max: 1, onnotice: () => {} });
    await root.unsafe(`drop database ${s.database} with (force)`);
    await root.end();
  }
});

test('demo on an embedded PostgreSQL exits 0 with a full summary', async () => {
  const env = { ...process.env };
  delete env.DATABASE_URL;
  const { stdout } = await run(process.execPath, [bin, 'demo'], { env });
  assert.match(stdout, /starting an embedded PostgreSQL/);
  const s = summary(stdout);
  assert.deepEqual([s.captured, s.submitted, s.anchored, s.parked, s.tampered], [560, 560, 560, 0, 1]);
});
