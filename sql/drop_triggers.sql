-- certyo.drop_triggers(target): removes certyo's triggers from a table and its
-- partitions. Used by enable_tracking (before re-creating them) and
-- disable_tracking. Internal: not granted to anyone.
create or replace function certyo.drop_triggers(target regclass)
returns void
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
declare
    v_trigger record;
begin
    for v_trigger in
        select t.tgname, t.tgrelid::regclass as rel
        from pg_trigger t
        where t.tgrelid in (select target union select relid from pg_partition_tree(target))
            and not t.tgisinternal
            and t.tgparentid = 0
            and t.tgname in ('certyo_before', 'certyo_before_insert', 'certyo_capture_insert', 'certyo_capture_update',
                             'certyo_capture_zkey', 'certyo_capture_delete', 'certyo_wake',
                             'certyo_refuse_truncate')
    loop
        execute format('drop trigger %I on %s', v_trigger.tgname, v_trigger.rel);
    end loop;
end
$$;
