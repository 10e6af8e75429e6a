-- Backfill: send the rows a tracked table already holds, as they are.
--
-- certyo.backfill(target) only schedules (a row in certyo.backfill) and
-- returns at once; the relay does the work with certyo.backfill_step(), one
-- chunk of rows in key order per short transaction. A step stamps each row of
-- its chunk with a new version, exactly like a status write-back that also
-- sets certyo_record_version and resets the status to 'pending', and writes
-- the stamped row images to the outbox in the same statement (labelled 'B',
-- sent as operationType "upsert"; the update trigger lets the stamp pass, see
-- enable_tracking). From there they are delivered, written back and verified
-- like any other change.
--
-- Why this is race-free with live writes (each record's changes reach Certyo
-- in version order; the last one delivered is the row as it is):
--   * A step touches only rows whose version is NULL (never captured) or below
--     the backfill's below_version, drawn when it was asked for. Every change
--     captured later has a higher version: those rows need no backfill, and
--     the step re-checks the condition on the row's latest version after any
--     wait for its lock (PostgreSQL re-evaluates an UPDATE's WHERE clause on
--     the updated row).
--   * The stamp is an UPDATE: it takes the row's lock. A user's UPDATE or
--     DELETE that holds the row first makes the step wait (at most 10 ms, then
--     the step gives up and is retried); once it commits the row carries a
--     newer version and is skipped (updated), or is gone (deleted); if it
--     rolled back the row is stamped as it was. A user's change that comes
--     after the stamp waits for the step's commit, and draws its version after
--     taking the lock (BEFORE row trigger for updates, AFTER statement trigger
--     for deletes): higher than the stamp, so delivered after it. A deleted
--     row is never stamped again: there is no row.
--   * A row inserted during the backfill draws a version above below_version:
--     captured as an insert, never stamped, whichever chunk its key falls in.
--   * The key of the last row of each chunk is committed with the chunk
--     (after_key): a killed relay or a restarted server resumes after the
--     last committed chunk, and a chunk that did not commit stamped nothing.
--     Each row is stamped once: a row stamped has a version >= below_version.
--   * The stamp's image is the row as the stamp leaves it (its RETURNING), so
--     the change written to the outbox is exactly the stamped version.
--   * The step waits for user locks for 10 ms only, and a user's transaction
--     waits for a step's row locks for at most one chunk: deadlock detection
--     (deadlock_timeout, 1 s) never fires in the user's session on our account.

-- certyo.backfill(target): schedule a backfill of every row target holds now.
-- Rows delivered before are sent again as they are now: one edited while
-- capture was bypassed would be anchored with its edit, so run the tamper
-- sweep first; rows it flagged 'tampered' are skipped. Returns the estimated
-- number of rows. A backfill of target that is still
-- running is left to go on (a notice says so). SECURITY INVOKER: the caller
-- must own the table (it may be analyzed and granted) and hold certyo_admin.
create or replace function certyo.backfill(target regclass)
returns bigint
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
declare
    v_t record;
    v_certyo_owner oid;
    v_estimate bigint;
    v_scheduled boolean;
