// The one pino root. Secrets (the API key) are redacted by path where they
// are expected (config, request headers) and, as a last line of defence,
// scrubbed from every written line, so an error message or a nested cause
// that happens to contain the key cannot leak it.
import pino, { type DestinationStream, type Logger } from 'pino';

export const REDACT = ['apiKey', '*.apiKey', 'headers["x-api-key"]', '*.headers["x-api-key"]'];

export function createLogger(level: string, secrets: string[] = [], destination?: DestinationStream): Logger {
  const scrub = secrets.filter((s) => s.length >= 8);
  return pino(
    {
      level,
      base: { name: 'certyo-relay' },
      redact: { paths: REDACT, censor: '[redacted]' },
      hooks: {
        streamWrite: (line) => scrub.reduce((out, s) => out.replaceAll(s, '[redacted]'), line),
      },
    },
    destination,
  );
}
