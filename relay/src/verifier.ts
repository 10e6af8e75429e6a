// The verifier: receipts due a check are leased in batches of up to 1000,
// Certyo is asked about many at once (one GET /records page per collection
// and time window, one GET /batches/{id} per anchored batch), each proof is
// walked here against the root Certyo reports, and the outcome is settled in
// the database, which writes 'anchored' (or a failure state) into the rows
// still at that version. Without the batch endpoint (it is [local]), proofs
// come from POST /verify/payload, one per record.
import type { Logger } from 'pino';
import type { Sql } from 'postgres';
import type { Answer, CertyoClient } from './certyo/client.js';
import { buildTree, type Levels, type ProofStep, proofFor, rootOf, walkProof } from './certyo/merkle.js';
import type { Config } from './config.js';
import { push } from './maps.js';

interface Due {
  id: string;
  op: 'I' | 'U' | 'D';
  record_id: string;
  collection: string;
  record_hash: string | null;
  accepted_at: Date | null;
  delivered_at: Date;
  anchor_status: 'submitted' | 'anchored' | 'anchor_failed' | 'mismatch';
  checks: number;
}

interface Settlement {
  id: string;
  status: Due['anchor_status'];
  /** Certyo was asked (counts as an attempt). */
  checked: boolean;
  /** Look again in this many ms; null: done. */
  next_check_ms: number | null;
  record_hash?: string;
  merkle_root?: string;
  proof?: string;
  detail?: string;
  batch_id?: string | null;
  polygon_tx_hash?: string | null;
  block_number?: number | null;
  ipfs_cid?: string | null;
  anchored_at?: string | null;
}

/** A record summary from GET /records (fields beyond the documented ones are [local]: parse defensively). */
interface Item {
  recordId?: unknown;
  recordVersion?: unknown;
  recordHash?: unknown;
  status?: unknown;
  onChainConfirmed?: unknown;
  onChainMerkleRoot?: unknown;
  batchId?: unknown;
  polygonTxHash?: unknown;
  blockNumber?: unknown;
  ipfsCid?: unknown;
  anchoredAt?: unknown;
  /** Only from /verify/payload: the proof it already returned. */
  merkleProof?: unknown;
}

interface Tree {
  levels: Levels;
  leafIndex: Map<string, number>;
}

export class VerifierMetrics {
  anchored = 0;
  anchorFailed = 0;
  mismatches = 0;
  requests = 0;
}

const HEX64 = /^[0-9a-f]{64}$/;
const hex = (v: unknown) =>
  typeof v === 'string' ? v.toLowerCase().replace(/^(0x|sha256:)/, '') : undefined;
const str = (v: unknown) => (typeof v === 'string' ? v : null);
const PAGE = 1000;
/** After the listing answered 404/400/405 (or no items), verify record by record for this long before trying it again. */
const NO_LISTING_MS = 10 * 60_000;

export class Verifier {
  readonly metrics = new VerifierMetrics();
  /** Until when GET /api/v1/records is taken as missing (Date.now() ms). */
  private noListingUntil = 0;

  constructor(
    private readonly cfg: Config,
    private readonly sql: Sql,
    private readonly client: CertyoClient,
    private readonly log: Logger,
    private readonly token: string,
    private readonly database: string,
    private readonly running: () => boolean,
    private readonly sleep: (ms: number) => Promise<unknown>,
  ) {}

