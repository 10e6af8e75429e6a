// Waiting for an event without sleeping a fixed time: poll a condition, and
// when it never comes, fail with diagnostics instead of hanging until the
// test file's timeout (which reports nothing about why).

export interface WaitOptions {
  /** Give up after this long (default 90 s: well past any healthy wait, well inside the file's timeout). */
  limitMs?: number;
  /** What the failure message should show (relay logs, backends, counts). */
  describe?: () => string | Promise<string>;
  /** Between checks (default 20 ms). */
  intervalMs?: number;
}

export async function until(cond: () => boolean | Promise<boolean>, opts: WaitOptions = {}) {
  const limitMs = opts.limitMs ?? 90_000;
  const end = Date.now() + limitMs;
  while (!(await cond())) {
    if (Date.now() > end) {
      const detail = opts.describe ? `\n${await opts.describe()}` : '';
      throw new Error(`condition not met after ${limitMs} ms: ${cond.toString().slice(0, 300)}${detail}`);
    }
    await new Promise((r) => setTimeout(r, opts.intervalMs ?? 20));
  }
}
