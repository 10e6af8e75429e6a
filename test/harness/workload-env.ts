// What the stress tests share: the relay processes' environment, the major
// under test, and the drain wait that shows the relays' logs when it stalls.
import assert from 'node:assert/strict';
import type { Sql } from 'postgres';
import type { LocalCertyo } from '../../relay/src/local-certyo/server.js';
import { type ClientsOptions, type ClientsResult, type Rand, runClients } from './clients.js';
import { RelayProcesses } from './relay-process.js';
import { openSentinel } from './sentinel.js';
import { until } from './wait.js';

export const STRESS_KEY = 'certyo_sk_test_stress_0123456789abcdef';

/** Major version of the server under test. */
export const PG_MAJOR = Number.parseInt(process.env.CERTYO_TEST_PG_VERSION ?? '0', 10);

/** CERTYO_STRESS_SCALE multiplies the workloads' length (default 1, about 10 s each). */
export const STRESS_SCALE = Number(process.env.CERTYO_STRESS_SCALE || 1);

/** Relay processes of a stress test: the shortest lease (one gets SIGKILLed), verification on. */
export function stressRelays(dbUrl: () => string, api: () => LocalCertyo) {
  return new RelayProcesses(() => ({
    DATABASE_URL: dbUrl(),
    CERTYO_API_KEY: STRESS_KEY,
    CERTYO_TENANT_ID: 'acme',
    CERTYO_BASE_URL: api().url,
    CERTYO_BATCH_SIZE: '200',
    CERTYO_LEASE_SECONDS: '5',
    CERTYO_POLL_INTERVAL_MS: '100',
    CERTYO_BACKOFF_BASE_MS: '10',
    CERTYO_BACKOFF_MAX_MS: '300',
    CERTYO_VERIFY_DELAY_MS: '0',
    CERTYO_VERIFY_INTERVAL_MS: '200',
    LOG_LEVEL: 'warn',
  }));
}

/** Waits until the relays delivered everything (backfills included); nothing may be parked. */
export async function drained(sql: Sql, relays: RelayProcesses) {
  await until(
    async () => {
      if (relays.running() === 0) throw new Error(`no relay is running:\n${relays.logs()}`);
      // Backfills finished too: between two chunks the outbox may be empty.
      const [o] = await sql`select (select count(*) from certyo.outbox)::int as n,
                                   exists (select from certyo.backfill where finished_at is null) as backfilling`;
      return o!.n === 0 && !o!.backfilling;
    },
    {
      limitMs: 120_000,
      describe: async () =>
        `${JSON.stringify(
          await sql`select op, parked_at is not null as parked, last_error, count(*)::int
                                  from certyo.outbox group by 1, 2, 3`,
        )}\n${relays.logs()}`,
    },
  );
  const [p] = await sql`select count(*)::int as n from certyo.parked`;
  assert.equal(p!.n, 0, 'nothing parked');
}

/**
 * A workload under delivery: two relays started, a sentinel session opened,
 * then the clients (seeded by CERTYO_STRESS_SEED, else by the clock). Fails
 * with "PostgreSQL crashed" when the sentinel's session did not survive.
 */
export async function runWorkload(
  url: string,
  relays: RelayProcesses,
  opts: Omit<ClientsOptions, 'seed'>,
  iteration: (sql: Sql, rand: Rand, client: number) => Promise<void>,
): Promise<ClientsResult> {
  relays.spawn();
  relays.spawn();
  const sentinel = await openSentinel(url);
  const seed = Number(process.env.CERTYO_STRESS_SEED || Date.now() % 100000);
  try {
    return await runClients(url, { ...opts, seed }, iteration);
  } finally {
    await sentinel.assertNoCrash();
  }
}
