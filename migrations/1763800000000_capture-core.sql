-- Up Migration
-- Capture core state: the tracked-table registry, the outbox, the per-change
-- version sequence and the waiting-relay registry. Functions, triggers, views
-- and grants live in sql/ and are re-applied after every migration run.

create schema if not exists certyo;

-- Roles are cluster-wide: create them only when missing. NOLOGIN group roles;
-- a DBA grants them to login roles (see README "Roles").
do $$
begin
    if not exists (select from pg_catalog.pg_roles where rolname = 'certyo_admin') then
        create role certyo_admin nologin;
    end if;
    if not exists (select from pg_catalog.pg_roles where rolname = 'certyo_relay') then
        create role certyo_relay nologin;
    end if;
    if not exists (select from pg_catalog.pg_roles where rolname = 'certyo_reader') then
        create role certyo_reader nologin;
    end if;
end
$$;

-- One row per table whose changes are captured. table_id (not the oid) is what
-- the outbox and the triggers carry, so a dropped table's pending changes keep
-- their collection name and an oid reused by a later table cannot inherit them.
create table certyo.tracked_table (
    table_id integer generated always as identity primary key,
    relid oid not null,
    schema_name name not null,
    table_name name not null,
    collection text not null,
    key_columns name[] not null,
    key_attnums smallint[] not null,
    operations text[] not null,
    exclude_columns name[] not null default '{}',
    active boolean not null default true,
    enabled_at timestamptz not null default pg_catalog.now(),
    disabled_at timestamptz
);
create unique index tracked_table_active_relid on certyo.tracked_table (relid) where active;

-- Versions: one value per change, stamped on the row (certyo_record_version)
-- and used as the outbox id. CACHE 1 is required: with a per-session cache a
-- later change to a record could draw a smaller number than an earlier one.
create sequence certyo.change_seq as bigint cache 1;

-- The outbox: one row per captured change, written inside the user's
-- transaction, deleted once delivered. payload is row_to_json() of the whole
-- row; status and excluded columns are removed when the relay claims it.
create table certyo.outbox (
    id bigint primary key,
    table_id integer not null,
    op "char" not null,
    record_id text not null,
    payload json not null,
    idempotency_key uuid not null default pg_catalog.gen_random_uuid(),
    changed_at timestamptz not null default pg_catalog.statement_timestamp(),
    lease_token uuid,
    lease_until timestamptz,
    attempts integer not null default 0,
    last_error text,
    parked_at timestamptz
);
-- Per-record order: the claim looks for an earlier change of the same record.
create index outbox_record on certyo.outbox (table_id, record_id, id);

-- A small, hot, insert-then-delete queue: vacuum it by row count, not by
-- fraction of a table that is nearly always small.
alter table certyo.outbox set (
    autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_threshold = 5000,
    autovacuum_vacuum_insert_scale_factor = 0,
    autovacuum_vacuum_insert_threshold = 5000,
    autovacuum_analyze_scale_factor = 0,
    autovacuum_analyze_threshold = 5000,
    autovacuum_vacuum_cost_delay = 0
);

-- Relay sessions waiting for work. While at least one row exists, writing
-- statements on tracked tables send a NOTIFY; while every relay is busy (no
-- rows) they send nothing, so NOTIFY's commit-time lock costs nothing.
create table certyo.waiting_relay (
    pid integer primary key,
    since timestamptz not null default pg_catalog.now()
);

-- Down Migration
drop schema certyo cascade;
