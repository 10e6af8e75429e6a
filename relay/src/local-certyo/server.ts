// The local Certyo-compatible HTTP server: routes, API keys and tenants,
// problem+json errors, fault injection and a log of every request received.
// Usable in-process (startLocalCertyo) and as `certyo-pg local-certyo`.
// Ingestion is in ingest.ts, request bodies in bodies.ts, the read side (listing, batches, snapshots,
// verification) in queries.ts, fault injection in faults.ts, the
// documented-only mode in documented.ts.
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import type { ItemMapper } from '../certyo/json.js';
import { readBodyText, sameTenant, tenantBody } from './bodies.js';
import { documentedAnswer, refuseUndocumented } from './documented.js';
import { HttpError, problem } from './errors.js';
import { type Faults, type Garble, garbled, NO_FAULTS } from './faults.js';
import { ingestion } from './ingest.js';
import { Ledger, type LedgerOptions } from './ledger.js';
import { answerQuery } from './queries.js';

export { type Faults, type Garble, NO_FAULTS } from './faults.js';

export interface LoggedRequest {
  at: number;
  /** performance.now() when the request arrived (before latency faults), for latency measurements. */
  arrivedMs: number;
  method: string;
  path: string;
  status: number;
  /** 'ok', or the fault injected. */
  outcome: 'ok' | '429' | '500' | '503' | 'dropped' | Garble;
  records: Array<{
    recordId: string;
    idempotencyKey?: string;
    recordVersion?: string;
    status: string;
    replayed: boolean;
  }>;
}

export interface LocalCertyoOptions extends Partial<LedgerOptions> {
  port?: number;
  host?: string;
  /** API key -> tenant. */
  keys: Record<string, string>;
  admin?: boolean;
  faults?: Partial<Faults>;
  /** Serve only what Certyo documents (documented.ts). */
  documentedOnly?: boolean;
  logger?: Logger;
  maxBodyBytes?: number;
}

export interface LocalCertyo {
  url: string;
  port: number;
  ledger: Ledger;
  faults: Faults;
  readonly documentedOnly: boolean;
  requests: LoggedRequest[];
  /** Idempotency keys sent again with another payload or record id (the first answer was returned). */
  replayMismatches: string[];
  /** Resolves when the next API request arrives (before it is handled, faults and latency included). */
  nextArrival(): Promise<void>;
  /** Resolves when a logged request satisfies the predicate (checks past requests first). */
  waitFor(pred: (r: LoggedRequest) => boolean): Promise<LoggedRequest>;
  close(): Promise<void>;
}

