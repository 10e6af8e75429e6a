// A fresh database per test file, cloned from the migrated template that
// test/run.ts prepared (CERTYO_TEST_ADMIN_URL, CERTYO_TEST_TEMPLATE).
import { randomBytes } from 'node:crypto';
import postgres, { type Sql } from 'postgres';

export interface TestDb {
  name: string;
  url: string;
  /** Connected as the database owner (a superuser). */
  sql: Sql;
  /** A URL for the same database as another role. */
  urlAs(role: string): string;
  close(): Promise<void>;
}

function env(name: string): string {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: run the tests with \`npm test\``);
  return v;
}

export function withDatabase(url: string, database: string, user?: string): string {
  const u = new URL(url);
  u.pathname = `/${database}`;
  if (user) {
    u.username = user;
    u.password = '';
  }
  return u.toString();
}

export function adminUrl(): string {
  return env('CERTYO_TEST_ADMIN_URL');
}

export async function freshDatabase(): Promise<TestDb> {
  const admin = adminUrl();
  const name = `${env('CERTYO_TEST_PREFIX')}_${randomBytes(4).toString('hex')}`;
  const root = postgres(admin, { max: 1, onnotice: () => {} });
  await root.unsafe(`create database ${name} template ${env('CERTYO_TEST_TEMPLATE')}`);
  await root.end();
  const url = withDatabase(admin, name);
  const sql = postgres(url, { max: 4, onnotice: () => {} });
  return {
    name,
    url,
    sql,
    urlAs: (role) => withDatabase(admin, name, role),
    async close() {
      await sql.end({ timeout: 5 });
      const r = postgres(admin, { max: 1, onnotice: () => {} });
      await r.unsafe(`drop database if exists ${name} with (force)`);
      await r.end();
    },
  };
}