begin
    select t.table_id, t.key_attnums, t.key_columns, t.operations, c.relowner
    into v_t
    from certyo.tracked_table t
    join pg_class c on c.oid = t.relid
    where t.relid = target and t.active;
    if not found then
        raise exception '% is not tracked', target
            using errcode = '22023',
                  hint = format('select certyo.enable_tracking(%L, backfill => true);', target::text);
    end if;
    if not pg_has_role(current_user, v_t.relowner, 'USAGE') then
        raise exception 'must be the owner of % to backfill it', target using errcode = '42501';
    end if;
    -- Chunks are read in key order, each from where the last one ended: without an
    -- index on the key every chunk would read the whole table.
    if not exists (
        select from pg_index i
        where i.indrelid = target and i.indisvalid
            and (i.indkey::smallint[])[0:cardinality(v_t.key_attnums) - 1] = v_t.key_attnums
            and exists (select from pg_class ic join pg_am am on am.oid = ic.relam
                        where ic.oid = i.indexrelid and am.amname = 'btree')
    ) then
        raise exception 'backfill of % needs a btree index on its key columns %', target, v_t.key_columns
            using errcode = '55000',
                  hint = format('create index on %s (%s);', target,
                                (select string_agg(quote_ident(k), ', ') from unnest(v_t.key_columns) as k));
    end if;
    -- The stamp writes the row's version as certyo's owner (see enable_tracking's grant).
    select n.nspowner into v_certyo_owner from pg_namespace n where n.nspname = 'certyo';
    -- The step reads the stamped rows whole (their images go to the outbox).
    if v_certyo_owner <> v_t.relowner and not (select r.rolsuper from pg_roles r where r.oid = v_certyo_owner) then
        execute format('grant select, update (certyo_record_version) on %s to %I', target, v_certyo_owner::regrole::name);
    end if;
    -- Rows to expect, for progress: the planner's count (analyzed first if it has none).
    for i in 1 .. 2 loop
        select coalesce(sum(greatest(c.reltuples, 0)), 0)::bigint
        into v_estimate
        from pg_class c
        where c.oid in (select target union select p.relid from pg_partition_tree(target) p where p.isleaf)
            and c.relkind = 'r';
        exit when v_estimate > 0 or i = 2;
        execute format('analyze %s', target);
    end loop;
    insert into certyo.backfill as b (table_id, below_version, rows_estimated)
    values (v_t.table_id, nextval('certyo.change_seq'), v_estimate)
    on conflict (table_id) do update
        set below_version = excluded.below_version, after_key = null, last_version = null, prior_version = null,
            rows_estimated = excluded.rows_estimated, rows_done = 0, chunks_done = 0,
            requested_at = now(), started_at = null, last_step_at = null, finished_at = null, outcome = null
        where b.finished_at is not null
    returning true into v_scheduled;
    if v_scheduled is null then
        raise notice 'a backfill of % is already running; it goes on', target;
    end if;
    -- A relay waiting for work starts at once.
    perform pg_notify('certyo_wakeup', 'backfill');
    return v_estimate;
end
$$;

comment on function certyo.backfill(regclass) is
    'Schedule sending every row a tracked table holds now (done by the relay, in chunks). Returns the estimated rows.';

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
    v_found integer;
    v_last text[];
    v_picked integer;
    v_stamped integer;
    v_max bigint;
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
    v_by_trigger := exists (select from pg_trigger g
                            where g.tgrelid = v_t.relid and g.tgname = 'certyo_capture_update'
                                and pg_get_triggerdef(g.oid) not like '%certyo.backfill%');
    v_after := case when v_b.after_key is null then ''
                    when v_found = 1 then format('%s > %s and ', v_keys, v_after)
                    else format('(%s) > (%s) and ', v_keys, v_after) end;
    <<attempt>>
    loop
        begin
            perform pg_catalog.set_config('lock_timeout', '10ms', true);
            -- The BEFORE trigger's WHEN clause skips the stamp as it skips a status
            -- write-back, and so does the update trigger's while certyo.backfill names
            -- the table (see enable_tracking; an older trigger captures it, labelled 'B').
            perform pg_catalog.set_config('certyo.status_write', 'on', true);
            perform pg_catalog.set_config('certyo.backfill', v_t.table_id::text, true);
            execute format(
                'with picked as ('
                '  select %2$s from %1$s t where %3$s %4$s order by %2$s limit $3'
                '), stamped as ('
                '  update %1$s t set certyo_record_version = nextval(''certyo.change_seq''),'
                '    certyo_anchor_status = ''pending'', certyo_record_hash = null, certyo_verified_at = null'
                '  from picked p where %5$s and %4$s'
                '  returning t.certyo_record_version as v%6$s'
                ')%7$s'
                ' select (select array[%8$s] from picked p order by %9$s limit 1), (select count(*)::int from picked),'
                '        (select count(*)::int from stamped), (select max(s.v) from stamped s)',
                v_t.relid::regclass, v_keys, v_after, v_pending, v_join,
                -- The step writes the outbox itself, unless the table's update trigger
                -- captures the stamp (tracking enabled by an earlier release: its WHEN clause
                -- does not skip stamps; capture() labels them 'B').
                case when v_by_trigger then '' else ', row_to_json(t.*) as j' end,
                case when v_by_trigger then ''
                     else format(', captured as (insert into certyo.outbox (id, table_id, op, record_id, payload)'
                                 ' select s.v, %s, ''B'', coalesce(%s, certyo.record_key_slow(%1$s, s.j)), s.j'
                                 ' from stamped s)', v_t.table_id,
                                 -- The record id as capture renders it (one key column: no function call).
                                 case when cardinality(v_t.key_columns) = 1 then format('s.j ->> %L', v_t.key_columns[1])
                                      else format('certyo.record_key(s.j, %L)', v_t.key_columns::text[]) end) end,
                v_texts, v_desc)
            into v_last, v_picked, v_stamped, v_max
            using v_b.after_key, v_b.below_version, max_rows;
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

-- certyo.backfills: each table's latest backfill and its progress.
create or replace view certyo.backfills as
select
    format('%I.%I', t.schema_name, t.table_name) as table_name,
    case when b.finished_at is null then case when b.started_at is null then 'scheduled' else 'running' end
         when b.outcome = 'finished' then 'finished'
         else 'stopped' end as state,
    b.rows_done,
    -- The planner's estimate until it is done (never below what is done).
    case when b.finished_at is not null then b.rows_done else greatest(b.rows_estimated, b.rows_done) end as rows_total,
    b.chunks_done,
    (b.rows_done / nullif(extract(epoch from coalesce(b.finished_at, b.last_step_at) - b.started_at), 0))::float8
        as rows_per_second,
    b.requested_at,
    b.started_at,
    b.last_step_at,
    b.finished_at,
    nullif(b.outcome, 'finished') as stopped_because,
    t.table_id
from certyo.backfill b
join certyo.tracked_table t on t.table_id = b.table_id;

comment on view certyo.backfills is
    'Per table: its latest backfill, state (scheduled, running, finished, stopped), rows done of the total, rate.';
