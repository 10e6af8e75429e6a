// The local server's fault injection: what it can be told to get wrong, and
// how a bad answer (a garble) is written after a request was handled.
import type { ServerResponse } from 'node:http';

export interface Faults {
  /** Share of API requests answered 429 with Retry-After. */
  rate429: number;
  retryAfterSeconds: number;
  rate500: number;
  rate503: number;
  /** Added to every API request before it is handled. */
  latencyMs: number;
  /** Share of requests handled, then their connection destroyed: the client cannot know the outcome. */
  dropRate: number;
  /** Reject records whose recordPayload has this top-level field with this value (as text). */
  rejectField: string | null;
  rejectValue: string | null;
  anchorFail: boolean;
  anchorNever: boolean;
  wrongRoot: boolean;
  wrongHash: boolean;
  /** Answer GET /batches/{id} with 404, as a service without that [local] endpoint would. */
  noBatchApi: boolean;
  /** Answer the [local] listing (GET /records with from/to/limit/offset) with 404. */
  noListing: boolean;
  /**
   * Share of API requests handled (records ingested), then answered badly, as
   * a broken proxy or service might: see Garble.
   */
  garbleRate: number;
  garble: Garble;
  /** Where the 'redirect' garble points. */
  redirectTo: string;
}

/**
 * A bad answer: 'html' a 200 HTML page; 'truncated' JSON cut in half;
 * 'noResults' a 202 without per-record results; 'redirect' a 307 to
 * redirectTo; 'endlessHeaders' a status line, then a header every 50 ms,
 * never the end of the headers.
 */
export type Garble = 'html' | 'truncated' | 'noResults' | 'redirect' | 'endlessHeaders';

export const NO_FAULTS: Faults = {
  rate429: 0,
  retryAfterSeconds: 1,
  rate500: 0,
  rate503: 0,
  latencyMs: 0,
  dropRate: 0,
  rejectField: null,
  rejectValue: null,
  anchorFail: false,
  anchorNever: false,
  wrongRoot: false,
  wrongHash: false,
  noBatchApi: false,
  noListing: false,
  garbleRate: 0,
  garble: 'html',
  redirectTo: 'http://127.0.0.1:9/',
};

/** Answers badly (Faults.garble) after the request was handled. */
export function garbled(
  res: ServerResponse,
  kind: Garble,
  status: number,
  body: unknown,
  redirectTo: string,
) {
  const json = JSON.stringify(body);
  switch (kind) {
    case 'html':
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end('<html><body><h1>502 Bad Gateway</h1></body></html>');
      return;
    case 'truncated': {
      const half = json.slice(0, json.length >> 1);
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(half);
      return;
    }
    case 'noResults':
      res.writeHead(202, { 'content-type': 'application/json' });
      res.end('{}');
      return;
    case 'redirect':
      res.writeHead(307, { location: redirectTo });
      res.end();
      return;
    case 'endlessHeaders': {
      const socket = res.socket;
      if (!socket) return;
      socket.write('HTTP/1.1 200 OK\r\n');
      const drip = setInterval(() => socket.write('x-still-coming: 1\r\n'), 50);
      socket.once('close', () => clearInterval(drip));
      return;
    }
  }
}
