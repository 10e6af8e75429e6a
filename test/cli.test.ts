// The README's commands, run as a user would: certyo-pg migrate, status,
// local-certyo and relay (configuration errors), and the uninstall SQL.
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import postgres from 'postgres';
import { loadConfig } from '../relay/src/config.js';
import { freePort } from '../relay/src/embedded.js';
import { paths } from '../relay/src/paths.js';
import { adminUrl, freshDatabase, type TestDb, withDatabase } from './harness/db.js';

const bin = `${paths.root}bin/certyo-pg.js`;
const exec = promisify(execFile);

async function run(args: string[], env: Record<string, string | undefined> = {}) {
  try {
    const { stdout, stderr } = await exec(process.execPath, [bin, ...args], {
      env: { ...process.env, ...env },
    });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

let db: TestDb;
before(async () => {
  db = await freshDatabase();
});
after(() => db.close());

describe('certyo-pg', () => {
  test('migrate installs into an empty database, and a second run changes nothing', async () => {
    const root = postgres(adminUrl(), { max: 1, onnotice: () => {} });
    const name = `${db.name}_cli`;
    await root.unsafe(`create database ${name}`);
    try {
      const url = withDatabase(adminUrl(), name);
      const first = await run(['migrate'], { DATABASE_URL: url });
      assert.equal(first.code, 0, first.stderr);
      assert.match(first.stdout, /applied migrations: .*capture-core/);
      const second = await run(['migrate'], { DATABASE_URL: url });
      assert.match(second.stdout, /migrations: up to date/);
    } finally {
      await root.unsafe(`drop database ${name} with (force)`);
      await root.end();
    }
  });

  test('status: ok, then exit 1 naming the parked change; --json', async () => {
    await db.sql`create table orders (id int primary key)`;
    await db.sql`select certyo.enable_tracking('orders')`;
    await db.sql`insert into orders values (1), (2)`;
    const ok = await run(['status'], { DATABASE_URL: db.url });
    assert.equal(ok.code, 0, ok.stdout + ok.stderr);
    assert.match(ok.stdout, /public\.orders\s+public\.orders\s+2\s/);
    const token = '00000000-0000-4000-8000-000000000001';
    const [one] = await db.sql`select id from certyo.claim(${token}, 1)`;
    await db.sql`select certyo.park(${token}, ${[one!.id]}::bigint[], '{"400: bad record"}')`;
    const bad = await run(['status', '--json'], { DATABASE_URL: db.url });
    assert.equal(bad.code, 1);
    const report = JSON.parse(bad.stdout) as {
      ok: boolean;
      attention: string[];
      tables: Array<{ pending: number; parked: number }>;
    };
    assert.equal(report.ok, false);
    assert.match(report.attention[0]!, /public\.orders: 1 parked/);
    assert.deepEqual([report.tables[0]!.pending, report.tables[0]!.parked], [1, 1]);
    assert.equal((await run(['status', '--max-lag', 'soon'], { DATABASE_URL: db.url })).code, 2);
  });

  test('local-certyo: --help says state is in memory; bad flags exit 2; it serves and stops on SIGTERM', async () => {
    const help = await run(['local-certyo', '--help']);
    assert.match(help.stdout, /in memory/);
    const bad = await run(['local-certyo', '--flush-ms', 'soon', '--key', 'nokey']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--flush-ms/);
    assert.match(bad.stderr, /--key must be KEY=TENANT/);
    const port = await freePort();
    const child = spawn(
      process.execPath,
      [
        bin,
        'local-certyo',
        '--port',
        String(port),
        '--key',
        'certyo_sk_test_abc=acme-corp',
        '--flush-records',
        '1000',
        '--flush-ms',
        '60000',
        '--anchor-ms',
        '30000',
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    await new Promise<void>((resolve) => {
      createInterface({ input: child.stdout! }).on(
        'line',
        (l) => l.includes('local certyo listening') && resolve(),
      );
    });
    const res = await fetch(`http://127.0.0.1:${port}/api/v1/records`, {
      method: 'POST',
      headers: { 'x-api-key': 'certyo_sk_test_abc', 'content-type': 'application/json' },
      body: JSON.stringify({
        tenantId: 'acme-corp',
        database: 'd',
        collection: 'c',
        recordId: '1',
        recordPayload: { a: 1 },
      }),
    });
    assert.equal(res.status, 202);
    const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    assert.equal(await exited, 0);
  });

  test('relay: every configuration error is reported at once, before connecting, exit 2', async () => {
    const r = await run(['relay'], {
      DATABASE_URL: 'postgres://nobody@127.0.0.1:1/none',
      CERTYO_API_KEY: '',
      CERTYO_TENANT_ID: '',
      LOG_LEVEL: 'loud',
      CERTYO_BATCH_SIZE: '5000',
      CERTYO_LINGER_MS: '-1',
      CERTYO_BASE_URL: 'http://certyo.example.com',
    });
    assert.equal(r.code, 2);
    for (const v of [
      'CERTYO_API_KEY is required',
      'CERTYO_TENANT_ID is required',
      'LOG_LEVEL',
      'CERTYO_BATCH_SIZE',
      'CERTYO_LINGER_MS',
      'CERTYO_BASE_URL is http:// to certyo.example.com: the API key would cross the network unencrypted',
    ]) {
      assert.match(r.stderr, new RegExp(v));
    }
  });

  test('sslmode=require never falls back to a plain connection', async () => {
    const [{ ssl }] = (await db.sql`select current_setting('ssl') as ssl`) as unknown as [{ ssl: string }];
    const url = new URL(db.url);
    url.searchParams.set('sslmode', 'require');
    const r = await run(['status'], { DATABASE_URL: url.toString() });
    if (ssl === 'on') assert.equal(r.code, 0, r.stderr);
    else {
      // This server has no TLS: the connection must fail, not go on in the clear.
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /SSL|TLS|ssl|tls|ECONNRESET|EPROTO/);
    }
  });

  test('relay: plain http:// only to this machine, or when allowed', () => {
    const base = { CERTYO_API_KEY: 'k', CERTYO_TENANT_ID: 't' };
    for (const url of [
      'http://127.0.0.1:8080',
      'http://localhost:8080',
      'http://[::1]:8080',
      'https://x.example',
    ])
      assert.equal(loadConfig({ ...base, CERTYO_BASE_URL: url }).baseUrl, url);
    assert.throws(() => loadConfig({ ...base, CERTYO_BASE_URL: 'http://10.0.0.5:8080' }), /unencrypted/);
    assert.throws(
      () => loadConfig({ ...base, CERTYO_BASE_URL: 'http://127.0.0.1.example.com' }),
      /unencrypted/,
    );
    const allowed = loadConfig({
      ...base,
      CERTYO_BASE_URL: 'http://certyo-local:8080',
      CERTYO_ALLOW_HTTP: 'on',
    });
    assert.equal(allowed.baseUrl, 'http://certyo-local:8080');
    assert.throws(
      () => loadConfig({ ...base, CERTYO_ALLOW_HTTP: 'yes' }),
      /CERTYO_ALLOW_HTTP must be on or off/,
    );
  });

  test("the README's uninstall removes triggers, status columns and the schema", async () => {
    await db.sql`create table keep_me (id int primary key, v text)`;
    await db.sql`select certyo.enable_tracking('keep_me')`;
    await db.sql.unsafe(`
      select certyo.disable_tracking(format('%I.%I', schema_name, table_name)::regclass, drop_status_columns => true)
      from certyo.tracked_table where active and to_regclass(format('%I.%I', schema_name, table_name)) is not null;
      drop schema certyo cascade;`);
    const [left] = await db.sql`
      select (select count(*) from pg_trigger where tgrelid = 'keep_me'::regclass and not tgisinternal)::int as triggers,
             (select count(*) from pg_attribute where attrelid = 'keep_me'::regclass and attname like 'certyo%' and not attisdropped)::int as columns,
             (select count(*) from pg_namespace where nspname = 'certyo')::int as schemas`;
    assert.deepEqual(left, { triggers: 0, columns: 0, schemas: 0 });
    await db.sql`insert into keep_me values (1, 'still works')`;
  });
});
