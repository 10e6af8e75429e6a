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
