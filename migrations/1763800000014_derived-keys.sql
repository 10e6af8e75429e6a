-- Up Migration
-- Two costs every captured change paid (bench/instructions.sh, a single-row
-- INSERT on PostgreSQL 15: 257k instructions):
-- 1. A random UUID drawn for its idempotency key (9.5k). Keys are now derived
--    when a change leaves the outbox (certyo.change_key: the installation's
--    random id below, the change's id and its changed_at), the same on every
--    claim of it; changes captured before keep the key they have.
-- 2. The partial index outbox_delete (7.5k: every insert into the outbox
--    evaluates its predicate). The probes that used it (capture_rows,
--    restamp_inserts) look for a delete with a higher id than a version this
--    statement drew: the primary key's range above it holds only the changes
--    drawn since, a few under any load.
create table certyo.installation (
    id uuid not null default pg_catalog.gen_random_uuid(),
    one_row boolean primary key default true check (one_row)
);
comment on table certyo.installation is
    'One row: this installation''s random id, which makes its idempotency keys its own (certyo.change_key).';
insert into certyo.installation default values;
alter table certyo.outbox alter column idempotency_key drop not null, alter column idempotency_key drop default;
drop index certyo.outbox_delete;

-- Down Migration
create index outbox_delete on certyo.outbox (table_id, id) where op = 'D';
update certyo.outbox o set idempotency_key = certyo.change_key(i.id, o.id, o.changed_at)
from certyo.installation i where o.idempotency_key is null;
alter table certyo.outbox alter column idempotency_key set default pg_catalog.gen_random_uuid(),
    alter column idempotency_key set not null;
drop function certyo.change_key(uuid, bigint, timestamptz);
drop table certyo.installation;
