// Bench: how many records per second the local Certyo server accepts in bulk
// requests of 1000 typical rows, anchoring on (flush at 1000, anchor 10 ms).
// Run: npm run build && node dist/bench/local-certyo.js
import { request } from 'undici';
import { startLocalCertyo } from '../relay/src/local-certyo/server.js';

const KEY = 'certyo_sk_test_bench';
const srv = await startLocalCertyo({
  keys: { [KEY]: 'bench' },
  flushRecords: 1000,
  flushMs: 1000,
  anchorMs: 10,
});
let seq = 0;
const body = () => {
  const records = Array.from({ length: 1000 }, () => {
    const id = ++seq;
    return `{"tenantId":"bench","database":"shop","collection":"public.products","recordId":"${id}","recordVersion":"${id}","operationType":"insert","recordPayload":{"id":${id},"name":"Widget ${id}","price":19.99,"qty":3,"created":"2026-11-22T04:31:07.682022+00:00","attrs":{"color":"red","tags":["a","b"]},"big":9007199254740993},"sourceTimestamp":"2026-11-22T04:31:07.682Z","idempotencyKey":"k-${id}"}`;
  });
  return `{"tenantId":"bench","records":[${records.join(',')}]}`;
};
const rounds = 3;
// --requests N: bulk requests per round (default 40)
const perRound = Number(process.argv[process.argv.indexOf('--requests') + 1] ?? 40) || 40;
const rates: number[] = [];
for (let r = 0; r < rounds; r++) {
  const bodies = Array.from({ length: perRound }, body);
  const t0 = performance.now();
  for (const b of bodies) {
    const res = await request(`${srv.url}/api/v1/records/bulk`, {
      method: 'POST',
      headers: { 'x-api-key': KEY, 'content-type': 'application/json' },
      body: b,
    });
    await res.body.text();
    if (res.statusCode !== 202) throw new Error(`status ${res.statusCode}`);
  }
  rates.push((perRound * 1000) / ((performance.now() - t0) / 1000));
}
rates.sort((a, b) => a - b);
console.log(
  JSON.stringify({
    bench: 'local-certyo bulk ingest',
    recordsPerSecond: { median: Math.round(rates[1]!), runs: rates.map(Math.round) },
    requestsPerRound: perRound,
    batch: 1000,
  }),
);
await srv.close();
