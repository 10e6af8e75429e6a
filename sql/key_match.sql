-- certyo.key_match(table_id, key_text): the tracked table and a predicate on
-- alias t that matches its key columns against key_text, an SQL expression
-- giving a record id (one key column: its text; several: a JSON array of
-- texts, as certyo.record_key builds it). NULL predicate when the table or any
-- key column is gone. The one place that turns record ids back into keys.
create or replace function certyo.key_match(table_id integer, key_text text, out rel regclass, out predicate text)
-- plpgsql, not sql: a SQL function with SET is planned again on every call
-- (0.4 ms, paid by every acknowledgement); plpgsql keeps the plan per session.
language plpgsql
stable
set search_path = pg_catalog, pg_temp
as $$
begin
    select t.relid::regclass,
           string_agg(format('t.%I = (%s)::%s', a.attname,
                             case when cardinality(t.key_attnums) = 1 then key_match.key_text
                                  else format('(%s)::json ->> %s', key_match.key_text, k.n - 1) end,
                             format_type(a.atttypid, a.atttypmod)), ' and ' order by k.n)
    into rel, predicate
    from certyo.tracked_table t
    cross join lateral unnest(t.key_attnums) with ordinality as k(attnum, n)
    join pg_attribute a on a.attrelid = t.relid and a.attnum = k.attnum and not a.attisdropped
    where t.table_id = key_match.table_id
    group by t.relid, t.key_attnums
    having count(*) = cardinality(t.key_attnums);
end
$$;
