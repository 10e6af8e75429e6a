-- certyo.layout_of(table_id, names): the layout id of payloads with these
-- columns, in this order, as the table is now (registered the first time it
-- is seen). The relay asks once per table and column list, and hands the id
-- to certyo.ack with each change.
create or replace function certyo.layout_of(table_id integer, names text[])
returns integer
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    v_attnums smallint[];
    v_types text[];
    v_id integer;
begin
    select array_agg(a.attnum order by n.i), array_agg(coalesce(format_type(a.atttypid, a.atttypmod), '') order by n.i)
    into v_attnums, v_types
    from unnest(names) with ordinality as n(name, i)
    join certyo.tracked_table t on t.table_id = layout_of.table_id
    left join pg_attribute a on a.attrelid = t.relid and a.attname = n.name and a.attnum > 0 and not a.attisdropped;
    if v_attnums is null then
        return null; -- no such table
    end if;
    insert into certyo.layout as l (table_id, names, attnums, types)
    values (layout_of.table_id, names, v_attnums, v_types)
    on conflict on constraint layout_columns do nothing
    returning l.layout_id into v_id;
    if v_id is null then
        select l.layout_id into v_id from certyo.layout l
        where l.table_id = layout_of.table_id and l.names = layout_of.names
            and l.attnums = v_attnums and l.types = v_types;
    end if;
    return v_id;
end
$$;

comment on function certyo.layout_of(integer, text[]) is
    'Relay: the id of a payload column layout of a tracked table (registered when first seen).';

-- certyo.renders_alike(type_before, type_now): whether a column whose type
-- changed from one to the other still renders every value the same in a
-- payload (format_type names). Integers among themselves, varchar and text,
-- numeric of the same scale: yes. Anything else: not known, so no.
create or replace function certyo.renders_alike(type_before text, type_now text)
returns boolean
language sql
immutable
parallel safe
set search_path = pg_catalog, pg_temp
as $$
    select type_before = type_now
        or (type_before in ('smallint', 'integer', 'bigint') and type_now in ('smallint', 'integer', 'bigint'))
        or ((type_before = 'text' or type_before like 'character varying%')
            and (type_now = 'text' or type_now like 'character varying%'))
        or (type_before ~ '^numeric\(\d+,\d+\)$' and type_now ~ '^numeric\(\d+,\d+\)$'
            and substring(type_before from ',(\d+)\)$') = substring(type_now from ',(\d+)\)$'))
$$;
