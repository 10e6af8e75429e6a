// /healthz (process up), /readyz (delivering: started, database reachable, Certyo not
// refusing our credentials), /metrics (Prometheus text). No secrets in output.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Sql } from 'postgres';
import type { Relay } from './relay.js';

interface BackfillRow {
  table_name: string;
  finished: boolean;
  rows_done: number;
  rows_total: number;
}

export async function startHealth(
  port: number,
  relay: Relay,
  sql: Sql,
): Promise<{ port: number; server: Server }> {
  const server = createServer(async (req, res) => {
    const send = (status: number, body: string, type = 'text/plain; version=0.0.4') => {
      res.writeHead(status, { 'content-type': type });
      res.end(body);
    };
    if (req.url === '/healthz') return send(200, 'ok\n');
    if (req.url === '/readyz') {
      const db = await sql`select 1`.then(
        () => true,
        () => false,
      );
      const ready = relay.started && db && relay.healthy;
      return send(
        ready ? 200 : 503,
        JSON.stringify({
          ready,
          started: relay.started,
          database: db,
          certyo: relay.healthy,
          lastError: relay.lastError ?? null,
        }),
        'application/json',
      );
    }
    if (req.url === '/metrics') {
      const rows =
        await sql`select coalesce(sum(pending), 0)::int as backlog, coalesce(sum(parked), 0)::int as parked,
                                    coalesce(extract(epoch from max(oldest_change_age)), 0)::float8 as age,
                                    (select count(*) from certyo.receipt
                                     where next_check_at is not null and anchor_status = 'submitted')::int as unverified
                             from certyo.backlog`.catch(() => [
          { backlog: -1, parked: -1, age: -1, unverified: -1 },
        ]);
      const b = rows[0] as { backlog: number; parked: number; age: number; unverified: number };
      // Backfill progress per table, from the database (any relay's work).
      const backfills = await sql<BackfillRow[]>`
        select table_name, state in ('finished', 'stopped') as finished, rows_done::float8 as rows_done,
               rows_total::float8 as rows_total
        from certyo.backfills`.catch(() => []);
      const label = (table: string) => `{table="${table.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"}`;
      const perTable: [string, string, (x: BackfillRow) => number][] = [
        ['certyo_backfill_rows_done', 'rows of the latest backfill sent to the outbox', (x) => x.rows_done],
        ['certyo_backfill_rows_total', 'rows it expects (the estimate until finished)', (x) => x.rows_total],
        ['certyo_backfill_running', '1 while it is scheduled or running', (x) => (x.finished ? 0 : 1)],
      ];
      const backfillText = perTable
        .map(([name, help, value]) =>
          [
            `# HELP ${name} ${help}`,
            `# TYPE ${name} gauge`,
            ...backfills.map((x) => `${name}${label(x.table_name)} ${value(x)}`),
          ].join('\n'),
        )
        .join('\n');
      const m = relay.metrics;
      const v = relay.verifier?.metrics ?? { anchored: 0, anchorFailed: 0, mismatches: 0, requests: 0 };
      return send(
        200,
        [
          ['certyo_changes_delivered_total', 'counter', m.delivered],
          ['certyo_changes_retried_total', 'counter', m.retried],
          ['certyo_changes_parked_total', 'counter', m.parked],
          ['certyo_http_requests_total', 'counter', m.requests],
          ['certyo_http_request_seconds_sum', 'counter', m.httpSeconds],
          ['certyo_backlog_changes', 'gauge', b.backlog],
          ['certyo_parked_changes', 'gauge', b.parked],
          ['certyo_oldest_pending_age_seconds', 'gauge', b.age],
          ['certyo_relay_healthy', 'gauge', relay.healthy ? 1 : 0],
          ['certyo_verified_anchored_total', 'counter', v.anchored],
          ['certyo_verify_anchor_failed_total', 'counter', v.anchorFailed],
          ['certyo_verify_mismatches_total', 'counter', v.mismatches],
          ['certyo_verify_requests_total', 'counter', v.requests],
          ['certyo_unverified_changes', 'gauge', b.unverified],
          ['certyo_backfilled_rows_total', 'counter', relay.backfiller?.metrics.rows ?? 0],
        ]
          .map(([name, type, v]) => `# TYPE ${name} ${type}\n${name} ${v}`)
          .concat(backfillText)
          .join('\n')
          .concat('\n'),
      );
    }
    send(404, 'not found\n');
  });
  await new Promise<void>((r) => server.listen(port, '0.0.0.0', r));
  return { port: (server.address() as AddressInfo).port, server };
}
