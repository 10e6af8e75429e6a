// The local server's read side: the record listing ([local] parameters),
// batches, snapshots and verification by payload or by hash.
import type { IncomingMessage } from 'node:http';
import { get, isObject, type Json, type JsonObject } from '../certyo/json.js';
import { HttpError } from './errors.js';
import type { Faults } from './faults.js';
import { type Ledger, recordHash, type Snapshot } from './ledger.js';
import type { FieldError } from './validate.js';

export interface QueryContext {
  ledger: Ledger;
  faults: Faults;
  documentedOnly: boolean;
  /** A request body that must be a JSON object claiming no tenant but the key's. */
  tenantBody(req: IncomingMessage, tenant: string): Promise<JsonObject>;
  sameTenant(tenant: string, claimed: Json | undefined): void;
}

/** The answer to a read request, or undefined when it is not one. */
export async function answerQuery(
  ctx: QueryContext,
  req: IncomingMessage,
  url: URL,
  tenant: string,
): Promise<[number, unknown] | undefined> {
  const { ledger, faults, documentedOnly, tenantBody, sameTenant } = ctx;
  const p = url.pathname;
  const m = req.method ?? 'GET';
  const q = (k: string) => url.searchParams.get(k) ?? undefined;
  if (m === 'GET' && p === '/api/v1/records') {
    sameTenant(tenant, q('tenantId'));
    if (faults.noListing && (q('from') || q('to') || q('limit') || q('offset')))
      throw new HttpError(404, 'Not Found', 'no record listing');
    const limit = Math.max(0, Math.min(Number(q('limit') ?? 100) || 0, 1000));
    const offset = Math.max(0, Number(q('offset') ?? 0) || 0);
    const [database, collection, recordId] = [q('database'), q('collection'), q('recordId')];
    if (database && collection && !recordId) {
      const page = ledger.list({
        tenantId: tenant,
        database,
        collection,
        from: q('from'),
        to: q('to'),
        offset,
        limit,
      });
      return [200, { items: page.items.map((s) => ledger.view(s)), total: page.total }];
    }
    const items = ledger.all.filter(
      (s) =>
        s.tenantId === tenant &&
        (!database || s.database === database) &&
        (!collection || s.collection === collection) &&
        (!recordId || s.recordId === recordId) &&
        (!q('from') || s.ingestedAt >= String(q('from'))) &&
        (!q('to') || s.ingestedAt <= String(q('to'))),
    );
    return [
      200,
      { items: items.slice(offset, offset + limit).map((s) => ledger.view(s)), total: items.length },
    ];
  }
  const batch = /^\/api\/v1\/batches\/([^/]+)$/.exec(p);
  if (m === 'GET' && batch) {
    const view = faults.noBatchApi ? undefined : ledger.batchView(decodeURIComponent(batch[1]!), tenant);
    if (!view) throw new HttpError(404, 'Not Found', `no batch ${batch[1]}`);
    return [200, view];
  }
  if (m === 'GET' && p === '/api/v1/snapshots') {
    sameTenant(tenant, q('tenantId'));
    const items = ledger.all.filter(
      (s) => s.tenantId === tenant && (!q('recordId') || s.recordId === q('recordId')),
    );
    return [200, { items: items.map((s) => ledger.view(s)) }];
  }
  const snap = /^\/api\/v1\/snapshots\/([^/]+)$/.exec(p);
  if (m === 'GET' && snap)
    return [200, ledger.view(snapshotOr404(ledger, tenant, decodeURIComponent(snap[1]!)))];
  const vsnap = /^\/api\/v1\/verify\/snapshot\/([^/]+)$/.exec(p);
  if (m === 'GET' && vsnap) {
    const s = snapshotOr404(ledger, tenant, decodeURIComponent(vsnap[1]!));
    return [200, ledger.verify(s, s.recordHash)];
  }
  if (m === 'POST' && p === '/api/v1/verify/record') {
    const body = await tenantBody(req, tenant);
    const errors: FieldError[] = [];
    const field = (k: string) => {
      const v = get(body, k);
      if (typeof v !== 'string' || v === '') errors.push({ field: k, message: 'is required' });
      return String(v);
    };
    const [database, collection, recordId] = [field('database'), field('collection'), field('recordId')];
    const payload = get(body, 'payload');
    if (payload === undefined || !isObject(payload))
      errors.push({ field: 'payload', message: 'must be a JSON object' });
    if (errors.length) throw new HttpError(400, 'Bad Request', 'invalid verify request', errors);
    // recordVersion is [local]; without it, the version this payload is (else the latest).
    const version = documentedOnly ? undefined : get(body, 'recordVersion');
    const versions = ledger.forRecord({ tenantId: tenant, database, collection, recordId });
    const hash = recordHash(payload as { entries: Array<[string, Json]> });
    const s =
      typeof version === 'string'
        ? versions.find((x) => x.recordVersion === version)
        : (versions.findLast((x) => x.recordHash === hash) ?? versions.at(-1));
    if (!s) throw new HttpError(404, 'Not Found', 'no such record');
    return [200, ledger.verify(s, hash)];
  }
  if (m === 'POST' && p === '/api/v1/verify/payload') {
    const body = await tenantBody(req, tenant);
    const h = get(body, 'recordHash');
    if (typeof h !== 'string' || !/^(sha256:)?[0-9a-f]{64}$/.test(h)) {
      throw new HttpError(400, 'Bad Request', 'recordHash must be 64 lowercase hex characters', [
        { field: 'recordHash', message: 'must be 64 lowercase hex characters' },
      ]);
    }
    const hash = h.replace(/^sha256:/, '');
    const s = ledger.byRecordHash(tenant, hash).at(-1);
    if (!s) throw new HttpError(404, 'Not Found', 'no record with this hash');
    return [200, ledger.verify(s, hash)];
  }
  return undefined;
}

function snapshotOr404(ledger: Ledger, tenant: string, id: string): Snapshot {
  const s = ledger.snapshot(id);
  if (!s) throw new HttpError(404, 'Not Found', `no snapshot ${id}`);
  if (s.tenantId !== tenant) throw new HttpError(403, 'Forbidden', 'snapshot belongs to another tenant');
  return s;
}
