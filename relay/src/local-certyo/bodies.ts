// Request bodies of the local server: size-capped, parsed as JSON (a syntax
// error is a 400 with problem details), and checked against the API key's
// tenant.
import type { IncomingMessage } from 'node:http';
import {
  get,
  type ItemMapper,
  isObject,
  type Json,
  type JsonObject,
  JsonSyntaxError,
  parseJson,
} from '../certyo/json.js';
import { HttpError } from './errors.js';

export async function readJson(req: IncomingMessage, maxBody: number, items?: ItemMapper): Promise<Json> {
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
}

/** A body or query that names a tenant must name the API key's. */
export function sameTenant(tenant: string, claimed: Json | undefined) {
  if (typeof claimed === 'string' && claimed !== tenant) {
    throw new HttpError(403, 'Forbidden', 'the API key does not belong to this tenant');
  }
}

/** A request body that must be a JSON object claiming no tenant but the key's. */
export async function tenantBody(
  req: IncomingMessage,
  tenant: string,
  maxBody: number,
  items?: ItemMapper,
): Promise<JsonObject> {
  const body = await readJson(req, maxBody, items);
  if (!isObject(body)) throw new HttpError(400, 'Bad Request', 'body must be a JSON object');
  sameTenant(tenant, get(body, 'tenantId'));
  return body;
}

/** The admin endpoints' bodies: plain JSON, no cap (local use only). */
export async function readBodyText(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return chunks.length ? JSON.parse(Buffer.concat(chunks).toString('utf8')) : {};
}
