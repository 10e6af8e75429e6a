// Certyo's Merkle tree as the local server builds it (certyo-api.md): leaves
// are the 32-byte record hashes, parent = SHA-256(left || right), an odd last
// node is promoted unchanged. The relay walks proofs with the same code.
import { hash } from 'node:crypto';

export interface ProofStep {
  position: 'left' | 'right';
  hash: string;
}

export const sha256hex = (data: string | Buffer) => hash('sha256', data, 'hex');

const parent = (l: Buffer, r: Buffer) => hash('sha256', Buffer.concat([l, r]), 'buffer');

/**
 * Levels from leaves (0) to root; each level's 32-byte nodes side by side in
 * one buffer (a buffer per node would cost more memory than the hashes).
 */
export type Levels = Buffer[];

const node = (level: Buffer, i: number) => level.subarray(i * 32, i * 32 + 32);
const width = (level: Buffer) => level.length / 32;

export function buildTree(leafHex: string[]): Levels {
  if (leafHex.length === 0) throw new Error('a Merkle tree needs at least one leaf');
  let level = Buffer.from(leafHex.join(''), 'hex');
  if (level.length !== leafHex.length * 32) throw new Error('a Merkle leaf is not a 64-digit hex hash');
  const levels = [level];
  while (width(level) > 1) {
    const n = width(level);
    const next = Buffer.allocUnsafe(Math.ceil(n / 2) * 32);
    for (let i = 0; i < n; i += 2) {
      // left || right are adjacent in the level: hash them in place
      const up = i + 1 < n ? hash('sha256', level.subarray(i * 32, i * 32 + 64), 'buffer') : node(level, i);
      up.copy(next, (i / 2) * 32);
    }
    levels.push(next);
    level = next;
  }
  return levels;
}

export const rootOf = (levels: Levels) => levels[levels.length - 1]!.toString('hex');

/** The leaves, in tree order, as hex. */
export const leavesOf = (levels: Levels) =>
  Array.from({ length: width(levels[0]!) }, (_, i) => node(levels[0]!, i).toString('hex'));

export function proofFor(levels: Levels, index: number): ProofStep[] {
  const proof: ProofStep[] = [];
  for (let l = 0, i = index; l < levels.length - 1; l++, i = Math.floor(i / 2)) {
    const level = levels[l]!;
    const sibling = i % 2 === 0 ? i + 1 : i - 1;
    if (sibling < width(level))
      proof.push({ position: i % 2 === 0 ? 'right' : 'left', hash: node(level, sibling).toString('hex') });
  }
  return proof;
}

/** Walks a proof from a leaf; returns the root it leads to (lowercase hex, no 0x). */
export function walkProof(leafHex: string, proof: ProofStep[]): string {
  let node = Buffer.from(leafHex, 'hex');
  for (const step of proof) {
    const sib = Buffer.from(step.hash.replace(/^0x/, ''), 'hex');
    node = step.position === 'left' ? parent(sib, node) : parent(node, sib);
  }
  return node.toString('hex');
}
