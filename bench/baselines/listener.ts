// Baseline 1, from Certyo's PostgreSQL guide: a trigger pg_notify()s every
// changed row as JSON, and a listener POSTs one record per notification to
// /api/v1/records. Re-implemented faithfully (and generously: up to 8 POSTs in
// flight, in notification order per record). What it loses by design: every
// change committed while no listener is connected (NOTIFY is not queued for
// absent listeners), and anything whose POST failed once.
import type { Sql } from 'postgres';
import { Agent, request } from 'undici';

export const LISTENER_SQL = `
  create table notify_orders (id bigserial primary key, item text not null, qty int not null, updated_at timestamptz not null default now());
  create function notify_change() returns trigger language plpgsql as $$
  begin
    perform pg_notify('certyo_changes', json_build_object('op', lower(tg_op), 'row', row_to_json(coalesce(new, old)))::text);
    return null;
  end $$;
  create trigger notify_change after insert or update or delete on notify_orders
    for each row execute function notify_change();`;

export interface Baseline {
  posted: number;
  failed: number;
  stop(): Promise<void>;
}

export async function startListener(
  sql: Sql,
  opts: { baseUrl: string; apiKey: string; tenantId: string; database: string },
): Promise<Baseline> {
  const agent = new Agent({ connections: 8 });
  const state = { posted: 0, failed: 0 };
  let inFlight = 0;
  const queue: string[] = [];
  const pump = () => {
    while (inFlight < 8 && queue.length > 0) {
      const payload = queue.shift()!;
      inFlight++;
      const { op, row } = JSON.parse(payload) as { op: string; row: { id: number } };
      request(`${opts.baseUrl}/api/v1/records`, {
        method: 'POST',
        dispatcher: agent,
        headers: { 'content-type': 'application/json', 'x-api-key': opts.apiKey },
        body: JSON.stringify({
          tenantId: opts.tenantId,
          database: opts.database,
          collection: 'public.notify_orders',
          recordId: String(row.id),
          recordPayload: row,
          operationType: op,
        }),
      })
        .then(async (res) => {
          await res.body.dump();
          if (res.statusCode === 202) state.posted++;
          else state.failed++;
        })
        .catch(() => state.failed++)
        .finally(() => {
          inFlight--;
          pump();
        });
    }
  };
  const sub = await sql.listen('certyo_changes', (payload) => {
    queue.push(payload);
    pump();
  });
  return {
    get posted() {
      return state.posted;
    },
    get failed() {
      return state.failed;
    },
    async stop() {
      await sub.unlisten();
      await agent.close();
    },
  };
}
