#!/usr/bin/env node
// The package's bin: runs the compiled CLI (npm run build, or npm install's prepare step, produces dist/).
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const cli = new URL('../dist/relay/src/cli.js', import.meta.url);
if (!existsSync(fileURLToPath(cli))) {
  console.error('certyo-pg: dist/ is missing; run `npm run build` in the checkout first.');
  process.exit(2);
}
await import(cli.href);
