// What the relay-driving benches share: a fresh database with certyo migrated
// (on DATABASE_URL, a superuser, or an embedded PostgreSQL), a local Certyo
// anchoring 10 ms after sealing, and the relay as a child process; all of it
// removed by close().
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import postgres, { type Sql } from 'postgres';
import { startEmbedded } from '../relay/src/embedded.js';
import { migrate } from '../relay/src/install.js';
import { type LocalCertyo, startLocalCertyo } from '../relay/src/local-certyo/server.js';
import { paths } from '../relay/src/paths.js';

export interface Bench {
  /** The bench's own database. */
  name: string;
  url: string;
  sql: Sql;
  api: LocalCertyo;
  key: string;
  close(): Promise<void>;
}

export async function startBench(connections: number): Promise<Bench> {
  const embedded = process.env.DATABASE_URL ? undefined : await startEmbedded();
  const admin = process.env.DATABASE_URL ?? embedded!.adminUrl;
  const name = `certyo_bench_${randomBytes(3).toString('hex')}`;
  const root = postgres(admin, { max: 1, onnotice: () => {} });
  await root.unsafe(`create database ${name}`);
  const u = new URL(admin);
  u.pathname = `/${name}`;
  const url = u.toString();
  const sql = postgres(url, { max: connections, onnotice: () => {} });
  const key = `certyo_sk_test_${randomBytes(8).toString('hex')}`;
  const api = await startLocalCertyo({
    keys: { [key]: 'bench' },
    flushRecords: 1000,
    flushMs: 1000,
    anchorMs: 10,
  });
  const close = async () => {
    await sql.end();
    await api.close();
    await root.unsafe(`drop database ${name} with (force)`);
    await root.end();
    await embedded?.stop();
  };
  try {
    await migrate(sql, url);
  } catch (err) {
    await close();
    throw err;
  }
  return { name, url, sql, api, key, close };
}

/**
 * `certyo-pg relay` against the bench's database and local Certyo (tenant
 * 'bench'). CERTYO_* settings in the bench's environment reach the relay too
 * (CERTYO_CONCURRENCY=4 npm run bench), except the connection and the key.
 */
export function startRelay(bench: Bench, env: Record<string, string> = {}): ChildProcess {
  const tuning = Object.entries(process.env).filter(([k]) => k.startsWith('CERTYO_'));
  return spawn(process.execPath, [`${paths.root}bin/certyo-pg.js`, 'relay'], {
    env: {
      ...Object.fromEntries(tuning),
      PATH: process.env.PATH ?? '',
      DATABASE_URL: bench.url,
      CERTYO_API_KEY: bench.key,
      CERTYO_TENANT_ID: 'bench',
      CERTYO_BASE_URL: bench.api.url,
      LOG_LEVEL: process.env.BENCH_RELAY_LOG_LEVEL ?? 'error',
      ...env,
    },
    stdio: 'inherit',
  });
}

/** SIGTERM, then wait for the exit (a graceful stop gives its leases back). */
export function stopRelay(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.once('exit', () => resolve());
    child.kill('SIGTERM');
  });
}
