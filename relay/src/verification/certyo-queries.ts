// What the verifier asks Certyo, and how each answer becomes a record summary
// (an Item). Many records at once where Certyo offers it: a page of GET
// /records per collection and time window, GET /batches/{id} per batch (both
// [local]). Record by record where it does not: POST /verify/payload by the
// hash Certyo returned at acceptance, POST /verify/record with the payload
// when it returned none (both [doc]). A listing that answers 404, 400 or 405,
// or without items, is remembered as missing for NO_LISTING_MS.
import type { Answer, CertyoClient } from '../certyo/client.js';
import { buildTree } from '../certyo/merkle.js';
import type { Config } from '../config.js';
import { type Due, HEX64, hex, type Item, type Tree } from './decide.js';

const PAGE = 1000;
/** After the listing was found missing, verify record by record for this long before trying it again. */
export const NO_LISTING_MS = 10 * 60_000;

export class CertyoQueries {
  requests = 0;
  /** Until when GET /api/v1/records is taken as missing (Date.now() ms). */
  private noListingUntil = 0;

  constructor(
    private readonly cfg: Config,
    private readonly client: CertyoClient,
    private readonly database: string,
    private readonly onFatal: (status: number) => void,
  ) {}

  /** True while the listing is taken as missing: checks go record by record. */
  listingMissing() {
    return Date.now() < this.noListingUntil;
  }

  forgetListing() {
    this.noListingUntil = Date.now() + NO_LISTING_MS;
  }

  /** Summaries of a collection's records accepted around these receipts, by recordId and version. */
  async listWindow(collection: string, receipts: Due[]): Promise<Map<string, Item> | Answer> {
    // acceptedAt is when Certyo ingested the record: the window is exact. Without it
    // (a 202 with no results), search a minute either side of our delivery time.
    const slack = receipts.some((r) => r.accepted_at === null) ? 60_000 : 0;
    const times = receipts.map((r) => (r.accepted_at ?? r.delivered_at).getTime());
    const from = new Date(Math.min(...times) - slack).toISOString();
    const to = new Date(Math.max(...times) + slack).toISOString();
    const wanted = new Set(receipts.map((r) => `${r.record_id}\u0000${r.id}`));
    const found = new Map<string, Item>();
    for (let offset = 0, page = 0; page < 100 && found.size < wanted.size; page++) {
      const query = new URLSearchParams({
        tenantId: this.cfg.tenantId,
        database: this.database,
        collection,
        from,
        to,
        limit: String(PAGE),
        offset: String(offset),
      });
      const answer = await this.ask('GET', `/api/v1/records?${query}`);
      if (answer.kind !== 'ok') return answer;
      const items = (answer.body as { items?: unknown }).items;
      // A shape without the items: taken as no listing.
      if (!Array.isArray(items))
        return page === 0 ? { kind: 'missing', status: 200, detail: 'no items' } : found;
      for (const it of items as Item[]) {
        const key = `${String(it.recordId)}\u0000${String(it.recordVersion)}`;
        if (wanted.has(key)) found.set(key, it);
      }
      if (items.length < PAGE) break;
      offset += items.length;
    }
    return found;
  }

  /** POST /verify/payload: is the record with this hash anchored? */
  async byHash(hash: string): Promise<Answer | { kind: 'item'; item: Item }> {
    const answer = await this.ask(
      'POST',
      '/api/v1/verify/payload',
      JSON.stringify({ tenantId: this.cfg.tenantId, recordHash: hash }),
    );
    return answer.kind === 'ok' ? { kind: 'item', item: verification(answer.body, hash) } : answer;
  }

  /** POST /verify/record with the payload as delivered (kept in the receipt when Certyo gave no hash). */
  async byPayload(
    collection: string,
    r: Due & { payload: string },
  ): Promise<Answer | { kind: 'item'; item: Item }> {
    // The payload goes as PostgreSQL wrote it, as delivery sent it: never re-serialised.
    const fixed = JSON.stringify({
      tenantId: this.cfg.tenantId,
      database: this.database,
      collection,
      recordId: r.record_id,
    });
    const answer = await this.ask(
      'POST',
      '/api/v1/verify/record',
      `${fixed.slice(0, -1)},"payload":${r.payload}}`,
    );
    return answer.kind === 'ok' ? { kind: 'item', item: verification(answer.body) } : answer;
  }

  /** A batch's leaves, from GET /batches/{id} ([local]); null when not to be had. */
  async tree(batchId: string): Promise<Tree | null> {
    const answer = await this.ask('GET', `/api/v1/batches/${encodeURIComponent(batchId)}`);
    if (answer.kind !== 'ok') return null;
    const leaves = (answer.body as { recordHashes?: unknown }).recordHashes;
    if (!Array.isArray(leaves) || leaves.length === 0) return null;
    const hashes = leaves.map(hex);
    if (!hashes.every((h) => h !== undefined && HEX64.test(h))) return null;
    const levels = buildTree(hashes as string[]);
    const leafIndex = new Map<string, number>();
    hashes.forEach((h, i) => {
      if (!leafIndex.has(h!)) leafIndex.set(h!, i);
    });
    return { levels, leafIndex };
  }

  private async ask(method: 'GET' | 'POST', path: string, body?: string): Promise<Answer> {
    this.requests++;
    const answer = await this.client.call(method, path, body);
    if (answer.kind === 'fatal') this.onFatal(answer.status);
    return answer;
  }
}

/**
 * A verification answer as a summary. Documented: verified, verificationStatus
 * ('pass'), reasonCategory ('verified_anchored'), snapshotHash; the other
 * fields and values are [local] and used when present.
 */
function verification(body: unknown, hash?: string): Item {
  const b = body as Record<string, unknown>;
  const verified = b.verified === true && (b.verificationStatus ?? 'pass') === 'pass';
  const status = verified
    ? 'Anchored'
    : b.reasonCategory === 'payload_mismatch' || b.verificationStatus === 'fail'
      ? 'Mismatch'
      : b.reasonCategory === 'anchor_failed'
        ? 'Failed'
        : 'Pending';
  return {
    recordHash: b.recordHash ?? b.snapshotHash ?? hash,
    status,
    onChainConfirmed: b.anchoredOnChain !== false,
    onChainMerkleRoot: b.merkleRoot,
    batchId: null,
    polygonTxHash: b.polygonTxHash,
    blockNumber: b.blockNumber,
    ipfsCid: b.ipfsCid,
    anchoredAt: b.anchoredAt,
    merkleProof: b.merkleProof,
    verifiedByCertyo: verified,
    reason: typeof b.reasonCategory === 'string' ? b.reasonCategory : undefined,
  };
}
