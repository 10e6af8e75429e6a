// The local Certyo-compatible HTTP server: routes, API keys and tenants,
// problem+json errors, fault injection and a log of every request received.
// Usable in-process (startLocalCertyo) and as `certyo-pg local-certyo`.
// The read side (listing, batches, snapshots, verification) is in queries.ts,
// fault injection in faults.ts, the documented-only mode in documented.ts.
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import {
  get,
  type ItemMapper,
  isObject,
  type Json,
  type JsonObject,
  JsonSyntaxError,
  own,
  parseJson,
} from '../certyo/json.js';
import { documentedAnswer, refuseUndocumented } from './documented.js';
import { HttpError, problem } from './errors.js';
import { type Faults, type Garble, garbled, NO_FAULTS } from './faults.js';
import { type IngestResult, Ledger, type LedgerOptions, recordHash } from './ledger.js';
import { answerQuery } from './queries.js';
import { type FieldError, type RecordFields, validateRecord } from './validate.js';

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

  const readJson = async (req: IncomingMessage, items?: ItemMapper): Promise<Json> => {
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const c of req) {
      size += (c as Buffer).length;
      if (size > maxBody) throw new HttpError(413, 'Payload Too Large', `body over ${maxBody} bytes`);
      chunks.push(c as Buffer);
    }
    try {
      return parseJson(Buffer.concat(chunks).toString('utf8'), items);
    } catch (err) {
      if (err instanceof JsonSyntaxError)
        throw new HttpError(400, 'Bad Request', err.message, [{ field: 'body', message: err.message }]);
      throw err;
    }
  };

  const sameTenant = (tenant: string, claimed: Json | undefined) => {
    if (typeof claimed === 'string' && claimed !== tenant) {
      throw new HttpError(403, 'Forbidden', 'the API key does not belong to this tenant');
    }
  };

  const rejectedByRule = (payload: { entries: Array<[string, Json]> }) => {
    if (faults.rejectField === null) return false;
    const v = get(payload, faults.rejectField);
    const text =
      v === undefined ? undefined : typeof v === 'object' && v !== null && 'raw' in v ? v.raw : String(v);
    return text === faults.rejectValue;
  };

  /** A request body that must be a JSON object claiming no tenant but the key's. */
  const tenantBody = async (
    req: IncomingMessage,
    tenant: string,
    items?: ItemMapper,
  ): Promise<JsonObject> => {
    const body = await readJson(req, items);
    if (!isObject(body)) throw new HttpError(400, 'Bad Request', 'body must be a JSON object');
    sameTenant(tenant, get(body, 'tenantId'));
    return body;
  };

  /**
   * One record, checked on its own and hashed while the body is parsed; what
   * is kept is this summary, not the record's parse tree.
   */
  interface Prepared {
    record?: RecordFields;
    hash?: string;
    errors: FieldError[];
    /** The record's recordId as sent. */
    recordId: Json | undefined;
    ruleRejected: boolean;
  }
  const prepare = (raw: Json): Prepared => {
    const { record, errors } = validateRecord(raw);
    if (!record)
      return { errors, recordId: isObject(raw) ? get(raw, 'recordId') : undefined, ruleRejected: false };
    const { recordPayload, ...fields } = record;
    return {
      record: fields,
      hash: recordHash(recordPayload),
      errors,
      recordId: record.recordId,
      ruleRejected: rejectedByRule(recordPayload),
    };
  };

  /** One prepared record: refused (fields, tenant, reject rule) or ingested; logged either way. */
  const admit = (
    tenant: string,
    p: Prepared,
    entry: LoggedRequest,
  ): { result: IngestResult } | { errors: FieldError[] } => {
    const r = p.record;
    let refused: FieldError[] | undefined;
    if (!r) refused = p.errors;
    else if (r.tenantId !== tenant) refused = [{ field: 'tenantId', message: 'does not match the API key' }];
    else if (p.ruleRejected) refused = [{ field: 'recordPayload', message: 'rejected by rule' }];
    if (refused || !r) {
      entry.records.push({ recordId: String(p.recordId), status: 'rejected', replayed: false });
      return { errors: refused ?? p.errors };
    }
    const result = ledger.ingest(r, p.hash!);
    // The request log outlives the body: own copies of its strings (see own()).
    entry.records.push({
      recordId: own(r.recordId),
      idempotencyKey: r.idempotencyKey === undefined ? undefined : own(r.idempotencyKey),
      recordVersion: own(r.recordVersion),
      status: 'accepted',
      replayed: result.idempotencyReplayed,
    });
    return { result };
  };
  const describeErrors = (errors: FieldError[]) => errors.map((e) => `${e.field} ${e.message}`).join('; ');

  async function ingestOne(
    tenant: string,
    body: JsonObject,
    entry: LoggedRequest,
  ): Promise<[number, unknown]> {
    const admitted = admit(tenant, prepare(body), entry);
    if ('errors' in admitted)
      throw new HttpError(400, 'Bad Request', describeErrors(admitted.errors), admitted.errors);
    return [202, admitted.result];
  }

  async function ingestBulk(
    tenant: string,
    body: JsonObject,
    entry: LoggedRequest,
  ): Promise<[number, unknown]> {
    // Prepared while parsing (tenantBody): each element is a Prepared, not a tree.
    const records = get(body, 'records') as unknown as Prepared[] | Json | undefined;
    if (!Array.isArray(records))
      throw new HttpError(400, 'Bad Request', 'records must be an array', [
        { field: 'records', message: 'must be an array' },
      ]);
    if (records.length === 0 || records.length > 1000) {
      throw new HttpError(400, 'Bad Request', 'records must hold 1 to 1000 records', [
        { field: 'records', message: `has ${records.length} records; 1 to 1000 allowed` },
      ]);
    }
    const results = (records as Prepared[]).map((p, index) => {
      const admitted = admit(tenant, p, entry);
      if ('result' in admitted) return { index, status: 'accepted', ...admitted.result };
      return {
        index,
        recordId: typeof p.recordId === 'string' ? p.recordId : undefined,
        status: 'rejected',
        error: describeErrors(admitted.errors),
      };
    });
    const accepted = results.filter((r) => r.status === 'accepted').length;
    return [202, { accepted, rejected: records.length - accepted, results }];
  }

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
      return ingestOne(tenant, await tenantBody(req, tenant), entry);
    if (m === 'POST' && p === '/api/v1/records/bulk')
      return ingestBulk(tenant, await tenantBody(req, tenant, { key: 'records', map: prepare }), entry);
    const answer = await answerQuery(
      { ledger, faults, documentedOnly, tenantBody, sameTenant },
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

async function readBodyText(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return chunks.length ? JSON.parse(Buffer.concat(chunks).toString('utf8')) : {};
}
