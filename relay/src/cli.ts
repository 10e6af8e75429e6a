// certyo-pg: the command line. Each command lives in its own module; this file
// only dispatches and turns thrown errors into a message and an exit code.
import { backfillCommand } from './backfill-command.js';
import { connect } from './db.js';
import { demoCommand } from './demo.js';
import { migrate, psqlBundle } from './install.js';
import { localCertyoCommand } from './local-certyo/command.js';
import { relayCommand } from './relay-command.js';
import { statusCommand } from './status.js';
import { verifyCommand } from './verify-command.js';

const USAGE = `certyo-pg <command> [options]

Commands:
  demo           run the whole product on a laptop: embedded PostgreSQL (or DATABASE_URL),
                 local Certyo, relay, a workload, a verified proof (--follow keeps it running)
  migrate        apply the migrations and the sql/ install to DATABASE_URL
  sql            print the whole install as one plain-SQL script for psql
  status         backlog, lag, parked and delivered changes per table, backfills
                 (--json; exit 1 needs attention)
  backfill       [table...] send the rows tracked tables already hold (done by the relay) and show
                 the progress until done (--detach: schedule only); no table: follow running ones
  verify         tamper sweep: compare every row with what Certyo anchored (--json; exit 1 on tampering)
  relay          run the relay sidecar until SIGTERM/SIGINT (configuration: README)
  local-certyo   run the local Certyo-compatible server (--help for options)
  help           show this text

Connection: DATABASE_URL, or the standard PG* variables.`;

type Command = (args: string[]) => Promise<number>;

const commands: Record<string, Command> = {
  async migrate() {
    const url = process.env.DATABASE_URL;
    const sql = connect(url, { max: 1 });
    try {
      const applied = await migrate(sql, url);
      console.log(applied.length ? `applied migrations: ${applied.join(', ')}` : 'migrations: up to date');
      console.log('sql/ objects installed');
      return 0;
    } finally {
      await sql.end();
    }
  },
  async sql() {
    process.stdout.write(psqlBundle());
    return 0;
  },
  'local-certyo': localCertyoCommand,
  relay: relayCommand,
  status: statusCommand,
  backfill: backfillCommand,
  verify: verifyCommand,
  demo: demoCommand,
  async help() {
    console.log(USAGE);
    return 0;
  },
};

const [name = 'help', ...rest] = process.argv.slice(2);
const command = commands[name === '--help' || name === '-h' ? 'help' : name];
if (!command) {
  console.error(`certyo-pg: unknown command "${name}"\n\n${USAGE}`);
  process.exit(2);
}
try {
  process.exitCode = await command(rest);
} catch (err) {
  const e = err as Error & { code?: string; detail?: string; hint?: string };
  console.error(
    `certyo-pg ${name}: ${e.message}${e.detail ? `\n  detail: ${e.detail}` : ''}${e.hint ? `\n  hint: ${e.hint}` : ''}`,
  );
  process.exitCode = 1;
}
