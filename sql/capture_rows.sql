-- certyo.capture_rows(): AFTER INSERT / AFTER DELETE ... FOR EACH STATEMENT
-- trigger on tracked (ordinary) tables, with transition tables (certyo_new,
-- certyo_old). Updates keep the row trigger certyo.capture(). Writes the
-- statement's changes to the outbox in one set-based INSERT, inside the
-- writing transaction: a 100-row statement costs one trigger call, not 100.
-- The payload is the whole row image; the claim removes certyo's status
-- columns (off the write path). Arguments: table_id, the table's kind, then
-- the key column names. Output settings are pinned so the payload text never
-- depends on the writer's session (TimeZone, IntervalStyle, bytea_output, ...).
--   INSERT: every new row (its version was stamped by certyo.capture_before).
--   DELETE: every old row, with a new version.
create or replace function certyo.capture_rows()
returns trigger
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
set timezone = 'UTC'
set datestyle = 'ISO, YMD'
set intervalstyle = 'postgres'
set extra_float_digits = 1
set bytea_output = 'hex'
set jit = off
as $$
declare
    v_table integer := tg_argv[0]::integer;
    v_key text := case when tg_nargs = 3 then tg_argv[2] end;
    v_keys text[] := tg_argv[2:];
begin
    if tg_op = 'INSERT' then
        insert into certyo.outbox (id, table_id, op, record_id, payload)
        select x.v, v_table, 'I',
               coalesce(case when v_key is not null then x.j ->> v_key else certyo.record_key(x.j, v_keys) end,
                        certyo.record_key_slow(v_table, x.j)),
               x.j
        from (select n.certyo_record_version as v, row_to_json(n.*) as j from certyo_new n) as x
        order by x.v;
    else
        insert into certyo.outbox (id, table_id, op, record_id, payload)
        select nextval('certyo.change_seq'), v_table, 'D',
               coalesce(case when v_key is not null then x.j ->> v_key else certyo.record_key(x.j, v_keys) end,
                        certyo.record_key_slow(v_table, x.j)),
               x.j
        from (select row_to_json(o.*) as j from certyo_old o) as x;
    end if;
    return null;
end
$$;

comment on function certyo.capture_rows() is
    'AFTER statement trigger of tracked tables: writes the statement''s changes to certyo.outbox in the same transaction.';
