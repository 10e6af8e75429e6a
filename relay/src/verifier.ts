// The verifier: receipts due a check are leased in batches, Certyo is asked
// about them (verification/certyo-queries.ts: many at once where it offers a
// listing, record by record where it does not), each answer is judged
// (verification/decide.ts: a proof walked here, or Certyo's documented
// verified: true when its answer has none), and the outcome is settled in the
// database, which writes 'anchored' (or a failure state) into the rows still
// at that version.
import type { Logger } from 'pino';
import type { Sql } from 'postgres';
import type { CertyoClient } from './certyo/client.js';
import type { Config } from './config.js';
import { push } from './maps.js';
import { CertyoQueries, NO_LISTING_MS } from './verification/certyo-queries.js';
import { Decider, type Due, type Item, type Settlement, type Tree } from './verification/decide.js';

export class VerifierMetrics {
  anchored = 0;
  anchorFailed = 0;
  mismatches = 0;
  get requests() {
    return this.queries.requests;
  }
  constructor(private readonly queries: CertyoQueries) {}
}

/** Receipts per round: a page when Certyo lists records, fewer when each is asked about on its own. */
const PAGE = 1000;
const PER_RECORD_ROUND = 100;

export class Verifier {
  readonly metrics: VerifierMetrics;
  private readonly queries: CertyoQueries;
  private readonly decider: Decider;

  constructor(
    private readonly cfg: Config,
    private readonly sql: Sql,
    client: CertyoClient,
    private readonly log: Logger,
    private readonly token: string,
    database: string,
    private readonly running: () => boolean,
    private readonly sleep: (ms: number) => Promise<unknown>,
  ) {
    this.queries = new CertyoQueries(cfg, client, database, (status) =>
      log.error({ status }, 'Certyo refused a verification request: check CERTYO_API_KEY'),
    );
    this.decider = new Decider(cfg, this.queries);
    this.metrics = new VerifierMetrics(this.queries);
  }

  async run() {
    let failures = 0;
    while (this.running()) {
      try {
        const t0 = performance.now();
        const due = await this.sql<Due[]>`
          select id::text, op::text, record_id, collection, record_hash, accepted_at, delivered_at, anchor_status,
                 checks, payload
          from certyo.claim_verification(${this.token}, ${this.queries.listingMissing() ? PER_RECORD_ROUND : PAGE},
                                         ${`${this.cfg.leaseSeconds} seconds`},
                                         ${`${this.cfg.verifyDelayMs} milliseconds`})`;
        failures = 0;
        if (due.length === 0) {
          await this.sleep(this.cfg.verifyIntervalMs);
          continue;
        }
        const t1 = performance.now();
        const results = await this.check(due);
        const t2 = performance.now();
        const json = this.sql.json(results as unknown as Parameters<Sql['json']>[0]);
        await this.sql`select certyo.settle_verification(${this.token}, ${json})`;
        this.count(results, due);
        this.log.debug(
          {
            receipts: due.length,
            claimMs: Math.round(t1 - t0),
            checkMs: Math.round(t2 - t1),
            settleMs: Math.round(performance.now() - t2),
          },
          'verification round done',
        );
      } catch (err) {
        failures++;
        this.log.warn({ err, failures }, 'verifier loop error; backing off');
        // Full jitter, as delivery does: relays that failed together do not retry together.
        await this.sleep(
          Math.random() *
            Math.min(this.cfg.backoffMaxMs, this.cfg.backoffBaseMs * 2 ** Math.min(failures, 20)),
        );
      }
    }
  }

  /** Metrics, and one log line per round for what needs attention (not one per record). */
  private count(results: Settlement[], due: Due[]) {
    const failed: Settlement[] = [];
    const mismatched: Settlement[] = [];
    for (const r of results) {
      if (!r.checked) continue;
      if (r.status === 'anchored') this.metrics.anchored++;
      else if (r.status === 'anchor_failed') {
        this.metrics.anchorFailed++;
        failed.push(r);
      } else if (r.status === 'mismatch') {
        this.metrics.mismatches++;
        mismatched.push(r);
      }
    }
    const sample = (list: Settlement[]) =>
      list
        .slice(0, 10)
        .map((r) => ({ id: r.id, recordId: due.find((d) => d.id === r.id)?.record_id, detail: r.detail }));
    if (mismatched.length > 0) {
      this.log.error({ count: mismatched.length, first: sample(mismatched) }, 'verification mismatch');
    }
    if (failed.length > 0) {
      this.log.warn(
        { count: failed.length, recheckMs: this.cfg.verifyRecheckMs, first: sample(failed) },
        'not anchored: marked anchor_failed, re-checked later',
      );
    }
  }

  /** Decides every due receipt: Certyo is asked per collection window and per batch where it can be. */
  async check(due: Due[]): Promise<Settlement[]> {
    const results: Settlement[] = [];
    const byCollection = new Map<string, Due[]>();
    for (const r of due) {
      if (r.anchor_status === 'anchored') {
        // Decided earlier (a receipt scheduled again by a release that re-checked rows a
        // user transaction held): write it back again. Skipped write-backs are certyo.write_due's now.
        results.push({ id: r.id, status: r.anchor_status, checked: false, next_check_ms: null });
        continue;
      }
      // A first mismatch comes back here, on the anchor_failed schedule, to be checked again.
      push(byCollection, r.collection, r);
    }
    const trees = new Map<string, Tree | null>();
    for (const [collection, receipts] of byCollection) {
      // The listing is not documented ([local]): when it is missing (404, 400, 405 or no
      // items), every record is asked about on its own (documented endpoints).
      const listed = this.queries.listingMissing()
        ? undefined
        : await this.queries.listWindow(collection, receipts);
      if (listed !== undefined && !(listed instanceof Map) && listed.kind !== 'missing') {
        for (const r of receipts) results.push(this.decider.unanswered(r, listed)); // outage or 429: all wait
        continue;
      }
      if (listed !== undefined && !(listed instanceof Map)) {
        this.queries.forgetListing();
        this.log.warn(
          { status: listed.status, forMs: NO_LISTING_MS },
          'Certyo has no record listing; verifying record by record (POST /api/v1/verify/payload or /verify/record)',
        );
      }
      for (const [i, r] of receipts.entries()) {
        let item: Item | undefined =
          listed instanceof Map ? listed.get(`${r.record_id}\u0000${r.id}`) : undefined;
        // Not in the listing (a service that ignores from/to), or no listing: ask about this
        // record, by the payload as delivered when it is kept (Certyo gave no hash; the
        // request's shape is documented), else by the hash Certyo returned.
        const answer = item
          ? undefined
          : r.payload !== null
            ? await this.queries.byPayload(collection, { ...r, payload: r.payload })
            : r.record_hash
              ? await this.queries.byHash(r.record_hash)
              : undefined;
        if (answer?.kind === 'retry' || answer?.kind === 'fatal') {
          // Rate-limited or down: this record and the rest of the round wait (Retry-After honoured).
          for (const rest of receipts.slice(i)) results.push(this.decider.unanswered(rest, answer));
          break;
        }
        if (answer?.kind === 'item') item = answer.item;
        if (!item && !r.record_hash && r.payload === null) {
          results.push(
            this.decider.notYet(
              r,
              'Certyo returned no record hash and no listing, and the payload was not kept (delivered before migration 12): re-anchor with certyo.backfill',
            ),
          );
          continue;
        }
        results.push(await this.decider.decide(r, item, trees));
      }
    }
    return results;
  }
}
