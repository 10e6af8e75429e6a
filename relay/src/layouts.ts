// Payload layouts: the columns of a change's payload, in order, as sent.
// Receipts keep a layout id (certyo.layout_of) so the tamper sweep can
// render a row as it was sent even after the table's columns change.
import type { Logger } from 'pino';
import type { Sql } from 'postgres';
import { pgArray } from './db.js';
import type { Change } from './delivery.js';

/**
 * The top-level member names of a row image as row_to_json writes it
 * (compact: no whitespace), each as its JSON string token, in order. A linear
 * scan that skips strings and nested values: about a microsecond a row.
 */
export function payloadColumns(json: string): string[] {
  const keys: string[] = [];
  let depth = 0;
  let expectKey = false;
  for (let i = 0; i < json.length; i++) {
    const c = json.charCodeAt(i);
    if (c === 34) {
      // a string: find its closing quote (a backslash escapes the next character)
      const start = i;
      for (i++; i < json.length; i++) {
        const d = json.charCodeAt(i);
        if (d === 92) i++;
        else if (d === 34) break;
      }
      if (depth === 1 && expectKey) {
        keys.push(json.slice(start, i + 1));
        expectKey = false;
      }
    } else if (c === 123 || c === 91) {
      depth++;
      if (depth === 1) expectKey = c === 123;
    } else if (c === 125 || c === 93) depth--;
    else if (c === 44 && depth === 1) expectKey = true;
  }
  return keys;
}

/** Layout ids by table and column list (certyo.layout_of): a handful per table, registered once. */
export class Layouts {
  private readonly ids = new Map<string, number | null>();

  constructor(
    private readonly sql: Sql,
    private readonly log: Logger,
  ) {}

  /** The layout of a change's payload; unknown (NULL) if registering fails. */
  async of(c: Change): Promise<number | null> {
    const columns = payloadColumns(c.record);
    const key = `${c.table_id}\u0000${columns.join(',')}`;
    const known = this.ids.get(key);
    if (known !== undefined) return known;
    try {
      const names = columns.map((k) => JSON.parse(k) as string);
      const [row] = await this.sql<{ id: number | null }[]>`
        select certyo.layout_of(${c.table_id}, ${pgArray(names)}::text[]) as id`;
      const id = row?.id ?? null;
      if (this.ids.size > 10_000) this.ids.clear();
      this.ids.set(key, id);
      return id;
    } catch (err) {
      this.log.warn({ err, table: c.collection }, 'could not register a payload layout');
      return null;
    }
  }
}
