// One way to open a connection pool: DATABASE_URL when given, else the
// standard PG* variables (postgres.js reads them itself).
import postgres, { type Options, type Sql } from 'postgres';

export function connect(databaseUrl: string | undefined, options: Options<Record<string, never>> = {}): Sql {
  const opts: Options<Record<string, never>> = {
    onnotice: () => {},
    connection: { application_name: 'certyo-pg' },
    ...options,
  };
  return databaseUrl ? postgres(databaseUrl, opts) : postgres(opts);
}
