-- certyo.deletes_memo(part): what an insert's capture remembers after probing
-- for late deletes (certyo.deletes_seen): 1, the delete clock as it reads now;
-- 2, this client statement's start (settings change neither).
create or replace function certyo.deletes_memo(part integer)
returns text
language sql
-- volatile as pg_sequence_last_value is: otherwise never inlined (a call costs 100k instructions)
volatile
as $$
    select case part
        when 1 then coalesce(pg_catalog.pg_sequence_last_value('certyo.delete_clock'::pg_catalog.regclass), 0)::pg_catalog.text
        -- in binary (no numeric arithmetic, no setting changes it)
        else pg_catalog.encode(pg_catalog.timestamptz_send(pg_catalog.statement_timestamp()), 'hex')
    end
$$;

comment on function certyo.deletes_memo(integer) is
    'Capture: the delete clock (1) or the statement''s start (2), as certyo.deletes_seen keeps them.';

-- certyo.deletes_checked(): no delete was counted since this session last
-- probed for one, in another client statement than this one (see capture_rows'
-- insert branch). An inlinable SQL function: no SET clause, every name
-- qualified. Compared as text, so that a setting made by hand can never make
-- the write fail.
create or replace function certyo.deletes_checked()
returns boolean
language sql
volatile
as $$
    select coalesce(
        pg_catalog.split_part(pg_catalog.current_setting('certyo.deletes_seen', true), '/', 1)
            operator(pg_catalog.=) certyo.deletes_memo(1)
        and pg_catalog.split_part(pg_catalog.current_setting('certyo.deletes_seen', true), '/', 2)
            operator(pg_catalog.<>) certyo.deletes_memo(2),
        false)
$$;

comment on function certyo.deletes_checked() is
    'Capture: whether this session probed for late deletes since the last one was counted, in an earlier statement.';

-- certyo.capture_rows(): AFTER INSERT / AFTER DELETE ... FOR EACH STATEMENT
-- trigger on tracked (ordinary) tables, with transition tables (certyo_new,
-- certyo_old). Updates keep the row trigger certyo.capture(). Writes the
-- statement's changes to the outbox in one set-based INSERT, inside the
-- writing transaction: a 100-row statement costs one trigger call, not 100.
-- The payload is the whole row image; the claim removes certyo's status
-- columns (off the write path). Arguments: table_id, the table's kind, then
-- the key column names. Output settings are pinned (only when they do not
-- hold already, the zone first, as in certyo.capture) so the payload text
-- never depends on the writer's session (TimeZone, IntervalStyle, ...).
--   INSERT: every new row (its version was stamped by certyo.capture_before_insert;
--           stamped again when a delete of the same key committed before it).
--   DELETE: every old row, with a new version.
create or replace function certyo.capture_rows()
returns trigger
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    v_table integer := tg_argv[0]::integer;
    -- One key column (the usual key): its name; several: NULL, and tg_argv[2:] names them.
    v_key text := case when tg_nargs = 3 then tg_argv[2] end;
    v_waiting boolean;
    v_late boolean;
    v_zone text;
    v_saved text[];
    v_memo text;
    v_seqscan text;
