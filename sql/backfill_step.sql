-- The relay's backfill step; why it is race-free: see backfill.sql.
-- certyo.backfill_step(max_rows, paced): one chunk of the oldest unfinished
-- backfill (another relay's chunk in progress is skipped, not waited for).
-- States: 'stamped' (rows_stamped rows sent to the outbox), 'finished',
-- 'waiting' (paced: the chunk before the last one is not leased by a claim
-- yet, so live changes are not queued behind more than about two chunks),
-- 'busy' (a row was locked for 10 ms: retry, with a smaller chunk), 'none'
-- (nothing to do).
create or replace function certyo.backfill_step(max_rows integer default 1000, paced boolean default true)
returns table (table_name text, state text, rows_stamped integer, rows_done bigint)
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
-- Keys are kept as text between steps: rendered the same way every time.
set timezone = 'UTC'
set datestyle = 'ISO, YMD'
set intervalstyle = 'postgres'
set extra_float_digits = 1
set bytea_output = 'hex'
set jit = off
-- A chunk by key: index scans and nested loops, never a scan of the whole table.
set enable_seqscan = off
set enable_hashjoin = off
set enable_mergejoin = off
as $$
declare
    v_b certyo.backfill;
    v_t certyo.tracked_table;
    v_name text;
    v_keys text;       -- t.k1, t.k2
    v_desc text;       -- p.k1 desc, p.k2 desc
    v_join text;       -- t.k1 = p.k1 and ...
    v_after text;      -- t.k1 > ($1[1])::type (a row comparison for several columns)
    v_texts text;      -- p.k1::text, ...
    v_by_trigger boolean;
    v_marked boolean;
    v_found integer;
    v_last text[];
    v_picked integer;
    v_stamped integer;
    v_max bigint;
    v_versions bigint[];
    v_upto bigint;
    v_lock_timeout text := pg_catalog.current_setting('lock_timeout');
    v_status_write text := pg_catalog.current_setting('certyo.status_write', true);
    -- Rows to stamp. A row the tamper sweep flagged is never re-sent: its content
    -- would be anchored as if it were a change (see certyo.backfill).
    v_pending constant text := '(t.certyo_record_version is null or t.certyo_record_version < $2)'
                               ' and t.certyo_anchor_status is distinct from ''tampered''';
begin
    select * into v_b from certyo.backfill b
    where b.finished_at is null
    order by b.requested_at, b.table_id
    limit 1
    for update skip locked;
    if not found then
        return query select null::text, 'none'::text, 0, 0::bigint;
        return;
    end if;
    select * into v_t from certyo.tracked_table t where t.table_id = v_b.table_id;
    v_name := format('%I.%I', v_t.schema_name, v_t.table_name);
    if not coalesce(v_t.active, false) then
        update certyo.backfill b set finished_at = now(), outcome = 'tracking disabled' where b.table_id = v_b.table_id;
        return query select v_name, 'finished'::text, 0, v_b.rows_done;
        return;
    end if;
    if paced and v_b.prior_version is not null then
        select s.last_value into v_upto from certyo.leased_upto s;
        if v_upto < v_b.prior_version then
            return query select v_name, 'waiting'::text, 0, v_b.rows_done;
            return;
        end if;
    end if;
    select string_agg(format('t.%I', a.attname), ', ' order by k.n),
           string_agg(format('p.%I desc', a.attname), ', ' order by k.n),
           string_agg(format('t.%1$I = p.%1$I', a.attname), ' and ' order by k.n),
           string_agg(format('($1[%s])::%s', k.n, format_type(a.atttypid, a.atttypmod)), ', ' order by k.n),
           string_agg(format('p.%I::text', a.attname), ', ' order by k.n),
           count(a.attnum)
    into v_keys, v_desc, v_join, v_after, v_texts, v_found
    from unnest(v_t.key_attnums) with ordinality as k(attnum, n)
    left join pg_attribute a on a.attrelid = v_t.relid and a.attnum = k.attnum and not a.attisdropped;
    if v_found <> cardinality(v_t.key_attnums) then
        update certyo.backfill b set finished_at = now(), outcome = 'key column dropped' where b.table_id = v_b.table_id;
        return query select v_name, 'finished'::text, 0, v_b.rows_done;
        return;
    end if;
    -- How the table's update trigger tells a stamp (see enable_tracking): by the empty
    -- certyo_record_hash the stamp leaves (marked); by certyo.backfill naming the table
    -- (tables tracked before); or not at all (tracked before that: it captures the stamp).
    select d.def like '%new.certyo_record_hash IS NULL%',
           d.def not like '%new.certyo_record_hash IS NULL%' and d.def not like '%certyo.backfill%'
    into v_marked, v_by_trigger
    from pg_trigger g cross join lateral (select pg_get_triggerdef(g.oid) as def) as d
    where g.tgrelid = v_t.relid and g.tgname = 'certyo_capture_update';
    v_marked := coalesce(v_marked, false);
    v_by_trigger := coalesce(v_by_trigger, false);
    v_after := case when v_b.after_key is null then ''
                    when v_found = 1 then format('%s > %s and ', v_keys, v_after)
                    else format('(%s) > (%s) and ', v_keys, v_after) end;
    <<attempt>>
    loop
        begin
            perform pg_catalog.set_config('lock_timeout', '10ms', true);
            -- The BEFORE trigger lets the stamp through as it lets a status write-back
            -- through, and the update trigger skips it by its mark (or, on tables tracked
            -- before, while certyo.backfill names the table; an older trigger captures
            -- it, labelled 'B'). The relay's write-back clears the mark.
            perform pg_catalog.set_config('certyo.status_write', 'on', true);
            perform pg_catalog.set_config('certyo.backfill', v_t.table_id::text, true);
            execute format(
                'with picked as ('
                '  select %2$s from %1$s t where %3$s %4$s order by %2$s limit $3'
                '), stamped as ('
                '  update %1$s t set certyo_record_version = nextval(''certyo.change_seq''),'
                '    certyo_anchor_status = ''pending'', certyo_record_hash = %10$s, certyo_verified_at = null'
                '  from picked p where %5$s and %4$s'
                '  returning t.certyo_record_version as v%6$s'
                ')%7$s'
                ' select (select array[%8$s] from picked p order by %9$s limit 1), (select count(*)::int from picked),'
                '        (select count(*)::int from stamped), (select max(s.v) from stamped s),'
                '        (select array_agg(s.v) from stamped s)',
                v_t.relid::regclass, v_keys, v_after, v_pending, v_join,
                -- The step writes the outbox itself, unless the table's update trigger
                -- captures the stamp (tracking enabled by an earlier release: its WHEN clause
                -- does not skip stamps; relabelled 'B' below).
                case when v_by_trigger then '' else ', row_to_json(t.*) as j' end,
                case when v_by_trigger then ''
                     else format(', captured as (insert into certyo.outbox (id, table_id, op, record_id, payload)'
                                 ' select s.v, %s, ''B'', coalesce(%s, certyo.record_key_slow(%1$s, s.j)), s.j'
                                 ' from stamped s)', v_t.table_id,
                                 -- The record id as capture renders it (one key column: no function call).
                                 case when cardinality(v_t.key_columns) = 1 then format('s.j ->> %L', v_t.key_columns[1])
                                      else format('certyo.record_key(s.j, %L)', v_t.key_columns::text[]) end) end,
                v_texts, v_desc,
                case when v_marked and not v_by_trigger then '''''' else 'null' end)
            into v_last, v_picked, v_stamped, v_max, v_versions
            using v_b.after_key, v_b.below_version, max_rows;
            if v_by_trigger then
                -- The table's update trigger captured the stamp, as an update: it is a
                -- backfilled row ('B', sent as an upsert).
                update certyo.outbox o set op = 'B' where o.id = any (v_versions) and o.op = 'U';
            end if;
            perform pg_catalog.set_config('certyo.backfill', '', true);
            perform pg_catalog.set_config('certyo.status_write', coalesce(v_status_write, ''), true);
            perform pg_catalog.set_config('lock_timeout', v_lock_timeout, true);
            exit attempt;
        exception when unique_violation then
            -- The table's own BEFORE UPDATE trigger changed a data column of a stamped row
            -- (an updated_at touch), so the update trigger captured the stamp as well, under
            -- the same version. Stamp this chunk again through the trigger alone.
            if v_by_trigger then
                raise;
            end if;
            v_by_trigger := true;
        when lock_not_available or deadlock_detected then
            -- A row is held by a user's transaction: nothing was stamped (the block is
            -- undone, its settings too). The relay retries with a smaller chunk.
            return query select v_name, 'busy'::text, 0, v_b.rows_done;
            return;
        end;
    end loop;
    if v_picked = 0 then
        update certyo.backfill b set finished_at = now(), last_step_at = now(), outcome = 'finished',
                                     started_at = coalesce(b.started_at, now())
        where b.table_id = v_b.table_id;
        return query select v_name, 'finished'::text, 0, v_b.rows_done;
        return;
    end if;
    update certyo.backfill b
    set after_key = v_last,
        prior_version = case when v_max is null then b.prior_version else b.last_version end,
        last_version = coalesce(v_max, b.last_version),
        rows_done = b.rows_done + v_stamped,
        chunks_done = b.chunks_done + 1,
        started_at = coalesce(b.started_at, now()),
        last_step_at = now()
    where b.table_id = v_b.table_id;
    return query select v_name, 'stamped'::text, v_stamped, v_b.rows_done + v_stamped;
end
$$;

comment on function certyo.backfill_step(integer, boolean) is
    'Relay: send one chunk of a scheduled backfill to the outbox (short transaction, resumable).';
