// Validation of one ingestion record, field by field, as Certyo documents it.
import { get, isObject, type Json, type JsonObject } from '../certyo/json.js';

/** A record's fields but its payload. */
export type RecordFields = Omit<RecordInput, 'recordPayload'>;

export interface RecordInput {
  tenantId: string;
  database: string;
  collection: string;
  recordId: string;
  recordPayload: JsonObject;
  clientId?: string;
  recordVersion: string;
  operationType: string;
  sourceTimestamp?: string;
  idempotencyKey?: string;
}

export interface FieldError {
  field: string;
  message: string;
}

const OPERATIONS = new Set(['insert', 'update', 'delete', 'upsert']);
const ISO_8601 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})$/;

export function validateRecord(v: Json): { record?: RecordInput; errors: FieldError[] } {
  if (!isObject(v)) return { errors: [{ field: 'record', message: 'must be a JSON object' }] };
  const errors: FieldError[] = [];
  const str = (field: string, required: boolean): string | undefined => {
    const x = get(v, field);
    if (x === undefined || x === null) {
      if (required) errors.push({ field, message: 'is required' });
      return undefined;
    }
    if (typeof x !== 'string' || x.length === 0) {
      errors.push({ field, message: 'must be a non-empty string' });
      return undefined;
    }
    return x;
  };
  const tenantId = str('tenantId', true);
  const database = str('database', true);
  const collection = str('collection', true);
  const recordId = str('recordId', true);
  const clientId = str('clientId', false);
  const recordVersion = str('recordVersion', false) ?? '1';
  if (!/^\d{1,30}$/.test(recordVersion))
    errors.push({ field: 'recordVersion', message: 'must be a decimal integer string' });
  const operationType = str('operationType', false) ?? 'upsert';
  if (!OPERATIONS.has(operationType)) {
    errors.push({ field: 'operationType', message: 'must be one of insert, update, delete, upsert' });
  }
  const sourceTimestamp = str('sourceTimestamp', false);
  if (
    sourceTimestamp !== undefined &&
    (!ISO_8601.test(sourceTimestamp) || Number.isNaN(Date.parse(sourceTimestamp)))
  ) {
    errors.push({ field: 'sourceTimestamp', message: 'must be an ISO 8601 timestamp' });
  }
  const idempotencyKey = str('idempotencyKey', false);
  const payload = get(v, 'recordPayload');
  if (payload === undefined || payload === null)
    errors.push({ field: 'recordPayload', message: 'is required' });
  else if (!isObject(payload)) errors.push({ field: 'recordPayload', message: 'must be a JSON object' });
  if (errors.length > 0) return { errors };
  return {
    errors,
    record: {
      tenantId: tenantId!,
      database: database!,
      collection: collection!,
      recordId: recordId!,
      recordPayload: payload as JsonObject,
      recordVersion,
      operationType,
      ...(clientId !== undefined && { clientId }),
      ...(sourceTimestamp !== undefined && { sourceTimestamp }),
      ...(idempotencyKey !== undefined && { idempotencyKey }),
    },
  };
}
