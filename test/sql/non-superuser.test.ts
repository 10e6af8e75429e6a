// Managed PostgreSQL: certyo installed by a role that is not a superuser and
// does not own the application's tables; the table owner enables tracking;
// capture, claim, acknowledgement and status write-back all work.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import postgres, { type Sql } from 'postgres';
import { migrate } from '../../relay/src/install.js';
import { adminUrl, withDatabase } from '../harness/db.js';

const name = `${process.env.CERTYO_TEST_PREFIX}_nosuper`;
let root: Sql;
let installer: Sql;
let app: Sql;

before(async () => {
  root = postgres(adminUrl(), { max: 1, onnotice: () => {} });
  await root.unsafe(`create database ${name}`);
  await root.unsafe(`grant create on database ${name} to certyo_test_owner`);
  const url = withDatabase(adminUrl(), name, 'certyo_test_owner');
  installer = postgres(url, { max: 1, onnotice: () => {} });
  await migrate(installer, url);
  await root.unsafe('grant certyo_admin to certyo_test_app');
  const db = postgres(withDatabase(adminUrl(), name), { max: 1, onnotice: () => {} });
  await db.unsafe('grant create on schema public to certyo_test_app');
  await db.end();
  app = postgres(withDatabase(adminUrl(), name, 'certyo_test_app'), { max: 1, onnotice: () => {} });
});
after(async () => {
  await app.end();
  await installer.end();
  await root.unsafe(`drop database ${name} with (force)`);
  await root.unsafe('revoke certyo_admin from certyo_test_app');
  await root.end();
});

test('installed by a non-superuser: the table owner enables tracking and the relay writes status back', async () => {
  const [owner] =
    await installer`select nspowner::regrole::text as o, (select rolsuper from pg_roles where rolname = current_user) as su
                                  from pg_namespace where nspname = 'certyo'`;
  assert.deepEqual(owner, { o: 'certyo_test_owner', su: false });
  await app`create table orders (id int primary key, total numeric not null)`;
  await app`select certyo.enable_tracking('orders')`;
  await app`insert into orders values (1, 10), (2, 20)`;
  const token = '00000000-0000-4000-8000-000000000001';
  // The installer plays the relay here (it holds every certyo function).
  const claimed = await installer`select id::text from certyo.claim(${token}, 10)`;
  assert.equal(claimed.length, 2);
  const ids = claimed.map((c) => c.id);
  const [acked] =
    await installer`select certyo.ack(${token}, ${ids}::bigint[], '{h1,h2}', '{}', '{}', '{}') as n`;
  assert.equal(acked!.n, 2);
  const rows =
    await app`select id, certyo_anchor_status as s, certyo_record_hash as h from orders order by id`;
  assert.deepEqual(
    rows.map((r) => [r.id, r.s, r.h]),
    [
      [1, 'submitted', 'h1'],
      [2, 'submitted', 'h2'],
    ],
  );
  // The grant is exactly the write-back columns: no other column can be changed by certyo's owner.
  await assert.rejects(installer`update public.orders set total = 0`, /permission denied/);
});
