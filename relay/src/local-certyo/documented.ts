// The documented-only mode (`local-certyo --documented-only`): the local server
// as a client may count on the real Certyo to be, from ../shared/certyo-api.md's
// [doc] parts alone. Endpoints whose shapes are [local] answer 404, [local]
// query parameters 400, and answers carry only the [doc] fields: the bulk 202
// has no per-record results, snapshots have no hash or version, and
// verification answers have no Merkle proof. The relay must anchor rows
// against this mode too (test/relay/verify.test.ts runs against both).
import { HttpError } from './errors.js';

/** The documented query parameters of the documented GET endpoints. */
const QUERY: Record<string, string[]> = {
  '/api/v1/records': ['tenantId', 'database', 'collection', 'recordId'],
  '/api/v1/snapshots': ['tenantId', 'recordId'],
};

/** Documented endpoints whose answer shape is not documented: not served in this mode. */
const UNDOCUMENTED_SHAPE = [
  /^\/api\/v1\/batches\/[^/]+$/,
  /^\/api\/v1\/snapshots\/[^/]+\/(lifecycle|retry)$/,
  /^\/api\/v1\/verify\/history$/,
  /^\/api\/v1\/timeline\/record$/,
  /^\/api\/v1\/audit\/history$/,
];

const RECORD = ['recordId', 'recordHash', 'tenantId', 'acceptedAt', 'idempotencyReplayed'];
const SNAPSHOT = [
  'snapshotId',
  'recordId',
  'status',
  'onChainConfirmed',
  'onChainMerkleRoot',
  'ingestedAt',
  'updatedAt',
];
const VERIFICATION = ['verified', 'verificationStatus', 'reasonCategory', 'snapshotHash'];

/** Throws the answer a service without this endpoint or parameter would give. */
export function refuseUndocumented(method: string, url: URL) {
  const p = url.pathname;
  if (method === 'GET' && UNDOCUMENTED_SHAPE.some((r) => r.test(p)))
    throw new HttpError(404, 'Not Found', `no route ${method} ${p}`);
  const allowed = method === 'GET' ? QUERY[p] : undefined;
  if (!allowed) return;
  const unknown = [...url.searchParams.keys()].filter((k) => !allowed.includes(k));
  if (unknown.length > 0)
    throw new HttpError(
      400,
      'Bad Request',
      `unknown query parameter ${unknown.join(', ')}`,
      unknown.map((field) => ({ field, message: 'is not a parameter of this endpoint' })),
    );
}

/** The documented fields of a successful answer. */
export function documentedAnswer(method: string, path: string, body: unknown): unknown {
  const o = body as Record<string, unknown>;
  if (method === 'POST' && path === '/api/v1/records/bulk') return {};
  if (method === 'POST' && path === '/api/v1/records') return pick(o, RECORD);
  if (path.startsWith('/api/v1/verify/')) return pick(o, VERIFICATION);
  if (path === '/api/v1/snapshots' || path === '/api/v1/records')
    return { items: (o.items as Record<string, unknown>[]).map((s) => pick(s, SNAPSHOT)) };
  if (path.startsWith('/api/v1/snapshots/')) return pick(o, SNAPSHOT);
  return body;
}

const pick = (o: Record<string, unknown>, fields: string[]) =>
  Object.fromEntries(fields.filter((f) => f in o).map((f) => [f, o[f]]));
