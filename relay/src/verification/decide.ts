// What a verification check concludes about one receipt, from what Certyo
// said about its record: anchored (with a proof walked here against the root
// Certyo reports, or, where Certyo's answer carries no proof, on its
// documented verified: true), not yet, anchor_failed, or mismatch (checked
// once more before it is final). The settlement is what
// certyo.settle_verification writes.

import type { Answer } from '../certyo/client.js';
import { type Levels, type ProofStep, proofFor, walkProof } from '../certyo/merkle.js';
import type { Config } from '../config.js';
import type { CertyoQueries } from './certyo-queries.js';

export interface Due {
  id: string;
  op: 'I' | 'U' | 'D';
  record_id: string;
  collection: string;
  record_hash: string | null;
  accepted_at: Date | null;
  delivered_at: Date;
  anchor_status: 'submitted' | 'anchored' | 'anchor_failed' | 'mismatch';
  checks: number;
  /** The payload as delivered, kept only when Certyo returned no record hash. */
  payload: string | null;
}

export interface Settlement {
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

/** A record summary (fields beyond the documented ones are [local]: parse defensively). */
export interface Item {
  recordId?: unknown;
  recordVersion?: unknown;
  recordHash?: unknown;
  /** Certyo's states, plus 'Mismatch': a verify endpoint said the payload or hash does not verify. */
  status?: unknown;
  onChainConfirmed?: unknown;
  onChainMerkleRoot?: unknown;
  batchId?: unknown;
  polygonTxHash?: unknown;
  blockNumber?: unknown;
  ipfsCid?: unknown;
  anchoredAt?: unknown;
  /** Only from a verify endpoint: the proof it returned, if any. */
  merkleProof?: unknown;
  /** Only from a verify endpoint: it answered verified: true. */
  verifiedByCertyo?: boolean;
  reason?: string;
}

export interface Tree {
  levels: Levels;
  leafIndex: Map<string, number>;
}

export const HEX64 = /^[0-9a-f]{64}$/;
export const hex = (v: unknown) =>
  typeof v === 'string' ? v.toLowerCase().replace(/^(0x|sha256:)/, '') : undefined;
const str = (v: unknown) => (typeof v === 'string' ? v : null);

type Proof =
  | { kind: 'proof'; steps: ProofStep[] }
  | { kind: 'trusted' }
  | { kind: 'bad'; detail: string }
  | { kind: 'unknown'; detail: string };

export class Decider {
  constructor(
    private readonly cfg: Config,
    private readonly queries: CertyoQueries,
  ) {}

  async decide(r: Due, item: Item | undefined, trees: Map<string, Tree | null>): Promise<Settlement> {
    const reported = hex(item?.recordHash);
    const hash = r.record_hash ?? reported;
    const status = str(item?.status);
    if (status === 'Mismatch') {
      return this.mismatch(
        r,
        `Certyo does not verify this version as delivered (${item?.reason ?? 'fail'}; it holds hash ${reported ?? 'unknown'})`,
      );
    }
    if (item && r.record_hash && reported !== undefined && reported !== r.record_hash) {
      return this.mismatch(
        r,
        `Certyo now reports record hash ${reported}, but returned ${r.record_hash} when it accepted the record`,
      );
    }
    const known = hash !== undefined && HEX64.test(hash) ? hash : undefined;
    if (
      item &&
      status === 'Anchored' &&
      item.onChainConfirmed !== false &&
      (known || item.verifiedByCertyo)
    ) {
      const root = hex(item.onChainMerkleRoot);
      const proof: Proof = known ? await this.proof(known, item, trees) : { kind: 'trusted' };
      if (proof.kind === 'unknown') return this.notYet(r, proof.detail);
      if (proof.kind === 'bad') return this.mismatch(r, proof.detail);
      const base = {
        id: r.id,
        status: 'anchored' as const,
        checked: true,
        next_check_ms: null,
        ...(known && { record_hash: known }),
        batch_id: str(item.batchId),
        polygon_tx_hash: str(item.polygonTxHash),
        block_number: typeof item.blockNumber === 'number' ? item.blockNumber : null,
        ipfs_cid: str(item.ipfsCid),
        anchored_at: str(item.anchoredAt),
      };
      if (proof.kind === 'trusted') {
        return {
          ...base,
          ...(root && HEX64.test(root) && { merkle_root: root }),
          detail: 'verified by Certyo; its answer carried no Merkle proof to walk here',
        };
      }
      const walked = walkProof(known!, proof.steps);
      if (!root || walked !== root) {
        return this.mismatch(r, `Merkle proof walks to ${walked}, but Certyo reports root ${root ?? 'none'}`);
      }
      return {
        ...base,
        merkle_root: root,
        proof: proof.steps.map((s) => (s.position === 'left' ? '00' : '01') + hex(s.hash)).join(''),
      };
    }
    if (status === 'Failed') {
      return {
        id: r.id,
        status: 'anchor_failed',
        checked: true,
        next_check_ms: this.cfg.verifyRecheckMs,
        ...(known && { record_hash: known }),
        detail: 'Certyo reports anchoring failed (it retries on its own)',
      };
    }
    return this.notYet(r, item ? `Certyo status ${status ?? 'unknown'}` : 'not found at Certyo yet', known);
  }

