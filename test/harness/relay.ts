// A relay in the test process: configured like the sidecar (loadConfig), on its
// own connection pool, with its log lines handed to the test (debug level;
// echoed to stderr when CERTYO_TEST_LOG is set), or silent.
import { Writable } from 'node:stream';
import { CertyoClient } from '../../relay/src/certyo/client.js';
import { loadConfig } from '../../relay/src/config.js';
import { relayPool } from '../../relay/src/db.js';
import { createLogger } from '../../relay/src/log.js';
import { Relay } from '../../relay/src/relay.js';

export interface TestRelay {
  relay: Relay;
  close(): Promise<void>;
}

export async function startTestRelay(
  dbUrl: string,
  env: Record<string, string | undefined>,
  onLog?: (line: string) => void,
): Promise<TestRelay> {
  const cfg = loadConfig(env);
  const sink = new Writable({
    write(chunk, _enc, cb) {
      onLog?.(String(chunk));
      if (process.env.CERTYO_TEST_LOG) process.stderr.write(chunk);
      cb();
    },
  });
  const log = createLogger(onLog ? 'debug' : 'silent', [cfg.apiKey], sink);
  const sql = relayPool({ ...cfg, databaseUrl: dbUrl }, log); // as the sidecar's
  const client = new CertyoClient({ baseUrl: cfg.baseUrl, apiKey: cfg.apiKey, timeoutMs: cfg.httpTimeoutMs });
  const relay = new Relay(cfg, sql, client, log);
  await relay.start();
  return {
    relay,
    close: async () => {
      await relay.stop();
      await client.close();
      await sql.end();
    },
  };
}
