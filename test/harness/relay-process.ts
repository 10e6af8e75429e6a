// Relay processes (`certyo-pg relay`) for fault tests: spawned with a base
// environment plus the test's, their output kept for failure messages, and
// all of them SIGKILLed at cleanup.
import { type ChildProcess, spawn } from 'node:child_process';
import { paths } from '../../relay/src/paths.js';

export interface RelayProcess {
  child: ChildProcess;
  exited: Promise<number | null>;
  log(): string;
}

export class RelayProcesses {
  /** Every relay spawned since the last killAll(), in order. */
  readonly spawned: RelayProcess[] = [];
  private readonly children = new Set<ChildProcess>();

  constructor(private readonly baseEnv: () => Record<string, string>) {}

  spawn(env: Record<string, string> = {}): RelayProcess {
    const child = spawn(process.execPath, [`${paths.root}bin/certyo-pg.js`, 'relay'], {
      env: { PATH: process.env.PATH ?? '', ...this.baseEnv(), ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let log = '';
    child.stdout?.on('data', (d) => {
      log += d;
    });
    child.stderr?.on('data', (d) => {
      log += d;
    });
    this.children.add(child);
    const exited = new Promise<number | null>((resolve) =>
      child.once('exit', (code) => {
        this.children.delete(child);
        resolve(code);
      }),
    );
    const relay = { child, exited, log: () => log };
    this.spawned.push(relay);
    return relay;
  }

  /** How many are still running. */
  running(): number {
    return this.children.size;
  }

  /** The tail of every spawned relay's output, for a failure message. */
  logs(): string {
    return this.spawned.map((r, i) => `relay ${i}:\n${r.log().slice(-4000)}`).join('\n');
  }

  killAll() {
    this.spawned.length = 0;
    for (const c of this.children) c.kill('SIGKILL');
  }
}
