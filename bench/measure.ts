// Measuring helpers the benches share: percentiles, CPU of a child process
// and of the machine (from /proc), and waiting for the outbox to drain.
import type { ChildProcess } from 'node:child_process';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import type { Sql } from 'postgres';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Clock ticks per second of /proc's CPU counters. */
export const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;

export const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? Number.NaN;
};
export const round = (x: number, d = 1) => Math.round(x * 10 ** d) / 10 ** d;

/** CPU seconds (user + system) and peak resident memory (MB) of a child process, from /proc. */
export function usage(child: ChildProcess): { cpuSeconds: number; peakRssMb: number } {
  const stat = readFileSync(`/proc/${child.pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(fields[11]) + Number(fields[12]); // utime, stime (fields 14 and 15 of stat)
  const hwm = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'));
  return { cpuSeconds: ticks / CLK_TCK, peakRssMb: Math.round(Number(hwm?.[1] ?? 0) / 1024) };
}

/**
 * Busy and total jiffies of the whole machine (all cores), from /proc/stat;
 * steal: time the hypervisor gave another machine while this one wanted to run
 * (counted in busy: the benchmarks' processes were waiting for a core).
 */
export function machineTicks(): { busy: number; total: number; steal: number } {
  const cpu = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  const total = cpu.reduce((a, b) => a + b, 0);
  return { busy: total - (cpu[3] ?? 0) - (cpu[4] ?? 0), total, steal: cpu[7] ?? 0 }; // idle, iowait; steal
}

/** Polls with a cheap query: counting a large outbox every 20 ms would take CPU from the drain. */
export async function untilDrained(sql: Sql) {
  while ((await sql`select exists (select from certyo.outbox) as more`)[0]!.more) await sleep(20);
}
