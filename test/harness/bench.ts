// Runs one of the README's benchmark commands at tiny sizes against the test
// server and returns what it printed (the figures themselves come from `npm run bench`).
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { paths } from '../../relay/src/paths.js';
import { adminUrl } from './db.js';

const exec = promisify(execFile);

/** `bench/<name>` through bash (a .sh) or node (dist/bench/<name>.js); stdout. */
export async function runBench(name: string, args: string[]): Promise<string> {
  const [file, script] = name.endsWith('.sh')
    ? ['bash', `${paths.root}bench/${name}`]
    : [process.execPath, `${paths.root}dist/bench/${name}.js`];
  const { stdout } = await exec(file, [script, ...args], {
    env: { ...process.env, DATABASE_URL: adminUrl() },
  });
  return stdout;
}

/** The JSON report a node benchmark prints after its progress lines. */
export async function benchReport<T>(name: string, args: string[]): Promise<T> {
  const stdout = await runBench(name, args);
  return JSON.parse(stdout.slice(stdout.indexOf('{'))) as T;
}