begin
    -- PL/pgSQL initialises each expression it evaluates once per transaction
    -- (2k instructions for the simplest, several for a call; a tracked single-row
    -- insert is 400k). The usual insert evaluates six and one statement: the
    -- session renders as payloads are rendered, no delete was counted since it
    -- last probed for one (below), and what the slow paths left to undo. The two
    -- checks are asked apart, not as one condition: that cost 1.5k less, but each
    -- slow path (outside UTC, after a delete) then asked both twice. One statement
    -- writes the outbox and asks whether a relay waits (each statement more costs
    -- an executor start).
    if not certyo.output_pinned() then
        -- The zone first, as in certyo.capture (outside UTC usually the only one).
        v_zone := current_setting('TimeZone');
        perform set_config('TimeZone', 'UTC', true);
        if not certyo.output_pinned() then
            v_saved := certyo.pin_output();
        end if;
    end if;
    if tg_op = 'INSERT' then
        if not certyo.deletes_checked() then
            -- Each row's version was drawn before the unique index made it wait for a
            -- transaction deleting the same key, if one did. A delete of this table
            -- with a higher version, visible now, may be such a one: it committed
            -- first. Those rows are stamped again (restamp_inserts). Finding them takes
            -- two probes (the outbox and the receipts, a fifth of a single-row insert),
            -- made only when certyo.delete_clock moved since this session last looked:
            -- every delete advances it after drawing its version, so a delete with a
            -- higher version than any row here advanced it after those rows were drawn.
            -- The session remembers the clock as it read it before probing, and the
            -- statement that read it (certyo.deletes_seen: clock/statement start,
            -- certyo.deletes_memo). Only another client statement's memory counts
            -- (one the session ran before this one, whatever the clock says): a
            -- statement nested in this one (a function in a default, say) may
            -- have looked after some of these rows were drawn. READ COMMITTED sees the
            -- delete (a REPEATABLE READ snapshot does not, see README).
            v_memo := certyo.deletes_memo(1) || '/' || certyo.deletes_memo(2);
        end if;
        with ins as (
            -- In version order already: the BEFORE trigger drew them row by row.
            insert into certyo.outbox (id, table_id, op, record_id, payload)
            select x.v, v_table, 'I',
                   coalesce(case when v_key is not null then x.j ->> v_key else certyo.record_key(x.j, tg_argv[2:]) end,
                            certyo.record_key_slow(v_table, x.j)),
                   x.j
            -- offset 0: each row rendered once (flattened, the key and the
            -- payload would each render it, a sixth of a single-row insert)
            from (select n.certyo_record_version as v, row_to_json(n.*) as j from certyo_new n offset 0) as x
        )
        select exists (select from certyo.waiting_relay) into v_waiting;
        if v_memo is not null then
                -- Index probes only: a plan made while the outbox was empty must not scan
                -- it whole once it has grown. Set for this statement (it is planned
                -- inside), not as a SET clause, which would cost every call. The outbox
                -- probe walks its primary key above this statement's first version: only
                -- the changes drawn since (this statement's own and a few concurrent
                -- ones; an index of deletes cost every insert 3%, migration 14). The
                -- receipts keep theirs (receipt_delete: delivered deletes are many).
                v_seqscan := current_setting('enable_seqscan');
                perform set_config('enable_seqscan', 'off', true);
                select exists (select from certyo.outbox d
                               where d.op = 'D' and d.table_id = v_table and d.id > f.v)
                       or exists (select from certyo.receipt r
                                  where r.op = 'D' and r.table_id = v_table and r.id > f.v)
                from (select min(n.certyo_record_version) as v from certyo_new n) as f
                into v_late;
                perform set_config('enable_seqscan', v_seqscan, true);
                perform set_config('certyo.deletes_seen', v_memo, false);
                if v_late then
                    perform certyo.restamp_inserts(v_table, array_agg(o.id), array_agg(o.record_id))
                    from certyo.outbox o
                    where o.id in (select n.certyo_record_version from certyo_new n);
                end if;
        end if;
    else
        with ins as (
            insert into certyo.outbox (id, table_id, op, record_id, payload)
            select nextval('certyo.change_seq'), v_table, 'D',
                   coalesce(case when v_key is not null then x.j ->> v_key else certyo.record_key(x.j, tg_argv[2:]) end,
                            certyo.record_key_slow(v_table, x.j)),
                   x.j
            from (select row_to_json(o.*) as j from certyo_old o offset 0) as x
        )
        select exists (select from certyo.waiting_relay) into v_waiting;
        -- After the deletes' versions are drawn (see the insert branch).
        perform nextval('certyo.delete_clock');
    end if;
    if v_zone is not null then
        if v_saved is not null then
            perform certyo.unpin_output(v_saved);
        end if;
        perform set_config('TimeZone', v_zone, true);
    end if;
    -- What certyo.wake() does for updates: a NOTIFY only while a relay waits.
    if v_waiting then
        perform certyo.wake_relays();
    end if;
    return null;
end
$$;

comment on function certyo.capture_rows() is
    'AFTER statement trigger of tracked tables: writes the statement''s changes to certyo.outbox in the same transaction.';