  async run() {
    let failures = 0;
    while (this.running()) {
      try {
        const t0 = performance.now();
        const due = await this.sql<Due[]>`
          select id::text, op::text, record_id, collection, record_hash, accepted_at, delivered_at, anchor_status, checks
          from certyo.claim_verification(${this.token}, ${PAGE}, ${`${this.cfg.leaseSeconds} seconds`},
                                         ${`${this.cfg.verifyDelayMs} milliseconds`})`;
        failures = 0;
        if (due.length === 0) {
          await this.sleep(this.cfg.verifyIntervalMs);
          continue;
        }
        const t1 = performance.now();
        const results = await this.check(due);
        const t2 = performance.now();
        const json = this.sql.json(results as unknown as Parameters<Sql['json']>[0]);
        await this.sql`select certyo.settle_verification(${this.token}, ${json})`;
        this.count(results, due);
        this.log.debug(
          {
            receipts: due.length,
            claimMs: Math.round(t1 - t0),
            checkMs: Math.round(t2 - t1),
            settleMs: Math.round(performance.now() - t2),
          },
          'verification round done',
        );
      } catch (err) {
        failures++;
        this.log.warn({ err, failures }, 'verifier loop error; backing off');
        // Full jitter, as delivery does: relays that failed together do not retry together.
        await this.sleep(
          Math.random() *
            Math.min(this.cfg.backoffMaxMs, this.cfg.backoffBaseMs * 2 ** Math.min(failures, 20)),
        );
      }
    }
  }

  /** Metrics, and one log line per round for what needs attention (not one per record). */
  private count(results: Settlement[], due: Due[]) {
    const failed: Settlement[] = [];
    const mismatched: Settlement[] = [];
    for (const r of results) {
      if (!r.checked) continue;
      if (r.status === 'anchored') this.metrics.anchored++;
      else if (r.status === 'anchor_failed') {
        this.metrics.anchorFailed++;
        failed.push(r);
      } else if (r.status === 'mismatch') {
        this.metrics.mismatches++;
        mismatched.push(r);
      }
    }
    const sample = (list: Settlement[]) =>
      list
        .slice(0, 10)
        .map((r) => ({ id: r.id, recordId: due.find((d) => d.id === r.id)?.record_id, detail: r.detail }));
    if (mismatched.length > 0) {
      this.log.error({ count: mismatched.length, first: sample(mismatched) }, 'verification mismatch');
    }
    if (failed.length > 0) {
      this.log.warn(
        { count: failed.length, recheckMs: this.cfg.verifyRecheckMs, first: sample(failed) },
        'not anchored: marked anchor_failed, re-checked later',
      );
    }
  }

  /** Decides every due receipt: Certyo is asked per collection window and per batch, not per record. */
  async check(due: Due[]): Promise<Settlement[]> {
    const results: Settlement[] = [];
    const byCollection = new Map<string, Due[]>();
    for (const r of due) {
      if (r.anchor_status === 'anchored') {
        // Decided earlier (a receipt scheduled again by a release that re-checked rows a
        // user transaction held): write it back again. Skipped write-backs are certyo.write_due's now.
        results.push({ id: r.id, status: r.anchor_status, checked: false, next_check_ms: null });
        continue;
      }
      // A first mismatch comes back here, on the anchor_failed schedule, to be checked again.
      push(byCollection, r.collection, r);
    }
    const trees = new Map<string, Tree | null>();
    for (const [collection, receipts] of byCollection) {
      // The listing is not documented ([local]): when it is missing, or answers without
      // items, every record is asked about by its hash (POST /verify/payload, documented).
      const listed =
        Date.now() < this.noListingUntil ? undefined : await this.listWindow(collection, receipts);
      if (listed !== undefined && !(listed instanceof Map) && listed.kind !== 'missing') {
        for (const r of receipts) results.push(this.unanswered(r, listed)); // outage or 429: all wait
        continue;
      }
      if (listed !== undefined && !(listed instanceof Map)) {
        this.noListingUntil = Date.now() + NO_LISTING_MS;
        this.log.warn(
          { status: listed.status, forMs: NO_LISTING_MS },
          'Certyo has no record listing; verifying record by record (POST /api/v1/verify/payload)',
        );
      }
      for (const [i, r] of receipts.entries()) {
        let item = listed instanceof Map ? listed.get(`${r.record_id}\u0000${r.id}`) : undefined;
        // Not in the listing (a service that ignores from/to), or no listing: ask by the hash.
        if (!item && r.record_hash) {
          const answer = await this.byHash(r.record_hash);
          if (answer.kind === 'retry' || answer.kind === 'fatal') {
            // Rate-limited or down: this record and the rest of the round wait (Retry-After honoured).
            for (const rest of receipts.slice(i)) results.push(this.unanswered(rest, answer));
            break;
          }
          item = answer.kind === 'item' ? answer.item : undefined;
        }
        results.push(await this.decide(r, item, trees));
      }
    }
    return results;
  }

