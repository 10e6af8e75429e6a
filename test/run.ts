// `npm test`: prepares one PostgreSQL (DATABASE_URL, or an embedded server),
// a migrated template database and the test roles, then runs every
// dist/test/**/*.test.js with node's test runner, and cleans up.
// `npm test -- --pg 13 sql/ stress/`: an embedded PostgreSQL 13 (any major
// from 13 on, see relay/src/embedded-binaries.ts), only the files whose path
// contains one of the filters.
import { spawn } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import postgres from 'postgres';
import { type Server, startEmbedded } from '../relay/src/embedded.js';
import { migrate } from '../relay/src/install.js';
import { withDatabase } from './harness/db.js';

/** Login roles the tests connect as (cluster-wide, so created once here). */
export const TEST_ROLES = [
  'certyo_test_app',
  'certyo_test_relay',
  'certyo_test_owner',
  'certyo_test_stranger',
];

function testFiles(dir: string): string[] {
  return readdirSync(dir)
    .flatMap((f) => {
      const p = join(dir, f);
      return statSync(p).isDirectory() ? testFiles(p) : p.endsWith('.test.js') ? [p] : [];
    })
    .sort();
}

async function main() {
  const { values, positionals: filter } = parseArgs({
    options: { pg: { type: 'string' } },
    allowPositionals: true,
  });
  if (values.pg !== undefined) {
    // An embedded server of that major, for this process and the test files (restart.test.ts starts its own).
    process.env.CERTYO_EMBEDDED_PG = values.pg;
    delete process.env.DATABASE_URL;
  }
  let server: Server | undefined;
  let admin = process.env.DATABASE_URL;
  if (!admin) {
    server = await startEmbedded();
    admin = server.adminUrl;
  }
  const prefix = `certyo_t${process.pid}`;
  const template = `${prefix}_template`;
  const root = postgres(admin, { max: 1, onnotice: () => {} });
  const [{ version }] = (await root`select current_setting('server_version') as version`) as unknown as [
    { version: string },
  ];
  console.log(`# PostgreSQL ${version} (${server ? 'embedded' : 'DATABASE_URL'})`);
  for (const role of TEST_ROLES) {
    await root.unsafe(`do $$ begin
      if not exists (select from pg_roles where rolname = '${role}') then create role ${role} login; end if;
    end $$`);
  }
  await root.unsafe(`create database ${template}`);
  const tplUrl = withDatabase(admin, template);
  const tpl = postgres(tplUrl, { max: 1, onnotice: () => {} });
  await migrate(tpl, tplUrl);
  await tpl.end();
  await root.unsafe(`alter database ${template} is_template true`);

  let code = 1;
  try {
    const files = testFiles(new URL('.', import.meta.url).pathname).filter(
      (f) => filter.length === 0 || filter.some((x) => f.includes(x)),
    );
    code = await new Promise<number>((resolve) => {
      const child = spawn(
        process.execPath,
        ['--test', '--test-concurrency=3', '--test-timeout=240000', ...files],
        {
          stdio: 'inherit',
          env: {
            ...process.env,
            CERTYO_TEST_ADMIN_URL: admin,
            CERTYO_TEST_TEMPLATE: template,
            CERTYO_TEST_PREFIX: prefix,
            CERTYO_TEST_PG_VERSION: version,
            // Set when the server is embedded: tests that need a private server of the same major start one.
            CERTYO_TEST_EMBEDDED: server ? String(server.major) : '',
          },
        },
      );
      child.on('exit', (c) => resolve(c ?? 1));
    });
  } finally {
    const dbs = await root`select datname from pg_database where datname like ${`${prefix}%`}`;
    for (const { datname } of dbs) {
      if (datname === template) await root.unsafe(`alter database ${template} is_template false`);
      await root.unsafe(`drop database if exists ${datname} with (force)`);
    }
    await root.end();
    await server?.stop();
  }
  process.exitCode = code;
}

await main();
