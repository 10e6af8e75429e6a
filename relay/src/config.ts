// Relay configuration: one pure function from the environment to a frozen
// object. Every default is in DEFAULTS; every invalid variable is reported at
// once. The README's configuration table lists exactly these variables.
export const DEFAULTS = {
  CERTYO_BASE_URL: 'https://www.certyos.com',
  LOG_LEVEL: 'info',
  CERTYO_BATCH_SIZE: '1000',
  CERTYO_MAX_BATCH_BYTES: '4194304',
  CERTYO_MAX_RECORD_BYTES: '2097152',
  CERTYO_LEASE_SECONDS: '60',
  CERTYO_POLL_INTERVAL_MS: '1000',
  CERTYO_LINGER_MS: '0',
  CERTYO_HTTP_TIMEOUT_MS: '30000',
  CERTYO_BACKOFF_BASE_MS: '200',
  CERTYO_BACKOFF_MAX_MS: '30000',
  CERTYO_CONCURRENCY: '2',
  CERTYO_HEALTH_PORT: '0',
  CERTYO_SHUTDOWN_TIMEOUT_MS: '10000',
  CERTYO_VERIFY: 'on',
  CERTYO_VERIFY_DELAY_MS: '60000',
  CERTYO_VERIFY_INTERVAL_MS: '5000',
  CERTYO_VERIFY_ATTEMPTS: '20',
  CERTYO_VERIFY_RECHECK_MS: '900000',
  CERTYO_ALLOW_HTTP: 'off',
  CERTYO_BACKFILL: 'on',
  CERTYO_BACKFILL_CHUNK: '1000',
} as const;

export const REQUIRED = ['CERTYO_API_KEY', 'CERTYO_TENANT_ID'] as const;
export const OPTIONAL = ['DATABASE_URL', 'CERTYO_CLIENT_ID', 'CERTYO_DATABASE'] as const;

export interface Config {
  databaseUrl: string | undefined;
  apiKey: string;
  tenantId: string;
  clientId: string | undefined;
  database: string | undefined;
  baseUrl: string;
  logLevel: string;
  batchSize: number;
  maxBatchBytes: number;
  maxRecordBytes: number;
  leaseSeconds: number;
  pollIntervalMs: number;
  lingerMs: number;
  httpTimeoutMs: number;
  backoffBaseMs: number;
  backoffMaxMs: number;
  concurrency: number;
  healthPort: number;
  shutdownTimeoutMs: number;
  verify: boolean;
  verifyDelayMs: number;
  verifyIntervalMs: number;
  verifyAttempts: number;
  verifyRecheckMs: number;
  backfill: boolean;
  backfillChunk: number;
}

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n  - ${problems.join('\n  - ')}`);
  }
}

/** Hosts that never leave this machine: plain http:// to them is fine (the local Certyo). */
const LOOPBACK = /^(localhost|127(\.\d{1,3}){3}|\[::1\])$/;

const LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

export function loadConfig(env: Record<string, string | undefined>): Readonly<Config> {
  const problems: string[] = [];
  const value = (name: keyof typeof DEFAULTS) => env[name] ?? DEFAULTS[name];
  const int = (name: keyof typeof DEFAULTS, min: number, max: number) => {
    const raw = value(name);
    const n = Number(raw);
    if (!/^\d+$/.test(raw) || n < min || n > max)
      problems.push(`${name} must be an integer from ${min} to ${max}, got "${raw}"`);
    return n;
  };
  for (const name of REQUIRED) if (!env[name]) problems.push(`${name} is required`);
  const baseUrl = value('CERTYO_BASE_URL').replace(/\/+$/, '');
  const allowHttp = value('CERTYO_ALLOW_HTTP');
  if (allowHttp !== 'on' && allowHttp !== 'off')
    problems.push(`CERTYO_ALLOW_HTTP must be on or off, got "${allowHttp}"`);
  try {
    const u = new URL(baseUrl);
    if (u.protocol !== 'https:' && u.protocol !== 'http:')
      problems.push('CERTYO_BASE_URL must be an http(s) URL');
    else if (u.protocol === 'http:' && !LOOPBACK.test(u.hostname) && allowHttp !== 'on')
      problems.push(
        `CERTYO_BASE_URL is http:// to ${u.hostname}: the API key would cross the network unencrypted; use https://, or set CERTYO_ALLOW_HTTP=on for a test server`,
      );
  } catch {
    problems.push(`CERTYO_BASE_URL is not a URL: "${baseUrl}"`);
  }
  const logLevel = value('LOG_LEVEL');
  if (!LEVELS.includes(logLevel))
    problems.push(`LOG_LEVEL must be one of ${LEVELS.join(', ')}, got "${logLevel}"`);
  const verify = value('CERTYO_VERIFY');
  if (verify !== 'on' && verify !== 'off') problems.push(`CERTYO_VERIFY must be on or off, got "${verify}"`);
  const backfill = value('CERTYO_BACKFILL');
  if (backfill !== 'on' && backfill !== 'off')
    problems.push(`CERTYO_BACKFILL must be on or off, got "${backfill}"`);
  const config: Config = {
    databaseUrl: env.DATABASE_URL || undefined,
    apiKey: env.CERTYO_API_KEY ?? '',
    tenantId: env.CERTYO_TENANT_ID ?? '',
    clientId: env.CERTYO_CLIENT_ID || undefined,
    database: env.CERTYO_DATABASE || undefined,
    baseUrl,
    logLevel,
    batchSize: int('CERTYO_BATCH_SIZE', 1, 1000),
    maxBatchBytes: int('CERTYO_MAX_BATCH_BYTES', 1024, 1_073_741_824),
    maxRecordBytes: int('CERTYO_MAX_RECORD_BYTES', 1024, 1_073_741_824),
    leaseSeconds: int('CERTYO_LEASE_SECONDS', 5, 3600),
    pollIntervalMs: int('CERTYO_POLL_INTERVAL_MS', 10, 600_000),
    lingerMs: int('CERTYO_LINGER_MS', 0, 1000),
    httpTimeoutMs: int('CERTYO_HTTP_TIMEOUT_MS', 100, 600_000),
    backoffBaseMs: int('CERTYO_BACKOFF_BASE_MS', 1, 60_000),
    backoffMaxMs: int('CERTYO_BACKOFF_MAX_MS', 1, 3_600_000),
    concurrency: int('CERTYO_CONCURRENCY', 1, 16),
    healthPort: int('CERTYO_HEALTH_PORT', 0, 65535),
    shutdownTimeoutMs: int('CERTYO_SHUTDOWN_TIMEOUT_MS', 100, 600_000),
    verify: verify === 'on',
    verifyDelayMs: int('CERTYO_VERIFY_DELAY_MS', 0, 86_400_000),
    verifyIntervalMs: int('CERTYO_VERIFY_INTERVAL_MS', 10, 3_600_000),
    verifyAttempts: int('CERTYO_VERIFY_ATTEMPTS', 1, 1000),
    verifyRecheckMs: int('CERTYO_VERIFY_RECHECK_MS', 1000, 604_800_000),
    backfill: backfill === 'on',
    backfillChunk: int('CERTYO_BACKFILL_CHUNK', 1, 10_000),
  };
  if (problems.length > 0) throw new ConfigError(problems);
  return Object.freeze(config);
}
