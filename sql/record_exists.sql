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
    v_rel regclass;
    v_found boolean;
begin
    select m.rel, m.predicate into v_rel, v_where from certyo.key_match(record_exists.table_id, '$1') as m;
    if v_where is null then
        return false;
    end if;
    execute format('select exists (select from %s t where %s)', v_rel, v_where)
    into v_found
    using certyo.record_key_slow(record_exists.table_id, payload);
    return v_found;
end
$$;
