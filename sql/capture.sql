-- certyo.capture(): AFTER row trigger on tracked tables; writes one outbox row
-- per changed row inside the writing transaction and wakes a waiting relay. The payload is the whole
-- row image; the claim removes certyo's status columns (off the write path). Arguments: table_id, the
-- table's kind ('table' or 'partitioned'), then the key column names. The row is rendered under the
-- payload settings (pinned only when they do not hold already) so the payload text never depends
-- on the writer's session (TimeZone, IntervalStyle, bytea_output, ...).
create or replace function certyo.capture()
returns trigger
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    v_payload json;
    v_version bigint;
    v_key text;
    v_waiting boolean;
    v_zone text;
    v_saved text[];
begin
    -- NEW is null for a DELETE.
    if certyo.output_pinned() then
        v_payload := row_to_json(coalesce(new, old));
    else
        -- The zone first: outside UTC it is usually the only setting that differs, and
        -- each one set and set back costs about 10k instructions (certyo.pin_output
        -- sets all five). Cheaper than a function with SET clauses (60k a call).
        v_zone := current_setting('TimeZone');
        perform set_config('TimeZone', 'UTC', true);
        if not certyo.output_pinned() then
            v_saved := certyo.pin_output();
        end if;
        v_payload := row_to_json(coalesce(new, old));
        if v_saved is not null then
            perform certyo.unpin_output(v_saved);
        end if;
        perform set_config('TimeZone', v_zone, true);
    end if;
    -- The usual call, an UPDATE of a table with one key column: under the pinned
    -- settings it evaluates four expressions and one statement, not ten (PL/pgSQL
    -- initialises each again in every transaction: 2k instructions for the simplest).
    -- The rest (composite keys, and inserts and deletes of partitioned tables) below.
    if tg_op = 'UPDATE' and tg_nargs = 3 then
        -- A backfill's stamp captured here (by a table's update trigger that does not
        -- skip stamps) is relabelled 'B' by certyo.backfill_step, which knows its versions.
        insert into certyo.outbox (id, table_id, op, record_id, payload)
        values (new.certyo_record_version, tg_argv[0]::integer, 'U',
                -- NULL when the key column was renamed since tracking was enabled: by number.
                coalesce(v_payload ->> tg_argv[2], certyo.record_key_slow(tg_argv[0]::integer, v_payload)),
                v_payload)
        returning exists (select from certyo.waiting_relay) into v_waiting;
        if v_waiting then
            perform certyo.wake_relays();
        end if;
        return null;
    end if;
    if tg_op = 'DELETE' then
        if tg_argv[1] = 'partitioned' and certyo.record_exists(tg_argv[0]::integer, v_payload) then
            return null; -- the row moved to another partition; its INSERT is the change
        end if;
        v_version := nextval('certyo.change_seq');
    else
        v_version := new.certyo_record_version;
    end if;
    if tg_nargs = 3 then
        v_key := v_payload ->> tg_argv[2];
    else
        v_key := certyo.record_key(v_payload, tg_argv[2:]);
    end if;
    if v_key is null then
        -- A key column was renamed since tracking was enabled: resolve it by number.
        v_key := certyo.record_key_slow(tg_argv[0]::integer, v_payload);
    end if;
    -- Asks whether a relay waits in the statement that writes the outbox (in
    -- its RETURNING, 5k less than a CTE around it): a statement trigger of its
    -- own (certyo.wake) cost a single-row UPDATE more than twice as much as
    -- this probe does. A many-row statement probes once a row.
    insert into certyo.outbox (id, table_id, op, record_id, payload)
    values (v_version, tg_argv[0]::integer, substr(tg_op, 1, 1)::"char", v_key, v_payload)
    returning exists (select from certyo.waiting_relay) into v_waiting;
    if tg_op = 'DELETE' then
        -- After the delete's version is drawn (see certyo.delete_clock, capture_rows).
        perform nextval('certyo.delete_clock');
    -- An insert that waited for a transaction deleting the same key (see capture_rows.sql).
    elsif tg_op = 'INSERT' then
        perform certyo.restamp_inserts(tg_argv[0]::integer, array[v_version], array[v_key]);
    end if;
    -- What certyo.wake_relays() is for: a NOTIFY only while a relay waits.
    if v_waiting then
        perform certyo.wake_relays();
    end if;
    return null;
end
$$;

comment on function certyo.capture() is
    'AFTER row trigger of tracked tables: writes the change to certyo.outbox in the same transaction, wakes a waiting relay.';
