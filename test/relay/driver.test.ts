// The database driver's connection loss, which the relay lives through on
// every restart: postgres.js 3.4.9 is patched (vendor/postgres) because a
// socket closed while a small write was buffered left that pool slot unable
// to send again (every later connect ended in CONNECT_TIMEOUT, 30 s each),
// end() after a connection reset waited forever (a command that failed on one
// never exited), and a write on a pinned connection whose backend died threw
// from an immediate and took the process down.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { type AddressInfo, createServer, type Socket, connect as tcpConnect } from 'node:net';
import { after, before, describe, test } from 'node:test';
import type { Options } from 'postgres';
import { connect } from '../../relay/src/db.js';
import { freshDatabase, type TestDb } from '../harness/db.js';
import { joinSockets } from '../harness/proxy.js';
import { until } from '../harness/wait.js';

let db: TestDb;
before(async () => {
  db = await freshDatabase();
});
after(() => db.close());

describe('database driver under connection loss', () => {
  test('a connection cut while a write is buffered: the next query reconnects and answers', async () => {
    const url = new URL(db.url);
    const sockets: Socket[] = [];
    // Our own sockets (postgres.js's `socket` option), so the test can cut one at a chosen moment.
    const socket = () =>
      new Promise<Socket>((resolve, reject) => {
        const s = tcpConnect(Number(url.port || 5432), url.hostname);
        sockets.push(s);
        s.once('connect', () => resolve(s));
        s.once('error', reject);
      });
    const sql = connect(db.url, { max: 1, connect_timeout: 5, socket } as Options<Record<string, never>>);
    try {
      assert.equal((await sql`select 1 as x`)[0]!.x, 1);
      // Inside an immediate: the query's bytes wait for the next check phase, and
      // the socket's close runs before it (close callbacks come first).
      const cut = await new Promise<Promise<unknown>>((resolve) =>
        setImmediate(() => {
          const q = sql`select 2`.execute().then(
            () => 'answered',
            (e: { code?: string }) => e.code,
          );
          sockets.at(-1)!.destroy();
          resolve(q);
        }),
      );
      assert.equal(await cut, 'CONNECTION_CLOSED');
      const next = await sql`select 3 as x`.then(
        (rows) => rows[0]!.x,
        (e: { code?: string }) => e.code,
      );
      assert.equal(next, 3, 'unpatched 3.4.9 never sends the startup message: CONNECT_TIMEOUT');
      assert.equal(sockets.length, 2);
    } finally {
      await sql.end({ timeout: 1 });
    }
  });

  test('a query cut by a connection reset: end() still ends', async () => {
    const url = new URL(db.url);
    // A TCP proxy in front of PostgreSQL, so the test can reset the client's connection.
    const clients: Socket[] = [];
    const proxy = createServer((client) => {
      joinSockets(client, tcpConnect(Number(url.port || 5432), url.hostname));
      clients.push(client);
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    const proxied = new URL(db.url);
    proxied.port = String((proxy.address() as AddressInfo).port);
    const sql = connect(proxied.toString(), { max: 1 });
    try {
      await sql`select 1`;
      const q = sql`select pg_sleep(30)`.then(
        () => 'answered',
        (e: { code?: string }) => e.code,
      );
      await until(
        async () =>
          (await db.sql`select from pg_stat_activity where query = 'select pg_sleep(30)'`).length > 0,
      );
      clients.at(-1)!.resetAndDestroy();
      assert.equal(await q, 'ECONNRESET');
      // Unpatched 3.4.9 waits forever for the cut query's answer (porsager/postgres#1130).
      let timer: NodeJS.Timeout | undefined;
      const ended = await Promise.race([
        sql.end().then(() => 'ended'),
        new Promise((resolve) => {
          timer = setTimeout(() => resolve('still waiting after 20 s'), 20_000);
        }),
      ]);
      clearTimeout(timer);
      assert.equal(ended, 'ended');
    } finally {
      // Not sql.end() again: it returns the first call's promise, which may never settle.
      proxy.close();
    }
  });

  test("a reserved connection used after its backend was terminated: queries fail, the process doesn't", () => {
    // In a child process, so that a crash (unpatched: TypeError thrown from nextWrite) is seen as one.
    const script = `
      import { connect } from ${JSON.stringify(new URL('../../relay/src/db.js', import.meta.url).href)};
      const sql = connect(process.argv[1], { max: 2 });
      const code = (q) => q.then(() => 'ok', (e) => e.code);
      await sql\`select 1\`;
      const r = await sql.reserve();
      const out = [await code(r\`select pg_terminate_backend(pg_backend_pid())\`), await code(r\`select 1\`)];
      r.release();
      await code(sql\`select 1\`);
      out.push(await code(sql\`select 1\`));
      console.log(JSON.stringify(out));
      await sql.end({ timeout: 1 });`;
    const child = spawnSync(process.execPath, ['--input-type=module', '-e', script, db.url], {
      encoding: 'utf8',
      timeout: 60_000,
    });
    assert.equal(child.status, 0, `exited ${child.status ?? child.signal}: ${child.stderr}`);
    const [terminated, afterwards, pool] = JSON.parse(child.stdout) as string[];
    assert.notEqual(terminated, 'ok');
    assert.notEqual(afterwards, 'ok');
    assert.equal(pool, 'ok', 'the pool serves again');
  });
});
