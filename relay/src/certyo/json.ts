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

// Character codes the parser looks at (it scans with charCodeAt: no regular
// expression or substring per token on the common paths).
const SPACE = 0x20;
const TAB = 0x09;
const LF = 0x0a;
const CR = 0x0d;
const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;
const COLON = 0x3a;
const OPEN_OBJECT = 0x7b;
const CLOSE_OBJECT = 0x7d;
const OPEN_ARRAY = 0x5b;
const CLOSE_ARRAY = 0x5d;

/**
 * Replaces each element of the top-level object's array `key` as soon as it
 * is parsed, so a large array never exists as a whole tree (the bulk endpoint
 * keeps a small summary per record instead of its parse tree).
 */
export interface ItemMapper {
  key: string;
  map: (item: Json) => unknown;
}

export function parseJson(text: string, items?: ItemMapper): Json {
  let i = 0;
  const ws = () => {
    for (;;) {
      const c = text.charCodeAt(i);
      if (c !== SPACE && c !== LF && c !== CR && c !== TAB) return;
      i++;
    }
  };
  const fail = (what: string): never => {
    throw new JsonSyntaxError(`invalid JSON at offset ${i}: ${what}`);
  };
  const literal = (word: string, v: Json): Json => {
    if (!text.startsWith(word, i)) fail('unexpected character');
    i += word.length;
    return v;
  };
  const value = (depth: number, map?: ItemMapper['map']): Json => {
    ws();
    const c = text.charCodeAt(i);
    if (c === OPEN_OBJECT) {
      i++;
      const entries: Array<[string, Json]> = [];
      ws();
      if (text.charCodeAt(i) === CLOSE_OBJECT) {
        i++;
        return { entries };
      }
      for (;;) {
        ws();
        if (text.charCodeAt(i) !== QUOTE) fail('expected a key');
        const key = string();
        ws();
        if (text.charCodeAt(i++) !== COLON) fail('expected ":"');
        const mapped = depth === 0 && items !== undefined && key === items.key ? items.map : undefined;
        entries.push([key, value(depth + 1, mapped)]);
        ws();
        const d = text.charCodeAt(i++);
        if (d === CLOSE_OBJECT) return { entries };
        if (d !== COMMA) fail('expected "," or "}"');
      }
    }
    if (c === OPEN_ARRAY) {
      i++;
      const list: Json[] = [];
      ws();
      if (text.charCodeAt(i) === CLOSE_ARRAY) {
        i++;
        return list;
      }
      for (;;) {
        const item = value(depth + 1);
        list.push(map ? (map(item) as Json) : item);
        ws();
        const d = text.charCodeAt(i++);
        if (d === CLOSE_ARRAY) return list;
        if (d !== COMMA) fail('expected "," or "]"');
      }
    }
    if (c === QUOTE) return string();
    if (c === 0x74) return literal('true', true);
    if (c === 0x66) return literal('false', false);
    if (c === 0x6e) return literal('null', null);
    NUMBER.lastIndex = i;
    const m = NUMBER.exec(text);
    if (!m) return fail('unexpected character');
    i = NUMBER.lastIndex;
    return { raw: m[0] };
  };
  const string = (): string => {
    const start = i + 1;
    i++;
    let simple = true;
    for (;;) {
      const c = text.charCodeAt(i);
      if (c === QUOTE) break;
      if (c < SPACE || Number.isNaN(c))
        fail(Number.isNaN(c) ? 'unterminated string' : 'control character in string');
      if (c === BACKSLASH) {
        simple = false;
        i += 2;
      } else i++;
    }
    i++;
    return simple ? text.slice(start, i - 1) : (JSON.parse(text.slice(start - 1, i)) as string);
  };
  const v = value(0);
  ws();
  if (i !== text.length) fail('trailing characters');
  return v;
}

/** Canonical text: keys sorted by UTF-16 code units (stable), no whitespace, numbers verbatim. */
export function canonical(v: Json): string {
  if (v === null) return 'null';
  if (typeof v !== 'object') return typeof v === 'string' ? JSON.stringify(v) : v ? 'true' : 'false';
  if (Array.isArray(v)) {
    let out = '[';
    for (let i = 0; i < v.length; i++) out += (i === 0 ? '' : ',') + canonical(v[i]!);
    return `${out}]`;
  }
  if (isNumber(v)) return v.raw;
  let entries = v.entries;
  for (let i = 1; i < entries.length; i++) {
    if (entries[i - 1]![0] > entries[i]![0]) {
      // Array.prototype.sort is stable: duplicate keys keep their order.
      entries = [...entries].sort(byKey);
      break;
    }
  }
  let out = '{';
  for (let i = 0; i < entries.length; i++) {
    const [k, x] = entries[i]!;
    out += `${i === 0 ? '' : ','}${JSON.stringify(k)}:${canonical(x)}`;
  }
  return `${out}}`;
}

const byKey = (a: [string, Json], b: [string, Json]) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0);

/** Back to compact JSON text in the original order (numbers verbatim). */
export function stringify(v: Json): string {
  if (v === null || typeof v !== 'object') return JSON.stringify(v);
  if (Array.isArray(v)) return `[${v.map(stringify).join(',')}]`;
  if (isNumber(v)) return v.raw;
  return `{${v.entries.map(([k, x]) => `${JSON.stringify(k)}:${stringify(x)}`).join(',')}}`;
}
