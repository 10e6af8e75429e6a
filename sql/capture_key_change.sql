-- certyo.capture_key_change(): AFTER UPDATE row trigger on tracked tables,
-- fired only when the update changed a key column (its WHEN clause compares
-- them), after certyo.capture() has written the update. A new key is a new
-- identity: the old record is delivered as deleted (the old row's image,
-- with a version of its own) and the update as the insert of the new record.
-- Both are written in the writing transaction. The insert keeps the row's
-- version, drawn before the delete's: Certyo may receive them in either
-- order, and each record's own changes stay in version order (the old one's
-- delete is its last change, the new one's insert its first). Arguments as
-- certyo.capture().
create or replace function certyo.capture_key_change()
returns trigger
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
set timezone = 'UTC'
set datestyle = 'ISO, YMD'
set intervalstyle = 'postgres'
set extra_float_digits = 1
set bytea_output = 'hex'
as $$
declare
    v_payload json := row_to_json(old);
    v_key text;
begin
    if tg_nargs = 3 then
        v_key := v_payload ->> tg_argv[2];
    else
        v_key := certyo.record_key(v_payload, tg_argv[2:]);
    end if;
    if v_key is null then
        v_key := certyo.record_key_slow(tg_argv[0]::integer, v_payload);
    end if;
    insert into certyo.outbox (id, table_id, op, record_id, payload)
    values (nextval('certyo.change_seq'), tg_argv[0]::integer, 'D', v_key, v_payload);
    -- After the delete's version is drawn (see certyo.delete_clock, capture_rows).
    perform nextval('certyo.delete_clock');
    -- capture() wrote the update under the row's version (and only when updates are
    -- captured: otherwise the new record's insert is not captured either).
    update certyo.outbox o set op = 'I' where o.id = new.certyo_record_version and o.op = 'U';
    return null;
end
$$;

comment on function certyo.capture_key_change() is
    'AFTER UPDATE trigger of tracked tables when a key column changes: the old record is deleted, the new one inserted.';
