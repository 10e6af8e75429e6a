// The figures of bench/write-tax.sh's output, as npm run bench reports them:
// per-round ratios of TPS (median, and the lowest and highest round), WAL per
// change, and where the cores went in the single-row INSERT runs.
import { pct, round } from './measure.js';

const median = (xs: number[]) => pct(xs, 50);
const r2 = (x: number) => round(x, 2);

/** write-tax.sh's process groups in its cpu lines. */
const CPU_GROUPS = ['writers', 'relay_db', 'relay', 'certyo', 'client'];
/** The variants whose single-row INSERT runs are sampled: relay absent, running, lingering 20 ms. */
const SAMPLED = ['tracked', 'tracked_relay', 'tracked_relay_linger20'];
export type CpuSplit = Record<
  string,
  { cores: Record<string, number>; writersMicrosecondsPerInsert: number }
>;

/** Where the cores went in the single-row INSERT runs: relay absent / running / lingering 20 ms. */
export function cpuSplit(cpu: CpuSplit) {
  const of = (g: string) => SAMPLED.map((v) => cpu[v]?.cores[g]).join(' / ');
  const perTx = SAMPLED.map((v) => cpu[v]?.writersMicrosecondsPerInsert).join(' / ');
  return (
    `Cores busy, relay absent / running / lingering 20 ms: writers' backends ${of('writers')}, ` +
    `relay's backends ${of('relay_db')}, relay process ${of('relay')}, local Certyo ${of('certyo')}, ` +
    `pgbench ${of('client')}; writers' backend CPU per INSERT ${perTx} µs`
  );
}

export function writeTaxFigures(tax: string) {
  const rounds = [...tax.matchAll(/round=(\d) op=(\w+) variant=(\w+) tps=([\d.]+)/g)].map((m) => ({
    round: Number(m[1]),
    op: m[2]!,
    variant: m[3]!,
    tps: Number(m[4]),
  }));
  const tps = (round: number, op: string, variant: string) =>
    rounds.find((r) => r.round === round && r.op === op && r.variant === variant)?.tps ?? Number.NaN;
  const ids = [...new Set(rounds.map((r) => r.round))];
  const perRound = (op: string, a: string, b: string) => ids.map((i) => tps(i, op, a) / tps(i, op, b));
  /** Median over rounds of the per-round ratio a / b. */
  const ratio = (op: string, a: string, b: string) => r2(median(perRound(op, a, b)));
  /** The lowest and highest per-round ratio a / b: how far one run's rounds scatter. */
  const spread = (op: string, a: string, b: string) => {
    const xs = perRound(op, a, b);
    return `rounds ${r2(Math.min(...xs))} - ${r2(Math.max(...xs))}`;
  };
  const wal = Object.fromEntries(
    [...tax.matchAll(/wal variant=(\w+) bytes_per_change=(\d+)/g)].map((m) => [m[1]!, Number(m[2])]),
  );
  // Cores busy during the single-row INSERT runs with certyo's capture, relay absent and
  // running (write-tax.sh's cpu lines): the median over rounds of each process group, and
  // the writers' backend CPU per transaction.
  const cpuRuns = [...tax.matchAll(/cpu round=(\d) variant=(\w+) (.*) processes=/g)].map((m) => ({
    round: Number(m[1]),
    variant: m[2]!,
    cores: Object.fromEntries(m[3]!.split(' ').map((kv) => [kv.split('=')[0]!, Number(kv.split('=')[1])])),
  }));
  const cpu = Object.fromEntries(
    SAMPLED.map((v) => {
      const runs = cpuRuns.filter((r) => r.variant === v);
      const cores = Object.fromEntries(CPU_GROUPS.map((g) => [g, r2(median(runs.map((r) => r.cores[g]!)))]));
      const perTx = median(runs.map((r) => (r.cores.writers! * 1e6) / tps(r.round, 'insert', v)));
      return [v, { cores, writersMicrosecondsPerInsert: Math.round(perTx) }];
    }),
  ) as CpuSplit;
  return {
    rounds,
    wal,
    cpu,
    spreads: {
      insert: spread('insert', 'tracked', 'untracked'),
      relayRunning: spread('insert', 'tracked_relay', 'untracked'),
      wake: spread('insert', 'tracked', 'tracked_nowake'),
      multiRow: spread('insert100', 'tracked', 'untracked'),
      update: spread('update', 'tracked', 'untracked'),
      delete: spread('delete', 'tracked', 'untracked'),
      tpcb: spread('tpcb', 'tracked', 'untracked'),
    },
    trackedOverUntracked: ratio('insert', 'tracked', 'untracked'),
    // The same into a table that starts empty (the others hold a 200,000-row prefill).
    emptyTableInsert: ratio('insert_empty', 'tracked', 'untracked'),
    naiveEmptyTableInsert: ratio('insert_empty', 'naive', 'untracked'),
    relayRunningOverUntracked: ratio('insert', 'tracked_relay', 'untracked'),
    // The relay lingering 20 ms after a batch that was not full (CERTYO_LINGER_MS; default none).
    relayLinger20OverUntracked: ratio('insert', 'tracked_relay_linger20', 'untracked'),
    wakeOverNoWake: ratio('insert', 'tracked', 'tracked_nowake'),
    // Writers' sessions outside UTC (capture pins the zone for its rendering).
    berlinInsert: ratio('insert', 'tracked_berlin', 'untracked'),
    berlinUpdate: ratio('update', 'tracked_berlin', 'untracked'),
    multiRow: ratio('insert100', 'tracked', 'untracked'),
    update: ratio('update', 'tracked', 'untracked'),
    delete: ratio('delete', 'tracked', 'untracked'),
    notifyOverUntracked: ratio('insert', 'notify', 'untracked'),
    pollingOverUntracked: ratio('insert', 'polling', 'untracked'),
    notifyMultiRow: ratio('insert100', 'notify', 'untracked'),
    pollingMultiRow: ratio('insert100', 'polling', 'untracked'),
    // The naive outbox: one row trigger, one insert (the ceiling of trigger capture).
    naiveOverUntracked: ratio('insert', 'naive', 'untracked'),
    naiveMultiRow: ratio('insert100', 'naive', 'untracked'),
    naiveUpdate: ratio('update', 'naive', 'untracked'),
    naiveDelete: ratio('delete', 'naive', 'untracked'),
    tpcb: ratio('tpcb', 'tracked', 'untracked'),
    naiveTpcb: ratio('tpcb', 'naive', 'untracked'),
  };
}
