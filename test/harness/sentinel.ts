// The crash check that cannot miss: a session opened before a workload and
// checked after it. When any backend crashes, the postmaster ends every
// session and runs crash recovery, so if the sentinel's backend is still the
// same process afterwards, no backend crashed in between; a slow run cannot
// look like a crash, nor a crash like a slow run.
import postgres from 'postgres';

export interface Sentinel {
  /** Throws if the sentinel's session was ended (a crash); closes it either way. */
  assertNoCrash(): Promise<void>;
}

export async function openSentinel(url: string): Promise<Sentinel> {
  const sql = postgres(url, { max: 1, idle_timeout: 0, max_lifetime: null, onnotice: () => {} });
  const [{ pid }] = (await sql`select pg_backend_pid() as pid`) as unknown as [{ pid: number }];
  return {
    async assertNoCrash() {
      try {
        const [now] = await sql`select pg_backend_pid() as pid`;
        if (now!.pid !== pid) throw new Error(`backend ${pid} is gone, the session came back as ${now!.pid}`);
      } catch (err) {
        throw new Error(
          `PostgreSQL crashed during the workload: the sentinel session opened before it was ended (${(err as Error).message})`,
          { cause: err },
        );
      } finally {
        await sql.end({ timeout: 1 });
      }
    },
  };
}
