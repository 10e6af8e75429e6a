// A JSON parser that keeps every number exactly as written (JSON.parse would
// round 9007199254740993 through a double), and the canonical form Certyo's
// record hash is computed over: RFC 8785 key order and string escaping, but
// numbers written as received. Duplicate keys are kept, in stable key order.

export type Json = null | boolean | string | JsonNumber | Json[] | JsonObject;
export interface JsonNumber {
  readonly raw: string;
}
export interface JsonObject {
  readonly entries: Array<[string, Json]>;
}

export const isNumber = (v: Json): v is JsonNumber => typeof v === 'object' && v !== null && 'raw' in v;
export const isObject = (v: Json): v is JsonObject =>
  typeof v === 'object' && v !== null && !Array.isArray(v) && !('raw' in v);

export function get(obj: JsonObject, key: string): Json | undefined {
  for (const [k, v] of obj.entries) if (k === key) return v;
  return undefined;
}

export class JsonSyntaxError extends Error {}

const NUMBER = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;
const WS = /[ \t\n\r]*/y;
const LITERALS: Array<[string, Json]> = [
  ['true', true],
  ['false', false],
  ['null', null],
];

export function parseJson(text: string): Json {
  let i = 0;
  const ws = () => {
    WS.lastIndex = i;
    WS.exec(text);
    i = WS.lastIndex;
  };
  const fail = (what: string): never => {
    throw new JsonSyntaxError(`invalid JSON at offset ${i}: ${what}`);
  };
  const value = (): Json => {
    ws();
    const c = text[i];
    if (c === '{') {
      i++;
      const entries: Array<[string, Json]> = [];
      ws();
      if (text[i] === '}') {
        i++;
        return { entries };
      }
      for (;;) {
        ws();
        if (text[i] !== '"') fail('expected a key');
        const key = string();
        ws();
        if (text[i++] !== ':') fail('expected ":"');
        entries.push([key, value()]);
        ws();
        const d = text[i++];
        if (d === '}') return { entries };
        if (d !== ',') fail('expected "," or "}"');
      }
    }
    if (c === '[') {
      i++;
      const items: Json[] = [];
      ws();
      if (text[i] === ']') {
        i++;
        return items;
      }
      for (;;) {
        items.push(value());
        ws();
        const d = text[i++];
        if (d === ']') return items;
        if (d !== ',') fail('expected "," or "]"');
      }
    }
    if (c === '"') return string();
    for (const [word, v] of LITERALS) {
      if (text.startsWith(word, i)) {
        i += word.length;
        return v;
      }
    }
    NUMBER.lastIndex = i;
    const m = NUMBER.exec(text);
    if (!m) return fail('unexpected character');
    i = NUMBER.lastIndex;
    return { raw: m[0] };
  };
  const string = (): string => {
    const start = i;
    i++;
    let simple = true;
    for (;;) {
      const c = text.charCodeAt(i);
      if (Number.isNaN(c)) fail('unterminated string');
      if (c === 0x22) break;
      if (c < 0x20) fail('control character in string');
      if (c === 0x5c) {
        simple = false;
        i += 2;
      } else i++;
    }
    i++;
    const body = text.slice(start, i);
    return simple ? body.slice(1, -1) : (JSON.parse(body) as string);
  };
  const v = value();
  ws();
  if (i !== text.length) fail('trailing characters');
  return v;
}

/** Canonical text: keys sorted by UTF-16 code units (stable), no whitespace, numbers verbatim. */
export function canonical(v: Json): string {
  if (v === null) return 'null';
  if (typeof v === 'boolean') return v ? 'true' : 'false';
  if (typeof v === 'string') return JSON.stringify(v);
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (isNumber(v)) return v.raw;
  const sorted = [...v.entries].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  return `{${sorted.map(([k, x]) => `${JSON.stringify(k)}:${canonical(x)}`).join(',')}}`;
}

/** Back to compact JSON text in the original order (numbers verbatim). */
export function stringify(v: Json): string {
  if (v === null || typeof v !== 'object') return JSON.stringify(v);
  if (Array.isArray(v)) return `[${v.map(stringify).join(',')}]`;
  if (isNumber(v)) return v.raw;
  return `{${v.entries.map(([k, x]) => `${JSON.stringify(k)}:${stringify(x)}`).join(',')}}`;
}
