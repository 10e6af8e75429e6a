-- certyo.write_status(table_id, record_ids, versions, statuses, hashes, verified_ats):
-- write status columns back into a tracked table, only on rows still at the
-- given version (a newer version keeps its own status), never waiting more
-- than a millisecond for a row a user transaction holds (then the rows held
-- are skipped: such a row is getting a newer version anyway). Runs as
-- certyo's owner and turns certyo.status_write on, so the
-- BEFORE trigger's WHEN clause skips it: no call per row (7 us each), no
-- version, nothing captured. A row the tamper sweep flagged
-- 'tampered' keeps that status until its next real change. Returns the
-- versions written.
drop function if exists certyo.write_status(integer, text[], bigint[], text[], text[], timestamptz[]);
create or replace function certyo.write_status(
    table_id integer, record_ids text[], versions bigint[], statuses text[], hashes text[], verified_ats timestamptz[]
)
returns bigint[]
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
-- Short statements: JIT compilation would cost more than it saves (tens of ms).
set jit = off
set timezone = 'UTC'
set intervalstyle = 'postgres'
set extra_float_digits = 1
set bytea_output = 'hex'
-- A few rows by key: always index lookups, never a scan of the whole table.
set enable_seqscan = off
set enable_hashjoin = off
set enable_mergejoin = off
as $$
declare
    v_rel regclass;
    v_match text;
    v_written bigint[];
    v_prev text;
    v_lock_timeout text;
    -- The rows to write, and which rows the write leaves alone.
    v_rows constant text := 'unnest($1, $2, $3, $4, $5) as u(k, v, s, h, va)';
    v_writable constant text := '(t.certyo_anchor_status is distinct from ''tampered'' or u.s = ''tampered'')';
    -- The update both statements below end with, over rows u from %3$s (format
    -- arguments: table, key predicate, source, v_writable). An empty hash is a
    -- backfill's mark (see backfill_step): cleared.
    v_update constant text :=
        ' written as ('
        ' update %1$s t set certyo_anchor_status = u.s,'
        '   certyo_record_hash = coalesce(u.h, nullif(t.certyo_record_hash, '''')),'
        '   certyo_verified_at = coalesce(u.va, t.certyo_verified_at)'
        ' from %3$s where %2$s and t.certyo_record_version = u.v and %4$s'
        ' returning t.certyo_record_version)'
        ' select coalesce(array_agg(certyo_record_version), ''{}'') from written';
begin
    select m.rel, m.predicate into v_rel, v_match from certyo.key_match(write_status.table_id, 'u.k') as m;
    if v_match is null then
        return '{}'; -- the table is gone (or its key): receipts keep what was delivered
    end if;
    -- Read by the certyo_before trigger's WHEN clause (see enable_tracking), for this
    -- UPDATE only: put back below, and an error rolls it back. (As a SET clause of the
    -- function it would be refused to a non-superuser installer.)
    v_prev := pg_catalog.current_setting('certyo.status_write', true);
    perform pg_catalog.set_config('certyo.status_write', 'on', true);
    v_lock_timeout := pg_catalog.current_setting('lock_timeout');
    begin
        -- Rows are seldom locked by a user: update them directly, but give up
        -- after 1 ms of waiting for a lock (the subtransaction then undoes it all).
        -- Locking them first with SKIP LOCKED costs 10-20% more on every batch.
        perform pg_catalog.set_config('lock_timeout', '1ms', true);
        execute format('with' || v_update, v_rel, v_match, v_rows, v_writable)
        into v_written
        using record_ids, versions, statuses, hashes, verified_ats;
        perform pg_catalog.set_config('lock_timeout', v_lock_timeout, true);
    exception when lock_not_available then
        -- Some row is held (or the table is, by DDL): write the others, skipping
        -- held rows. The settings set in the block were undone with it.
        execute format(
            'with u as (select * from ' || v_rows || '),'
            ' target as (select u.* from %1$s t join u on %2$s and t.certyo_record_version = u.v'
            '            where %4$s for no key update of t skip locked),' || v_update,
            v_rel, v_match, 'target u', v_writable)
        into v_written
        using record_ids, versions, statuses, hashes, verified_ats;
    end;
    perform pg_catalog.set_config('certyo.status_write', coalesce(v_prev, ''), true);
    return v_written;
end
$$;
