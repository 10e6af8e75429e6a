-- Write-backs a user's transaction made us skip. certyo.write_status never
-- waits for a row a user holds: it skips it. If that transaction then rolls
-- back, the row keeps its version and would keep its old status ('pending'
-- after an acknowledgement) although Certyo has the version. So whoever calls
-- write_status hands what it did not write to certyo.mark_write_due, which
-- keeps, on their receipts, a time to write them again; certyo.write_due
-- (the relay, every poll interval) writes each such receipt's status into its
-- row. Rows with a newer version or gone need nothing; a row flagged
-- 'tampered' keeps its flag.

-- certyo.mark_write_due(table_id, record_ids, versions, written): of the
-- versions a write-back did not write (not in written), those whose row is
-- still at that version get their receipt's status written again in a second.
create or replace function certyo.mark_write_due(table_id integer, record_ids text[], versions bigint[], written bigint[])
returns void
language plpgsql
set search_path = pg_catalog, pg_temp
set enable_seqscan = off
as $$
declare
    v_rel regclass;
    v_match text;
    v_held bigint[];
begin
    if cardinality(written) >= cardinality(versions) then
        return;
    end if;
    select m.rel, m.predicate into v_rel, v_match from certyo.key_match(mark_write_due.table_id, 'u.k') as m;
    if v_match is null then
        return;
    end if;
    -- A plain read: it does not wait for the row's lock.
    execute format(
        'select coalesce(array_agg(u.v), ''{}'') from unnest($1, $2) as u(k, v)'
        ' where u.v <> all ($3) and exists (select from %1$s t where %2$s and t.certyo_record_version = u.v'
        '   and t.certyo_anchor_status is distinct from ''tampered'')',
        v_rel, v_match)
    into v_held
    using record_ids, versions, written;
    update certyo.receipt c
    set write_due_at = now() + interval '1 second'
    where c.id = any (v_held);
end
$$;

comment on function certyo.mark_write_due(integer, text[], bigint[], bigint[]) is
    'Write-back: remember versions skipped because a user transaction held their row, to write them again.';

-- certyo.write_due(max_rows): write the status of receipts whose write-back
-- is due into their rows (up to max_rows per table); those still held are due
-- again a second later. Returns the rows written.
create or replace function certyo.write_due(max_rows integer default 1000)
returns integer
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
set jit = off
-- Run every poll interval: by index, never a read of every receipt ever kept.
set enable_seqscan = off
set enable_hashjoin = off
set enable_mergejoin = off
as $$
declare
    v_table integer;
    v_ids bigint[];
    v_keys text[];
    v_written bigint[];
    v_count integer := 0;
    v_status text[];
    v_hashes text[];
    v_verified timestamptz[];
begin
    -- Lost in a crash, a write is only due again (the receipts keep the status).
    perform pg_catalog.set_config('synchronous_commit', 'off', true);
    for v_table in select distinct c.table_id from certyo.receipt c where c.write_due_at <= now() loop
        with due as (
            select c.id from certyo.receipt c
            where c.write_due_at <= now() and c.table_id = v_table
            order by c.id limit max_rows
            for update skip locked
        ), cleared as (
            update certyo.receipt c set write_due_at = null
            from due where c.id = due.id
            returning c.id, c.record_id, c.anchor_status, c.record_hash, c.verified_at
        )
        select array_agg(x.id), array_agg(x.record_id), array_agg(x.anchor_status), array_agg(x.record_hash),
               array_agg(x.verified_at)
        into v_ids, v_keys, v_status, v_hashes, v_verified
        from cleared x;
        continue when v_ids is null;
        v_written := certyo.write_status(v_table, v_keys, v_ids, v_status, v_hashes, v_verified);
        v_count := v_count + cardinality(v_written);
        perform certyo.mark_write_due(v_table, v_keys, v_ids, v_written);
    end loop;
    return v_count;
end
$$;

comment on function certyo.write_due(integer) is
    'Relay: write back statuses that were skipped because a user transaction held the row.';
