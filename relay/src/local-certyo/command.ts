// `certyo-pg local-certyo`: the local Certyo-compatible server as a command.
import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import pino from 'pino';
import { startLocalCertyo } from './server.js';

export const LOCAL_CERTYO_HELP = `certyo-pg local-certyo [options]

A local Certyo-compatible API for development, demos and tests. State is kept
in memory only and is lost when it stops. Not a production replacement.

Options (environment variable in brackets):
  --port N              listen port, default 8080            [LOCAL_CERTYO_PORT]
  --host H              listen address, default 127.0.0.1    [LOCAL_CERTYO_HOST]
  --key KEY=TENANT      accept an API key for a tenant; repeatable; without one
                        a key is generated and printed       [LOCAL_CERTYO_KEYS=k1=t1,k2=t2]
  --flush-records N     seal a batch at N records, default 1000 [LOCAL_CERTYO_FLUSH_RECORDS]
  --flush-ms MS         or when the oldest waited MS, default 60000 [LOCAL_CERTYO_FLUSH_MS]
  --anchor-ms MS        anchoring delay after sealing, default 30000 [LOCAL_CERTYO_ANCHOR_MS]
  --documented-only     serve only what Certyo documents: no per-record results
                        in the bulk answer, no listing, batches or proofs
                                                             [LOCAL_CERTYO_DOCUMENTED_ONLY=1]
  --admin               enable /_admin/faults and /_admin/requests [LOCAL_CERTYO_ADMIN=1]
  --help`;

export async function localCertyoCommand(args: string[], env = process.env): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      port: { type: 'string' },
      host: { type: 'string' },
      key: { type: 'string', multiple: true },
      'flush-records': { type: 'string' },
      'flush-ms': { type: 'string' },
      'anchor-ms': { type: 'string' },
      'documented-only': { type: 'boolean' },
      admin: { type: 'boolean' },
      help: { type: 'boolean' },
    },
  });
  if (values.help) {
    console.log(LOCAL_CERTYO_HELP);
    return 0;
  }
  const errors: string[] = [];
  const int = (name: string, v: string | undefined, dflt: number, min: number) => {
    if (v === undefined) return dflt;
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) errors.push(`${name} must be an integer >= ${min}, got "${v}"`);
    return n;
  };
  const port = int('--port', values.port ?? env.LOCAL_CERTYO_PORT, 8080, 0);
  const flushRecords = int(
    '--flush-records',
    values['flush-records'] ?? env.LOCAL_CERTYO_FLUSH_RECORDS,
    1000,
    1,
  );
  const flushMs = int('--flush-ms', values['flush-ms'] ?? env.LOCAL_CERTYO_FLUSH_MS, 60_000, 1);
  const anchorMs = int('--anchor-ms', values['anchor-ms'] ?? env.LOCAL_CERTYO_ANCHOR_MS, 30_000, 0);
  const pairs = values.key ?? (env.LOCAL_CERTYO_KEYS ? env.LOCAL_CERTYO_KEYS.split(',') : []);
  const keys: Record<string, string> = {};
  for (const pair of pairs) {
    const [k, t] = pair.split('=');
    if (!k || !t) errors.push(`--key must be KEY=TENANT, got "${pair}"`);
    else keys[k] = t;
  }
  if (errors.length) {
    for (const e of errors) console.error(`certyo-pg local-certyo: ${e}`);
    return 2;
  }
  const generated = pairs.length === 0;
  if (generated) keys[`certyo_sk_test_${randomBytes(12).toString('hex')}`] = 'local-tenant';
  const logger = pino({
    level: env.LOG_LEVEL ?? 'info',
    redact: { paths: ['key', 'keys'], censor: '[redacted]' },
  });
  const server = await startLocalCertyo({
    port,
    host: values.host ?? env.LOCAL_CERTYO_HOST ?? '127.0.0.1',
    keys,
    flushRecords,
    flushMs,
    anchorMs,
    admin: values.admin ?? env.LOCAL_CERTYO_ADMIN === '1',
    documentedOnly: values['documented-only'] ?? env.LOCAL_CERTYO_DOCUMENTED_ONLY === '1',
    logger,
  });
  logger.info(
    {
      url: server.url,
      tenants: [...new Set(Object.values(keys))],
      flushRecords,
      flushMs,
      anchorMs,
      documentedOnly: server.documentedOnly,
    },
    'local certyo listening',
  );
  if (generated) {
    const [[key, tenant]] = Object.entries(keys) as [[string, string]];
    // Printed on purpose (stdout, not the log): it is a throwaway local key.
    console.log(`CERTYO_BASE_URL=${server.url} CERTYO_API_KEY=${key} CERTYO_TENANT_ID=${tenant}`);
  }
  await new Promise<void>((resolve) => {
    process.once('SIGTERM', resolve);
    process.once('SIGINT', resolve);
  });
  await server.close();
  logger.info('local certyo stopped');
  return 0;
}
