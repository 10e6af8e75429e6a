-- certyo.change_key(installation, id, changed_at): the idempotency key of a
-- change captured without one (migration 14): an MD5 of this installation's
-- random id (certyo.installation), the change's id and its changed_at (their
-- binary forms: no session setting can change them), as a UUID. The same on
-- every claim and in its receipt; unique per change, across installations too,
-- and a change id reused after certyo.change_seq was set back gets a new key
-- (its changed_at differs). SQL and immutable, so the claim inlines it; every
-- name is schema-qualified (a SET search_path clause would stop the inlining).
create or replace function certyo.change_key(installation uuid, id bigint, changed_at timestamptz)
returns uuid
language sql
immutable strict parallel safe
as $$
    select pg_catalog.md5(pg_catalog.uuid_send(installation)
                          operator(pg_catalog.||) pg_catalog.int8send(id)
                          operator(pg_catalog.||) pg_catalog.timestamptz_send(changed_at))::pg_catalog.uuid
$$;

comment on function certyo.change_key(uuid, bigint, timestamptz) is
    'Idempotency key of a change captured without a stored one: derived from the installation id, change id and time.';