  /** Summaries of a collection's records accepted around these receipts, by recordId and version. */
  private async listWindow(collection: string, receipts: Due[]): Promise<Map<string, Item> | Answer> {
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

  private verifyPayload(hash: string): Promise<Answer> {
    return this.ask(
      'POST',
      '/api/v1/verify/payload',
      JSON.stringify({ tenantId: this.cfg.tenantId, recordHash: hash }),
    );
  }

  private async byHash(hash: string): Promise<Answer | { kind: 'item'; item: Item }> {
    const answer = await this.verifyPayload(hash);
    if (answer.kind !== 'ok') return answer;
    const b = answer.body as Record<string, unknown>;
    const status =
      b.verificationStatus === 'pass'
        ? 'Anchored'
        : b.reasonCategory === 'anchor_failed'
          ? 'Failed'
          : 'Pending';
    const item: Item = {
      recordHash: b.recordHash ?? hash,
      status,
      onChainConfirmed: b.anchoredOnChain === true,
      onChainMerkleRoot: b.merkleRoot,
      batchId: null,
      polygonTxHash: b.polygonTxHash,
      blockNumber: b.blockNumber,
      ipfsCid: b.ipfsCid,
      anchoredAt: b.anchoredAt,
      merkleProof: b.merkleProof,
    };
    return { kind: 'item', item };
  }

  private async decide(r: Due, item: Item | undefined, trees: Map<string, Tree | null>): Promise<Settlement> {
    const hash = r.record_hash ?? hex(item?.recordHash);
    const reported = hex(item?.recordHash);
    if (item && r.record_hash && reported !== r.record_hash) {
      return this.mismatch(
        r,
        `Certyo now reports record hash ${reported}, but returned ${r.record_hash} when it accepted the record`,
      );
    }
    const status = str(item?.status);
    if (item && status === 'Anchored' && item.onChainConfirmed !== false && hash && HEX64.test(hash)) {
      const root = hex(item.onChainMerkleRoot);
      const proof = await this.proof(hash, item, trees);
      if (proof.kind !== 'proof') {
        return proof.kind === 'unknown' ? this.notYet(r, proof.detail) : this.mismatch(r, proof.detail);
      }
      const walked = walkProof(hash, proof.steps);
      if (!root || walked !== root) {
        return this.mismatch(r, `Merkle proof walks to ${walked}, but Certyo reports root ${root ?? 'none'}`);
      }
      return {
        id: r.id,
        status: 'anchored',
        checked: true,
        next_check_ms: null,
        record_hash: hash,
        merkle_root: root,
        proof: proof.steps.map((s) => (s.position === 'left' ? '00' : '01') + hex(s.hash)).join(''),
        batch_id: str(item.batchId),
        polygon_tx_hash: str(item.polygonTxHash),
        block_number: typeof item.blockNumber === 'number' ? item.blockNumber : null,
        ipfs_cid: str(item.ipfsCid),
        anchored_at: str(item.anchoredAt),
      };
    }
    if (status === 'Failed') {
      return {
        id: r.id,
        status: 'anchor_failed',
        checked: true,
        next_check_ms: this.cfg.verifyRecheckMs,
        ...(hash && { record_hash: hash }),
        detail: 'Certyo reports anchoring failed (it retries on its own)',
      };
    }
    return this.notYet(r, item ? `Certyo status ${status ?? 'unknown'}` : 'not found at Certyo yet', hash);
  }

  /**
   * The proof of one leaf: from the batch's leaves when Certyo lists them, else
   * from /verify/payload (asked only if the item did not come from there).
   */
  private async proof(
    hash: string,
    item: Item,
    trees: Map<string, Tree | null>,
  ): Promise<{ kind: 'proof'; steps: ProofStep[] } | { kind: 'bad' | 'unknown'; detail: string }> {
    const batchId = str(item.batchId);
    if (batchId !== null && !trees.has(batchId)) trees.set(batchId, await this.tree(batchId));
    const tree = batchId === null ? null : trees.get(batchId);
    if (tree) {
      const index = tree.leafIndex.get(hash);
      if (index === undefined)
        return { kind: 'bad', detail: `record hash is not a leaf of batch ${batchId}` };
      return { kind: 'proof', steps: proofFor(tree.levels, index) };
    }
    let steps = item.merkleProof;
    if (steps === undefined) {
      const answer = await this.verifyPayload(hash);
      if (answer.kind !== 'ok') return { kind: 'unknown', detail: describe(answer) };
      steps = (answer.body as { merkleProof?: unknown }).merkleProof;
    }
    const valid =
      Array.isArray(steps) &&
      steps.every(
        (s: { position?: unknown; hash?: unknown }) =>
          (s.position === 'left' || s.position === 'right') && HEX64.test(hex(s.hash) ?? ''),
      );
    if (!valid) return { kind: 'bad', detail: 'Certyo returned no usable Merkle proof' };
    return { kind: 'proof', steps: steps as ProofStep[] };
  }

  private async tree(batchId: string): Promise<Tree | null> {
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
    this.log.debug({ batchId, leaves: hashes.length, root: rootOf(levels) }, 'batch fetched');
    return { levels, leafIndex };
  }

  private notYet(r: Due, detail: string, hash?: string): Settlement {
    const checks = r.checks + 1;
    if (checks >= this.cfg.verifyAttempts) {
      return {
        id: r.id,
        status: 'anchor_failed',
        checked: true,
        next_check_ms: this.cfg.verifyRecheckMs,
        ...(hash && { record_hash: hash }),
        detail: `not anchored after ${checks} checks: ${detail}`,
      };
    }
    return {
      id: r.id,
      status: r.anchor_status === 'anchor_failed' ? 'anchor_failed' : 'submitted',
      checked: true,
      next_check_ms:
        r.anchor_status === 'anchor_failed'
          ? this.cfg.verifyRecheckMs
          : Math.min(60_000, this.cfg.verifyIntervalMs * 2 ** Math.min(r.checks, 10)),
      ...(hash && { record_hash: hash }),
      detail,
    };
  }

  /** Certyo could not be asked (outage, rate limit): try again later, not counted as an attempt. */
  private unanswered(r: Due, answer: Answer): Settlement {
    const wait =
      answer.kind === 'retry' ? (answer.retryAfterMs ?? this.cfg.verifyIntervalMs) : this.cfg.backoffMaxMs;
    return {
      id: r.id,
      status: r.anchor_status,
      checked: false,
      next_check_ms: Math.max(wait, this.cfg.verifyIntervalMs),
      detail: describe(answer),
    };
  }

  /**
   * Certyo's answer does not prove this version. A first mismatch is checked
   * again on the anchor_failed schedule (CERTYO_VERIFY_RECHECK_MS), so one wrong
   * answer does not brand the row for good; a second one is final.
   */
  private mismatch(r: Due, detail: string): Settlement {
    const final = r.anchor_status === 'mismatch';
    return {
      id: r.id,
      status: 'mismatch',
      checked: true,
      next_check_ms: final ? null : this.cfg.verifyRecheckMs,
      detail: final
        ? `${detail} (a second time: final)`
        : `${detail} (checked again in ${Math.round(this.cfg.verifyRecheckMs / 1000)} s before it is final)`,
    };
  }

  private async ask(method: 'GET' | 'POST', path: string, body?: string): Promise<Answer> {
    this.metrics.requests++;
    const answer = await this.client.call(method, path, body);
    if (answer.kind === 'fatal') {
      this.log.error(
        { status: answer.status },
        'Certyo refused a verification request: check CERTYO_API_KEY',
      );
    }
    return answer;
  }
}

function describe(a: Answer): string {
  switch (a.kind) {
    case 'ok':
      return 'ok';
    case 'retry':
      return `Certyo unavailable: ${a.reason}`;
    default:
      return `Certyo answered ${a.status}`;
  }
}
