// Baseline 2, from Certyo's PostgreSQL guide: a worker polls
// `updated_at > last_seen` every interval and POSTs what it finds (generously,
// in bulk requests of up to 1000). What it loses by design: deletes (a deleted
// row is not there to be found), and rows whose transaction committed after a
// later-stamped one was already seen (the cursor moved past their timestamp).
import type { Sql } from 'postgres';
import { Agent, request } from 'undici';
import type { Baseline } from './listener.js';

export const POLLER_SQL = `
  create table polled_orders (id bigserial primary key, item text not null, qty int not null, updated_at timestamptz not null default now());
  create index polled_orders_updated_at on polled_orders (updated_at, id);`;

export async function startPoller(
  sql: Sql,
  opts: { baseUrl: string; apiKey: string; tenantId: string; database: string; intervalMs: number },
): Promise<Baseline> {
  const agent = new Agent({ connections: 2 });
  const state = { posted: 0, failed: 0, running: true };
  let last = '-infinity'; // the timestamp as text: microseconds kept

  const loop = (async () => {
    while (state.running) {
      // Everything changed since the last poll (a page limit would skip rows sharing the
      // last timestamp: one statement stamps all its rows alike), posted 1000 at a time.
      const rows = await sql<{ id: string; item: string; qty: number; updated_at: string }[]>`
        select id::text, item, qty, updated_at::text from polled_orders
        where updated_at > ${last}::text::timestamptz order by updated_at`;
      for (let i = 0; i < rows.length; i += 1000) {
        const records = rows.slice(i, i + 1000).map((r) => ({
          tenantId: opts.tenantId,
          database: opts.database,
          collection: 'public.polled_orders',
          recordId: r.id,
          recordPayload: { id: Number(r.id), item: r.item, qty: r.qty, updated_at: r.updated_at },
          operationType: 'upsert',
        }));
        const res = await request(`${opts.baseUrl}/api/v1/records/bulk`, {
          method: 'POST',
          dispatcher: agent,
          headers: { 'content-type': 'application/json', 'x-api-key': opts.apiKey },
          body: JSON.stringify({ tenantId: opts.tenantId, records }),
        });
        await res.body.dump();
        if (res.statusCode === 202) state.posted += records.length;
        else state.failed += records.length;
      }
      if (rows.length > 0) last = rows.at(-1)!.updated_at;
      await new Promise((r) => setTimeout(r, opts.intervalMs));
    }
  })();
  return {
    get posted() {
      return state.posted;
    },
    get failed() {
      return state.failed;
    },
    async stop() {
      state.running = false;
      await loop;
      await agent.close();
    },
  };
}
