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

/**
 * A copy of a string that keeps nothing else alive. Parsed strings are V8
 * slices of the text they came from: keeping one would keep the whole text
 * (a request body, say) in memory.
 */
export const own = (s: string) => (s.length < 13 ? s : ` ${s}`.slice(1));

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
const MINUS = 0x2d;
const PLUS = 0x2b;
const DOT = 0x2e;
const ZERO = 0x30;
const NINE = 0x39;
const UPPER_E = 0x45;
const LOWER_E = 0x65;
const isDigit = (c: number) => c >= ZERO && c <= NINE;

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
  const p = new Parser(text, items);
  const v = p.value(0);
  p.ws();
  if (p.i !== text.length) p.fail('trailing characters');
  return v;
}

/**
 * The parser's state is its fields: a position in closures' shared scope
 * made every character read and step a context access (a quarter slower).
 */
class Parser {
  i = 0;
  constructor(
    private readonly text: string,
    private readonly items: ItemMapper | undefined,
  ) {}

  fail(what: string): never {
    throw new JsonSyntaxError(`invalid JSON at offset ${this.i}: ${what}`);
  }

  ws() {
    const t = this.text;
    let i = this.i;
    for (;;) {
      const c = t.charCodeAt(i);
      if (c !== SPACE && c !== LF && c !== CR && c !== TAB) break;
      i++;
    }
    this.i = i;
  }

  value(depth: number, map?: ItemMapper['map']): Json {
    this.ws();
    const t = this.text;
    const c = t.charCodeAt(this.i);
    if (c === OPEN_OBJECT) {
      this.i++;
      const entries: Array<[string, Json]> = [];
      this.ws();
      if (t.charCodeAt(this.i) === CLOSE_OBJECT) {
        this.i++;
        return { entries };
      }
      for (;;) {
        this.ws();
        if (t.charCodeAt(this.i) !== QUOTE) this.fail('expected a key');
        const key = this.string();
        this.ws();
        if (t.charCodeAt(this.i++) !== COLON) this.fail('expected ":"');
        const items = this.items;
        const mapped = depth === 0 && items !== undefined && key === items.key ? items.map : undefined;
        entries.push([key, this.value(depth + 1, mapped)]);
        this.ws();
        const d = t.charCodeAt(this.i++);
        if (d === CLOSE_OBJECT) return { entries };
        if (d !== COMMA) this.fail('expected "," or "}"');
      }
    }
    if (c === OPEN_ARRAY) {
      this.i++;
      const list: Json[] = [];
      this.ws();
      if (t.charCodeAt(this.i) === CLOSE_ARRAY) {
        this.i++;
        return list;
      }
      for (;;) {
        const item = this.value(depth + 1);
        list.push(map ? (map(item) as Json) : item);
        this.ws();
        const d = t.charCodeAt(this.i++);
        if (d === CLOSE_ARRAY) return list;
        if (d !== COMMA) this.fail('expected "," or "]"');
      }
    }
    if (c === QUOTE) return this.string();
    if (c === 0x74) return this.literal('true', true);
    if (c === 0x66) return this.literal('false', false);
    if (c === 0x6e) return this.literal('null', null);
    return this.number();
  }

  private literal(word: string, v: Json): Json {
    if (!this.text.startsWith(word, this.i)) this.fail('unexpected character');
    this.i += word.length;
    return v;
  }

  /** -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)? at i, kept as written. */
  private number(): Json {
    const t = this.text;
    const start = this.i;
    let i = start;
    let c = t.charCodeAt(i);
    if (c === MINUS) c = t.charCodeAt(++i);
    if (c === ZERO) c = t.charCodeAt(++i);
    else if (isDigit(c)) {
      do c = t.charCodeAt(++i);
      while (isDigit(c));
    } else return this.fail('unexpected character');
    // A fraction or an exponent only with its digits (else what follows fails as a separator).
    if (c === DOT && isDigit(t.charCodeAt(i + 1))) {
      i += 2;
      while (isDigit(t.charCodeAt(i))) i++;
      c = t.charCodeAt(i);
    }
    if (c === UPPER_E || c === LOWER_E) {
      let j = i + 1;
      const sign = t.charCodeAt(j);
      if (sign === PLUS || sign === MINUS) j++;
      if (isDigit(t.charCodeAt(j))) {
        i = j + 1;
        while (isDigit(t.charCodeAt(i))) i++;
      }
    }
    this.i = i;
    return { raw: t.slice(start, i) };
  }

  private string(): string {
    const t = this.text;
    const start = this.i + 1;
    let i = start;
    let simple = true;
    for (;;) {
      const c = t.charCodeAt(i);
      if (c === QUOTE) break;
      if (c < SPACE || Number.isNaN(c)) {
        this.i = i;
        this.fail(Number.isNaN(c) ? 'unterminated string' : 'control character in string');
      }
      if (c === BACKSLASH) {
        simple = false;
        i += 2;
      } else i++;
    }
    this.i = i + 1;
    return simple ? t.slice(start, i) : (JSON.parse(t.slice(start - 1, i + 1)) as string);
  }
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
      entries = sortedByKey(entries);
      break;
    }
  }
  let out = '{';
  for (let i = 0; i < entries.length; i++) {
    const [k, x] = entries[i]!;
    out += `${i === 0 ? '' : ','}${quotedKey(k)}:${canonical(x)}`;
  }
  return `${out}}`;
}

/**
 * A copy sorted by key, stably (duplicate keys keep their order): by
 * insertion for the few keys of a usual row, which allocates nothing more.
 */
function sortedByKey(entries: Array<[string, Json]>): Array<[string, Json]> {
  const out = entries.slice();
  if (out.length > 32) return out.sort(byKey);
  for (let i = 1; i < out.length; i++) {
    const e = out[i]!;
    let j = i - 1;
    while (j >= 0 && out[j]![0] > e[0]) {
      out[j + 1] = out[j]!;
      j--;
    }
    out[j + 1] = e;
  }
  return out;
}

const byKey = (a: [string, Json], b: [string, Json]) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0);

/**
 * A key as JSON text. The same few column names come in every record of a
 * table: their quoted forms are kept (up to a bound, so keys that never come
 * back cannot grow it without limit).
 */
const quotedKeys = new Map<string, string>();
function quotedKey(k: string): string {
  let q = quotedKeys.get(k);
  if (q === undefined) {
    q = JSON.stringify(k);
    if (quotedKeys.size < 4096 && k.length <= 64) quotedKeys.set(own(k), q);
  }
  return q;
}

/** Back to compact JSON text in the original order (numbers verbatim). */
export function stringify(v: Json): string {
  if (v === null || typeof v !== 'object') return JSON.stringify(v);
  if (Array.isArray(v)) return `[${v.map(stringify).join(',')}]`;
  if (isNumber(v)) return v.raw;
  return `{${v.entries.map(([k, x]) => `${JSON.stringify(k)}:${stringify(x)}`).join(',')}}`;
}
