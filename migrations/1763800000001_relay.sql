-- Up Migration
-- Relay state: receipts of delivered changes, and an index over the few outbox
-- rows that are leased or parked (writers never touch it: new rows have
-- neither), which the claim uses to keep later changes of a record waiting.

create table certyo.receipt (
    id bigint primary key,
    table_id integer not null,
    op "char" not null,
    record_id text not null,
    idempotency_key uuid not null,
    changed_at timestamptz not null,
    delivered_at timestamptz not null default pg_catalog.now(),
    record_hash text,
    accepted_at timestamptz,
    snapshot_id text
);
create index receipt_record on certyo.receipt (table_id, record_id, id);

create index outbox_held on certyo.outbox (table_id, record_id)
    where lease_token is not null or parked_at is not null;

-- Down Migration
drop index certyo.outbox_held;
drop table certyo.receipt;
