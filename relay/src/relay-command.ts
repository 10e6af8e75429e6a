// `certyo-pg relay`: the sidecar. Validates configuration before connecting,
// runs until SIGTERM/SIGINT, then stops gracefully before the deadline.
import { CertyoClient } from './certyo/client.js';
import { ConfigError, loadConfig } from './config.js';
import { relayPool } from './db.js';
import { startHealth } from './health.js';
import { createLogger } from './log.js';
import { Relay } from './relay.js';

export async function relayCommand(_args: string[], env = process.env): Promise<number> {
  let cfg: ReturnType<typeof loadConfig>;
  try {
    cfg = loadConfig(env);
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(`certyo-pg relay: ${err.message}`);
      return 2;
    }
    throw err;
  }
  // Signals first: a SIGTERM that arrives while starting must still stop gracefully.
  const stopRequested = new Promise<void>((resolve) => {
    process.once('SIGTERM', resolve);
    process.once('SIGINT', resolve);
  });
  const log = createLogger(cfg.logLevel, [cfg.apiKey]);
  const sql = relayPool(cfg, log);
  const client = new CertyoClient({ baseUrl: cfg.baseUrl, apiKey: cfg.apiKey, timeoutMs: cfg.httpTimeoutMs });
  const relay = new Relay(cfg, sql, client, log);
  // Health first: while the relay waits for PostgreSQL, /healthz answers and /readyz says not yet.
  const health = await startHealth(cfg.healthPort, relay, sql);
  log.info({ healthPort: health.port, baseUrl: cfg.baseUrl }, 'health endpoints listening');
  try {
    // Starting waits for PostgreSQL (retrying); a stop request meanwhile ends the wait.
    const stopping = stopRequested.then(() => relay.stop());
    await relay.start();
    await stopRequested;
    log.info('stopping');
    await stopping;
    return 0;
  } finally {
    health.server.close();
    await client.close();
    await sql.end({ timeout: 5 });
  }
}
