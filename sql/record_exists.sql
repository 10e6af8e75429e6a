-- certyo.record_exists(table_id, payload): does the tracked table hold a row
-- with this row image's key right now? Used by the DELETE trigger of
-- partitioned tables: an UPDATE that moves a row to another partition fires
-- DELETE on the old partition and INSERT on the new one, and the record has
-- not gone away.
create or replace function certyo.record_exists(table_id integer, payload json)
returns boolean
language plpgsql
stable
security definer
set search_path = pg_catalog, pg_temp
set timezone = 'UTC'
set intervalstyle = 'postgres'
set extra_float_digits = 1
set bytea_output = 'hex'
as $$
declare
    v_where text;
    v_relid oid;
    v_found boolean;
begin
    select t.relid, string_agg(format('t.%I = ($1 ->> %L)::%s', a.attname, a.attname, format_type(a.atttypid, a.atttypmod)), ' and ')
    into v_relid, v_where
    from certyo.tracked_table t
    cross join lateral unnest(t.key_attnums) as k(attnum)
    join pg_attribute a on a.attrelid = t.relid and a.attnum = k.attnum and not a.attisdropped
    where t.table_id = record_exists.table_id
    group by t.relid;
    if v_where is null then
        return false;
    end if;
    execute format('select exists (select from %s t where %s)', v_relid::regclass, v_where)
    into v_found
    using payload;
    return v_found;
end
$$;