export async function startLocalCertyo(opts: LocalCertyoOptions): Promise<LocalCertyo> {
  const faults: Faults = { ...NO_FAULTS, ...opts.faults };
  const documentedOnly = opts.documentedOnly ?? false;
  const log = opts.logger;
  const replayMismatches: string[] = [];
  const ledger = new Ledger(
    {
      flushRecords: opts.flushRecords ?? 1000,
      flushMs: opts.flushMs ?? 60_000,
      anchorMs: opts.anchorMs ?? 30_000,
      idempotencyWindowMs: opts.idempotencyWindowMs ?? 24 * 3600_000,
    },
    faults,
    (key) => {
      replayMismatches.push(key);
      log?.warn(
        { idempotencyKey: key },
        'idempotent replay with a different payload; original response returned',
      );
    },
  );
  const requests: LoggedRequest[] = [];
  const waiters = new Set<{ pred: (r: LoggedRequest) => boolean; resolve: (r: LoggedRequest) => void }>();
  const arrivals = new Set<() => void>();
  const maxBody = opts.maxBodyBytes ?? 64 * 1024 * 1024;

  const record = (entry: LoggedRequest) => {
    requests.push(entry);
    for (const w of waiters) {
      if (w.pred(entry)) {
        waiters.delete(w);
        w.resolve(entry);
      }
    }
  };

  const tenantOf = (req: IncomingMessage): string => {
    const key = req.headers['x-api-key'];
    const tenant = typeof key === 'string' ? opts.keys[key] : undefined;
    if (!tenant) throw new HttpError(401, 'Unauthorized', 'missing or unknown X-API-Key');
    return tenant;
  };

  /** A request body that must be a JSON object claiming no tenant but the key's (bodies.ts). */
  const bodyOf = (req: IncomingMessage, tenant: string, items?: ItemMapper) =>
    tenantBody(req, tenant, maxBody, items);

  const ingest = ingestion(ledger, faults);

  async function route(req: IncomingMessage, url: URL, entry: LoggedRequest): Promise<[number, unknown]> {
    const p = url.pathname;
    const m = req.method ?? 'GET';
    if (opts.admin && p === '/_admin/faults') {
      if (m === 'POST') {
        const change = (await readBodyText(req)) as Record<string, unknown>;
        for (const k of Object.keys(NO_FAULTS)) if (k in change) Object.assign(faults, { [k]: change[k] });
      }
      return [200, faults];
    }
    if (opts.admin && p === '/_admin/requests') return [200, requests];
    if (!p.startsWith('/api/v1/')) throw new HttpError(404, 'Not Found', `no route ${m} ${p}`);
    const tenant = tenantOf(req);
    if (documentedOnly) refuseUndocumented(m, url);
    if (m === 'POST' && p === '/api/v1/records')
      return ingest.ingestOne(tenant, await bodyOf(req, tenant), entry);
    if (m === 'POST' && p === '/api/v1/records/bulk')
      return ingest.ingestBulk(
        tenant,
        await bodyOf(req, tenant, { key: 'records', map: ingest.prepare }),
        entry,
      );
    const answer = await answerQuery(
      { ledger, faults, documentedOnly, tenantBody: bodyOf, sameTenant },
      req,
      url,
      tenant,
    );
    if (answer) return answer;
    throw new HttpError(404, 'Not Found', `no route ${m} ${p}`);
  }

  const server = createServer(async (req: IncomingMessage, res: ServerResponse) => {
    const correlationId = randomUUID();
    const url = new URL(req.url ?? '/', 'http://local');
    const entry: LoggedRequest = {
      at: Date.now(),
      arrivedMs: performance.now(),
      method: req.method ?? '',
      path: url.pathname,
      status: 0,
      outcome: 'ok',
      records: [],
    };
    if (url.pathname.startsWith('/api/')) {
      for (const arrived of arrivals) arrived();
      arrivals.clear();
    }
    const send = (status: number, body: unknown, headers: Record<string, string> = {}) => {
      entry.status = status;
      res.writeHead(status, {
        'content-type': status >= 400 ? 'application/problem+json' : 'application/json',
        'x-correlation-id': correlationId,
        ...headers,
      });
      res.end(JSON.stringify(body));
    };
    try {
      const api = url.pathname.startsWith('/api/');
      if (api && faults.latencyMs > 0) await new Promise((r) => setTimeout(r, faults.latencyMs));
      if (api && Math.random() < faults.rate429) {
        entry.outcome = '429';
        req.resume();
        send(429, problem(429, 'Too Many Requests', 'rate limited'), {
          'retry-after': String(faults.retryAfterSeconds),
        });
      } else if (api && Math.random() < faults.rate500 + faults.rate503) {
        const status = Math.random() * (faults.rate500 + faults.rate503) < faults.rate500 ? 500 : 503;
        entry.outcome = status === 500 ? '500' : '503';
        req.resume();
        send(
          status,
          problem(
            status,
            status === 500 ? 'Internal Server Error' : 'Service Unavailable',
            `injected fault; quote X-Correlation-Id ${correlationId}`,
          ),
        );
      } else {
        const [status, answer] = await route(req, url, entry);
        const body =
          documentedOnly && status < 300 ? documentedAnswer(entry.method, url.pathname, answer) : answer;
        if (api && Math.random() < faults.dropRate) {
          entry.outcome = 'dropped';
          entry.status = status;
          res.socket?.destroy();
        } else if (api && Math.random() < faults.garbleRate) {
          entry.outcome = faults.garble;
          entry.status = status;
          garbled(res, faults.garble, status, body, faults.redirectTo);
        } else send(status, body);
      }
    } catch (err) {
      if (err instanceof HttpError)
        send(err.status, {
          ...problem(err.status, err.title, err.message),
          ...(err.errors && { errors: err.errors }),
        });
      else {
        log?.error({ err, correlationId }, 'local-certyo: unexpected error');
        send(500, problem(500, 'Internal Server Error', 'unexpected error'));
      }
    } finally {
      record(entry);
    }
  });
  server.keepAliveTimeout = 10_000;

  await new Promise<void>((resolve) => server.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://${opts.host ?? '127.0.0.1'}:${port}`,
    port,
    ledger,
    faults,
    documentedOnly,
    requests,
    replayMismatches,
    nextArrival() {
      return new Promise((resolve) => arrivals.add(resolve));
    },
    waitFor(pred) {
      const hit = requests.find(pred);
      if (hit) return Promise.resolve(hit);
      return new Promise((resolve) => waiters.add({ pred, resolve }));
    },
    async close() {
      ledger.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
