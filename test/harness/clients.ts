// Concurrent clients for workloads we did not write: each on its own
// connection, running one iteration after another with its own seeded random
// numbers (a failure names the seed, so it can be replayed). Errors that
// PostgreSQL rightly raises under contention are counted and the client goes
// on; a lost connection stops every client (the server went away: check the
// sentinel); any other error fails the run.
import postgres, { type Sql } from 'postgres';

/** Deadlock, serialization failure, and the unique violation of an insert racing another. */
const CONTENTION = new Set(['40P01', '40001', '23505']);
const GONE = new Set([
  'CONNECTION_CLOSED',
  'CONNECTION_ENDED',
  'CONNECTION_DESTROYED',
  'ECONNRESET',
  'ECONNREFUSED',
  'EPIPE',
  '57P01', // terminating connection due to administrator command
  '57P02', // terminating connection because of crash of another server process
  '57P03', // the database system is in recovery mode
]);

/** Seeded random numbers (mulberry32). */
export class Rand {
  constructor(private state: number) {}
  next(): number {
    this.state = (this.state + 0x6d2b79f5) | 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  /** An integer in [lo, hi]. */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }
  pick<T>(xs: readonly T[]): T {
    return xs[Math.floor(this.next() * xs.length)]!;
  }
}

export interface ClientsResult {
  /** The seed the clients' random numbers came from (CERTYO_STRESS_SEED replays it). */
  seed: number;
  /** Iterations that ended without an error. */
  committed: number;
  /** Contention errors by SQLSTATE. */
  contention: Record<string, number>;
}

export interface ClientsOptions {
  clients: number;
  iterations: number;
  seed: number;
  /** Called once, when any client has done this many iterations (a DDL in the middle of the run). */
  midway?: { after: number; run: (sql: Sql) => Promise<void> };
  /** Each client's session settings (startup parameters: TimeZone, extra_float_digits, ...). */
  settings?: (client: number) => Record<string, string>;
  /**
   * Run by each client once its iterations are done, and run again while it
   * meets contention: an ending every client reaches (the run's last changes
   * to a key, say, so that how the run ends does not hang on chance).
   */
  finish?: (sql: Sql, client: number) => Promise<void>;
}

export async function runClients(
  url: string,
  opts: ClientsOptions,
  iteration: (sql: Sql, rand: Rand, client: number) => Promise<void>,
): Promise<ClientsResult> {
  const result: ClientsResult = { seed: opts.seed, committed: 0, contention: {} };
  let stop: Error | undefined;
  let midwayDone = !opts.midway;
  /** Runs one step; false when it met contention (counted), throws on any other error. */
  const attempt = async (c: number, what: string, step: () => Promise<void>) => {
    try {
      await step();
      return true;
    } catch (err) {
      const code = (err as { code?: string }).code ?? '';
      if (CONTENTION.has(code)) {
        result.contention[code] = (result.contention[code] ?? 0) + 1;
        return false;
      }
      const how = GONE.has(code) ? 'lost its connection' : 'failed';
      throw new Error(`client ${c} (seed ${opts.seed}) ${how} in ${what}: ${(err as Error).message}`, {
        cause: err,
      });
    }
  };
  const client = async (c: number) => {
    const sql = postgres(url, { max: 1, onnotice: () => {}, connection: opts.settings?.(c) ?? {} });
    const rand = new Rand(opts.seed * 1000 + c);
    try {
      for (let i = 0; i < opts.iterations && !stop; i++) {
        const ok = await attempt(c, `iteration ${i}`, async () => {
          if (!midwayDone && i === opts.midway!.after) {
            midwayDone = true;
            await opts.midway!.run(sql);
          }
          await iteration(sql, rand, c);
        });
        if (ok) result.committed++;
      }
      const finish = opts.finish;
      if (finish) while (!stop && !(await attempt(c, 'its finish', () => finish(sql, c)))) {}
    } catch (err) {
      stop ??= err as Error;
    } finally {
      await sql.end({ timeout: 1 });
    }
  };
  await Promise.all(Array.from({ length: opts.clients }, (_, c) => client(c)));
  if (stop) throw stop;
  return result;
}
