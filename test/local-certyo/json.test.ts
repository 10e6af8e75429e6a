// The exact-number JSON parser and the canonical form Certyo's record hash is
// computed over, against JSON.parse and a plain reference: what each accepts,
// what each builds, and the cases where they must differ (numbers verbatim,
// duplicate keys kept in order).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { canonical, type Json, JsonSyntaxError, parseJson, stringify } from '../../relay/src/certyo/json.js';

/** Plain JavaScript values from a parse tree (numbers through a double: test inputs keep to exact ones). */
function plain(v: Json): unknown {
  if (v === null || typeof v !== 'object') return v;
  if (Array.isArray(v)) return v.map(plain);
  if ('raw' in v) return Number(v.raw);
  return Object.fromEntries(v.entries.map(([k, x]) => [k, plain(x)]));
}

/** RFC 8785 for values whose numbers JavaScript writes as they are written. */
function reference(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(reference).join(',')}]`;
  if (v !== null && typeof v === 'object') {
    const keys = Object.keys(v).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${keys.map((k) => `${JSON.stringify(k)}:${reference((v as Record<string, unknown>)[k])}`).join(',')}}`;
  }
  return JSON.stringify(v);
}

const VALID = [
  '0',
  '-0',
  '12',
  '-7.25',
  '1e3',
  '1E+2',
  '2.5e-3',
  '"plain"',
  '"esc \\" \\\\ \\/ \\b\\f\\n\\r\\t \\u00e9 \\ud83d\\ude00"',
  '"\u00e9\u4e2d \ud83d\ude00"',
  'true',
  'false',
  'null',
  '[]',
  '{}',
  ' \t\r\n[ 1 , "a" , [ ] , { } ] \n',
  '{"b":1,"a":{"z":[true,null],"y":"x"},"A":0.5,"é":"e","\\u0000k":1}',
  '{"k10":1,"k9":2,"k1":3,"k":4,"K":5,"_":6,"~":7,"":8}',
  `{${Array.from({ length: 40 }, (_, i) => `"c${(i * 7919) % 40}":${i}`).join(',')}}`,
];
const INVALID = [
  '',
  ' ',
  '01',
  '-',
  '-a',
  '1.',
  '.5',
  '1e',
  '1e+',
  '+1',
  '0x10',
  '"unterminated',
  '"bad \\',
  '"tab\there"',
  '[1,]',
  '[1 2]',
  '{"a" 1}',
  '{"a":1,}',
  '{a:1}',
  "{'a':1}",
  'nul',
  'truex',
  '[1]]',
  '{"a":1}x',
];

describe('exact JSON', () => {
  test('accepts what JSON.parse accepts and builds the same values', () => {
    for (const text of VALID) {
      assert.deepEqual(plain(parseJson(text)), JSON.parse(text), text);
    }
  });

  test('refuses what JSON.parse refuses, with an offset', () => {
    for (const text of INVALID) {
      assert.throws(() => JSON.parse(text), SyntaxError, `JSON.parse accepts ${text}`);
      assert.throws(
        () => parseJson(text),
        (err) => err instanceof JsonSyntaxError && /^invalid JSON at offset \d+: /.test(err.message),
        text,
      );
    }
  });

  test('canonical form: keys by UTF-16 code units at every depth, as RFC 8785 writes them', () => {
    // Numbers JavaScript would write otherwise (-0, exponents) are the next test's.
    const exact = VALID.filter((text) => !/-0|\d[eE]/.test(text));
    assert.ok(exact.length >= 12);
    for (const text of exact) assert.equal(canonical(parseJson(text)), reference(JSON.parse(text)), text);
  });

  test('numbers stay as written, duplicate keys stay in their order', () => {
    const text = '{"n":9007199254740993,"d":0.10,"e":1E400,"a":2,"a":1,"m":-0.0}';
    assert.equal(
      canonical(parseJson(text)),
      '{"a":2,"a":1,"d":0.10,"e":1E400,"m":-0.0,"n":9007199254740993}',
    );
    assert.equal(stringify(parseJson(text)), text);
  });

  test('the bulk mapper sees each record of the top-level array, and only those', () => {
    const seen: string[] = [];
    const v = parseJson('{"records":[{"x":1},{"records":[2]}],"other":{"records":[3]}}', {
      key: 'records',
      map: (item) => {
        seen.push(canonical(item));
        return null;
      },
    });
    assert.deepEqual(seen, ['{"x":1}', '{"records":[2]}']);
    assert.equal(stringify(v), '{"records":[null,null],"other":{"records":[3]}}');
  });
});
