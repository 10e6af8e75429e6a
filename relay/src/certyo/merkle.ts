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

/** Levels from leaves (0) to root; each level a list of 32-byte nodes. */
export function buildTree(leafHex: string[]): Buffer[][] {
  if (leafHex.length === 0) throw new Error('a Merkle tree needs at least one leaf');
  const levels: Buffer[][] = [leafHex.map((h) => Buffer.from(h, 'hex'))];
  for (let level = levels[0]!; level.length > 1; ) {
    const next: Buffer[] = [];
    for (let i = 0; i < level.length; i += 2) {
      next.push(i + 1 < level.length ? parent(level[i]!, level[i + 1]!) : level[i]!);
    }
    levels.push(next);
    level = next;
  }
  return levels;
}

export const rootOf = (levels: Buffer[][]) => levels[levels.length - 1]![0]!.toString('hex');

export function proofFor(levels: Buffer[][], index: number): ProofStep[] {
  const proof: ProofStep[] = [];
  for (let l = 0, i = index; l < levels.length - 1; l++, i = Math.floor(i / 2)) {
    const level = levels[l]!;
    const sibling = i % 2 === 0 ? i + 1 : i - 1;
    if (sibling < level.length)
      proof.push({ position: i % 2 === 0 ? 'right' : 'left', hash: level[sibling]!.toString('hex') });
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
