// The README's configuration table lists exactly the variables the relay reads.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { DEFAULTS, OPTIONAL, REQUIRED } from '../relay/src/config.js';
import { paths } from '../relay/src/paths.js';

test('README configuration table = the variables loadConfig reads', () => {
  const readme = readFileSync(`${paths.root}README.md`, 'utf8');
  const section = readme.slice(
    readme.indexOf('### Configuration'),
    readme.indexOf('## The local Certyo server'),
  );
  const inTable = new Set([...section.matchAll(/^\| `([A-Z_]+)` \|/gm)].map((m) => m[1]));
  const inCode = new Set([...Object.keys(DEFAULTS), ...REQUIRED, ...OPTIONAL]);
  assert.deepEqual([...inTable].sort(), [...inCode].sort());
  for (const [name, value] of Object.entries(DEFAULTS)) {
    if (name === 'CERTYO_HEALTH_PORT') continue; // shown as "0 (random)"
    assert.match(
      section,
      new RegExp(`\\| \`${name}\` \\| \`${value.replace(/[.]/g, '\\.')}\``),
      `${name} default`,
    );
  }
});

test('README quick start: its commands exist in package.json and reach the demo and the test runner', () => {
  const readme = readFileSync(`${paths.root}README.md`, 'utf8');
  const quick = readme.slice(readme.indexOf('## Quick start'), readme.indexOf('## A SQL session'));
  const commands = [...quick.matchAll(/^npm (?:run )?(\w+)/gm)].map((m) => m[1]);
  assert.deepEqual(commands, ['install', 'demo', 'test']);
  const pkg = JSON.parse(readFileSync(`${paths.root}package.json`, 'utf8')) as {
    scripts: Record<string, string>;
    bin: Record<string, string>;
  };
  assert.match(pkg.scripts.demo ?? '', /bin\/certyo-pg\.js demo$/);
  assert.match(pkg.scripts.test ?? '', /node dist\/test\/run\.js$/);
  assert.equal(pkg.bin['certyo-pg'], 'bin/certyo-pg.js');
});