  /**
   * The proof of one leaf: from the batch's leaves when Certyo lists them, else
   * from a verify answer (asked by hash if the item did not come from one).
   * A verify answer that says verified but carries no proof is trusted.
   */
  private async proof(hash: string, item: Item, trees: Map<string, Tree | null>): Promise<Proof> {
    const batchId = str(item.batchId);
    if (batchId !== null && !trees.has(batchId)) trees.set(batchId, await this.queries.tree(batchId));
    const tree = batchId === null ? null : trees.get(batchId);
    if (tree) {
      const index = tree.leafIndex.get(hash);
      if (index === undefined)
        return { kind: 'bad', detail: `record hash is not a leaf of batch ${batchId}` };
      return { kind: 'proof', steps: proofFor(tree.levels, index) };
    }
    let answer = item;
    if (item.verifiedByCertyo === undefined) {
      const asked = await this.queries.byHash(hash);
      if (asked.kind !== 'item') return { kind: 'unknown', detail: describe(asked) };
      answer = asked.item;
    }
    const steps = answer.merkleProof;
    if (steps === undefined || steps === null) {
      return answer.verifiedByCertyo
        ? { kind: 'trusted' }
        : {
            kind: 'unknown',
            detail: `Certyo does not verify it yet (${answer.reason ?? 'no reason given'})`,
          };
    }
    const valid =
      Array.isArray(steps) &&
      steps.every(
        (s: { position?: unknown; hash?: unknown }) =>
          (s.position === 'left' || s.position === 'right') && HEX64.test(hex(s.hash) ?? ''),
      );
    if (!valid) return { kind: 'bad', detail: 'Certyo returned a Merkle proof that is not one' };
    return { kind: 'proof', steps: steps as ProofStep[] };
  }

  notYet(r: Due, detail: string, hash?: string): Settlement {
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
    // Jittered: receipts delivered together do not come due together, so checks
    // made record by record spread out.
    const backoff = Math.min(60_000, this.cfg.verifyIntervalMs * 2 ** Math.min(r.checks, 10));
    return {
      id: r.id,
      status: r.anchor_status === 'anchor_failed' ? 'anchor_failed' : 'submitted',
      checked: true,
      next_check_ms:
        r.anchor_status === 'anchor_failed'
          ? this.cfg.verifyRecheckMs
          : Math.round(backoff * (0.75 + Math.random() / 2)),
      ...(hash && { record_hash: hash }),
      detail,
    };
  }

  /** Certyo could not be asked (outage, rate limit): try again later, not counted as an attempt. */
  unanswered(r: Due, answer: Answer): Settlement {
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
  mismatch(r: Due, detail: string): Settlement {
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
}

export function describe(a: Answer): string {
  switch (a.kind) {
    case 'ok':
      return 'ok';
    case 'retry':
      return `Certyo unavailable: ${a.reason}`;
    default:
      return `Certyo answered ${a.status}`;
  }
}
