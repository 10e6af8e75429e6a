// The relay's loops asleep, grouped by what wakes them: a loop sleeps until
// its timeout or a wake-up of its group; stopping wakes every group, and a
// loop that goes to sleep after the stop returns at once.
export type Group =
  /** Delivery loops: a NOTIFY, an acknowledgement that released held changes. */
  | 'delivery'
  /** Delivery loops beyond the first: a claim that came back full (a backlog). */
  | 'helpers'
  /** The backfill loop waiting for claims to lease its last chunk. */
  | 'claimed'
  /** The backfill loop with nothing scheduled: a wake-up (certyo.backfill() sends one). */
  | 'scheduled'
  /**
   * The stop only: loops a new change gives nothing to do (verification, skipped
   * write-backs), and a delivery loop lingering (CERTYO_LINGER_MS).
   */
  | 'stop';

export class Sleepers {
  private readonly groups = new Map<Group, Set<() => void>>();

  constructor(private readonly awake: () => boolean) {}

  private group(g: Group) {
    const set = this.groups.get(g) ?? new Set<() => void>();
    this.groups.set(g, set);
    return set;
  }

  /** Resolves after ms, or earlier (true) when its group is woken; at once when stopping. */
  sleep(ms: number, g: Group): Promise<boolean> {
    if (!this.awake()) return Promise.resolve(true);
    const wakers = this.group(g);
    return new Promise<boolean>((resolve) => {
      const done = (woken: boolean) => {
        clearTimeout(t);
        wakers.delete(wake);
        resolve(woken);
      };
      const wake = () => done(true);
      const t = setTimeout(() => done(false), ms);
      wakers.add(wake);
    });
  }

  wake(g: Group) {
    const wakers = this.group(g);
    for (const w of wakers) w();
    wakers.clear();
  }

  /** Anyone asleep in the group. */
  asleep(g: Group): boolean {
    return this.group(g).size > 0;
  }

  wakeAll() {
    for (const g of this.groups.keys()) this.wake(g);
  }
}
