-- certyo.record_key_slow(table_id, payload): the record key when the names the
-- trigger was created with no longer match (a key column was renamed). Resolves
-- the key columns by attribute number; never raises, so a rename cannot make
-- the user's write fail. Running enable_tracking again restores the fast path.
create or replace function certyo.record_key_slow(table_id integer, payload json)
returns text
language plpgsql
stable
set search_path = pg_catalog, pg_temp
as $$
declare
    v_key text;
begin
    select certyo.record_key(payload, array_agg(a.attname::text order by k.n))
    into v_key
    from certyo.tracked_table t
    cross join lateral unnest(t.key_attnums) with ordinality as k(attnum, n)
    join pg_attribute a on a.attrelid = t.relid and a.attnum = k.attnum and not a.attisdropped
    where t.table_id = record_key_slow.table_id;
    if v_key is null then
        raise warning 'certyo: key columns of tracked table % not found in the row; record id falls back to a hash of the row', table_id;
        v_key := 'unresolved:' || md5(payload::text);
    end if;
    return v_key;
end
$$;
