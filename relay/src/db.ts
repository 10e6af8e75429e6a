// One way to open a connection pool: DATABASE_URL when given, else the
// standard PG* variables (postgres.js reads them itself).
import type { Logger } from 'pino';
import postgres, { type Options, type Sql } from 'postgres';
import type { Config } from './config.js';

/**
 * fetch_types is off: postgres.js 3.4.9 fetches array types as the first
 * query of every new connection and drops that query's promise, so a backend
 * terminated at that moment (a restart, pg_terminate_backend) crashes the
 * process with an unhandled rejection (porsager/postgres#1192, #1223). Arrays
 * are sent as literals instead (pgArray).
 *
 * backoff is the driver's wait before a pool slot connects again, in
 * seconds; its argument counts every failed connection of the whole pool
 * since one last succeeded. postgres.js's default grows as 3^n/100 to 20 s,
 * so a restart's burst of refused connections left every slot idle for
 * 10-20 s after PostgreSQL was back. Ours stays under a second: the callers
 * (the relay's loops, CERTYO_BACKOFF_*) do the backing off.
 */
export function connect(databaseUrl: string | undefined, options: Options<Record<string, never>> = {}): Sql {
  const opts: Options<Record<string, never>> = {
    onnotice: () => {},
    connection: { application_name: 'certyo-pg' },
    fetch_types: false,
    backoff: reconnectDelay,
    ...options,
  };
  return databaseUrl ? postgres(databaseUrl, opts) : postgres(opts);
}

/** Seconds before a pool slot reconnects after failed connections: 10 ms doubling, at most 1 s. */
function reconnectDelay(failures: number): number {
  return Math.min(0.01 * 2 ** failures, 1);
}

/**
 * The relay's pool: per delivery loop its claim and the previous batch's
 * acknowledgement, two more for registration and vacuum (verification loops
 * use what is free: queries beyond the pool wait). Warnings certyo's
 * functions raise (certyo.ack's about reused change ids) reach the log.
 */
export function relayPool(cfg: Pick<Config, 'databaseUrl' | 'concurrency'>, log: Logger): Sql {
  return connect(cfg.databaseUrl, {
    max: 2 * cfg.concurrency + 2,
    connection: { application_name: 'certyo-relay' },
    onnotice: (n) => {
      if (n.severity === 'WARNING') log.warn({ hint: n.hint }, `PostgreSQL: ${n.message}`);
    },
  });
}

/**
 * The error of calling a function the install does not have (42883): a relay
 * newer than its install, before `certyo-pg migrate`.
 */
export function isUndefinedFunction(err: unknown): boolean {
  return (err as { code?: string }).code === '42883';
}

/** A PostgreSQL array literal (cast it: `${pgArray(ids)}::bigint[]`); null elements stay NULL. */
export function pgArray(values: readonly (string | number | bigint | null | undefined)[]): string {
  let out = '{';
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (i > 0) out += ',';
    if (v == null) {
      out += 'NULL';
      continue;
    }
    const s = typeof v === 'string' ? v : String(v);
    // Most values need no escape: testing is 5 times cheaper than always replacing.
    out += s.includes('"') || s.includes('\\') ? `"${s.replace(/[\\"]/g, '\\$&')}"` : `"${s}"`;
  }
  return `${out}}`;
}

/** PostgreSQL SQLSTATEs that say "try again": connection exceptions, shutdown, starting up, too many connections. */
const TRANSIENT_STATE = /^(08|57P0[123]|53300)/;

/** An error that a later attempt may not get: the server down, restarting or out of connections, the connection cut. */
export function isTransient(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code !== 'string') return false;
  return (
    TRANSIENT_STATE.test(code) ||
    code.startsWith('CONNECT') || // postgres.js: CONNECTION_CLOSED, _ENDED, _DESTROYED, CONNECT_TIMEOUT
    ['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN'].includes(
      code,
    )
  );
}
