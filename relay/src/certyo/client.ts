// The HTTP contract with Certyo's bulk endpoint, written down once:
//   2xx            accepted (per-record results when given; a 202 without them is fine)
//   400            the batch was refused whole: split it to find the bad records
//   401, 403       credentials or tenant wrong: stop sending, stay unhealthy
//   429            retry after Retry-After, else backoff
//   3xx            never followed (it would carry the key elsewhere): treated as fatal
//   5xx, timeouts, resets, truncated or non-JSON bodies: outcome unknown, retry
//                  the same changes with the same idempotency keys
// Bodies are always consumed; each request has a timeout.
import { Agent, request } from 'undici';

export interface RecordResult {
  index: number;
  status: 'accepted' | 'rejected';
  recordHash?: string;
  acceptedAt?: string;
  snapshotId?: string;
  error?: string;
}

export type Outcome =
  | { kind: 'accepted'; results: RecordResult[] | undefined }
  | { kind: 'refused'; status: number; detail: string }
  | { kind: 'fatal'; status: number; detail: string }
  | { kind: 'retry'; reason: string; retryAfterMs?: number };

/** A verification call's answer: 'missing' is a 4xx other than 401/403 (404: unknown here). */
export type Answer =
  | { kind: 'ok'; body: unknown }
  | { kind: 'missing'; status: number; detail: string }
  | { kind: 'fatal'; status: number; detail: string }
  | { kind: 'retry'; reason: string; retryAfterMs?: number };

export interface CertyoClientOptions {
  baseUrl: string;
  apiKey: string;
  timeoutMs: number;
  connections?: number;
}

export class CertyoClient {
  private readonly agent: Agent;
  constructor(private readonly opts: CertyoClientOptions) {
    this.agent = new Agent({
      connections: opts.connections ?? 8,
      headersTimeout: opts.timeoutMs,
      bodyTimeout: opts.timeoutMs,
      connectTimeout: Math.min(opts.timeoutMs, 10_000),
    });
  }

  /** POSTs a ready JSON body (records' payloads are PostgreSQL's own text, never re-serialised). */
  async postBulk(body: string): Promise<Outcome> {
    let res: Awaited<ReturnType<typeof request>>;
    try {
      res = await request(`${this.opts.baseUrl}/api/v1/records/bulk`, {
        method: 'POST',
        dispatcher: this.agent,
        headers: { 'content-type': 'application/json', 'x-api-key': this.opts.apiKey },
        body,
        signal: AbortSignal.timeout(this.opts.timeoutMs),
      });
    } catch (err) {
      const e = err as Error & { code?: string };
      return { kind: 'retry', reason: `${e.code ?? e.name}: ${e.message}` };
    }
    let text: string;
    try {
      text = await res.body.text();
    } catch (err) {
      return { kind: 'retry', reason: `response body lost: ${(err as Error).message}` };
    }
    const status = res.statusCode;
    const detail = text.slice(0, 500);
    if (status === 429) {
      const ra = retryAfterMs(res.headers['retry-after']);
      return { kind: 'retry', reason: '429 rate limited', ...(ra !== undefined && { retryAfterMs: ra }) };
    }
    if (status >= 500) return { kind: 'retry', reason: `${status} from Certyo: ${detail}` };
    if (status === 401 || status === 403 || (status >= 300 && status < 400))
      return { kind: 'fatal', status, detail };
    if (status >= 400) return { kind: 'refused', status, detail };
    let parsed: unknown;
    try {
      parsed = text ? JSON.parse(text) : {};
    } catch {
      // Accepted, but the body is not JSON: the outcome per record is unknown, so send again.
      return { kind: 'retry', reason: `${status} with a body that is not JSON` };
    }
    const results = (parsed as { results?: unknown }).results;
    return { kind: 'accepted', results: Array.isArray(results) ? (results as RecordResult[]) : undefined };
  }

  /** GET or POST a JSON API call (verification): the parsed body, or why there is none. */
  async call(method: 'GET' | 'POST', path: string, body?: string): Promise<Answer> {
    let res: Awaited<ReturnType<typeof request>>;
    try {
      res = await request(`${this.opts.baseUrl}${path}`, {
        method,
        dispatcher: this.agent,
        headers: {
          accept: 'application/json',
          'x-api-key': this.opts.apiKey,
          ...(body !== undefined && { 'content-type': 'application/json' }),
        },
        ...(body !== undefined && { body }),
        signal: AbortSignal.timeout(this.opts.timeoutMs),
      });
    } catch (err) {
      const e = err as Error & { code?: string };
      return { kind: 'retry', reason: `${e.code ?? e.name}: ${e.message}` };
    }
    let text: string;
    try {
      text = await res.body.text();
    } catch (err) {
      return { kind: 'retry', reason: `response body lost: ${(err as Error).message}` };
    }
    const status = res.statusCode;
    if (status === 429 || status >= 500) {
      const ra = status === 429 ? retryAfterMs(res.headers['retry-after']) : undefined;
      return {
        kind: 'retry',
        reason: `${status} from Certyo`,
        ...(ra !== undefined && { retryAfterMs: ra }),
      };
    }
    if (status === 401 || status === 403 || (status >= 300 && status < 400))
      return { kind: 'fatal', status, detail: text.slice(0, 500) };
    if (status >= 400) return { kind: 'missing', status, detail: text.slice(0, 500) };
    try {
      return { kind: 'ok', body: JSON.parse(text) as unknown };
    } catch {
      return { kind: 'retry', reason: `${status} with a body that is not JSON` };
    }
  }

  /** Abandons requests still in flight: a stopping relay has given their changes back. */
  close() {
    return this.agent.destroy();
  }
}

function retryAfterMs(h: string | string[] | undefined): number | undefined {
  const v = Array.isArray(h) ? h[0] : h;
  if (!v) return undefined;
  if (/^\d+$/.test(v.trim())) return Number(v) * 1000;
  const at = Date.parse(v);
  return Number.isNaN(at) ? undefined : Math.max(0, at - Date.now());
}
