-- certyo.disable_tracking(target, drop_status_columns): stop capturing a
-- table's changes. Changes already in the outbox are still delivered. The
-- status columns stay (with their values) unless asked to drop them.
create or replace function certyo.disable_tracking(target regclass, drop_status_columns boolean default false)
returns void
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
declare
    v_owner oid;
begin
    select c.relowner into v_owner from pg_class c where c.oid = target;
    if not pg_has_role(current_user, v_owner, 'USAGE') then
        raise exception 'must be the owner of % to disable tracking', target using errcode = '42501';
    end if;
    perform certyo.drop_triggers(target);
    update certyo.tracked_table t
    set active = false, disabled_at = now()
    where t.relid = target and t.active;
    if drop_status_columns then
        execute format('alter table %s drop column if exists certyo_record_hash, drop column if exists certyo_anchor_status,'
                       ' drop column if exists certyo_verified_at, drop column if exists certyo_record_version', target);
    end if;
end
$$;

comment on function certyo.disable_tracking(regclass, boolean) is
    'Stop capturing a table''s changes; pending changes are still delivered. Idempotent.';
