// The local server's write side: POST /records and /records/bulk. Each record
// is checked on its own (fields, the key's tenant, the reject rule) and hashed
// while the body is parsed, then ingested into the ledger; the request log
// gets one entry per record either way.
import { get, isObject, type Json, type JsonObject, own } from '../certyo/json.js';
import { HttpError } from './errors.js';
import type { Faults } from './faults.js';
import { type IngestResult, type Ledger, recordHash } from './ledger.js';
import type { LoggedRequest } from './server.js';
import { type FieldError, type RecordFields, validateRecord } from './validate.js';

/**
 * One record, checked on its own and hashed while the body is parsed; what
 * is kept is this summary, not the record's parse tree.
 */
export interface Prepared {
  record?: RecordFields;
  hash?: string;
  errors: FieldError[];
  /** The record's recordId as sent. */
  recordId: Json | undefined;
  ruleRejected: boolean;
}

const describeErrors = (errors: FieldError[]) => errors.map((e) => `${e.field} ${e.message}`).join('; ');

export function ingestion(ledger: Ledger, faults: Faults) {
  const rejectedByRule = (payload: { entries: Array<[string, Json]> }) => {
    if (faults.rejectField === null) return false;
    const v = get(payload, faults.rejectField);
    const text =
      v === undefined ? undefined : typeof v === 'object' && v !== null && 'raw' in v ? v.raw : String(v);
    return text === faults.rejectValue;
  };

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

  return {
    /** The bulk body's item mapper: each element of `records` becomes a Prepared as it is parsed. */
    prepare,

    ingestOne(tenant: string, body: JsonObject, entry: LoggedRequest): [number, unknown] {
      const admitted = admit(tenant, prepare(body), entry);
      if ('errors' in admitted)
        throw new HttpError(400, 'Bad Request', describeErrors(admitted.errors), admitted.errors);
      return [202, admitted.result];
    },

    ingestBulk(tenant: string, body: JsonObject, entry: LoggedRequest): [number, unknown] {
      // Prepared while parsing (see prepare): each element is a Prepared, not a tree.
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
    },
  };
}
