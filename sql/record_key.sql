-- certyo.record_key(payload, key_columns): the recordId sent to Certyo.
-- One key column: its value as text (a JSON string unquoted, a number as
-- written). Several: a JSON array of those texts, e.g. ["42","EU"].
-- NULL when a key column is missing from the payload (renamed since enable).
create or replace function certyo.record_key(payload json, key_columns text[])
returns text
language sql
immutable
parallel safe
set search_path = pg_catalog, pg_temp
as $$
    select case
        when cardinality(key_columns) = 1 then payload ->> key_columns[1]
        when bool_and(k.v is not null) then '[' || string_agg(to_json(k.v)::text, ',' order by c.n) || ']'
    end
    from unnest(key_columns) with ordinality as c(col, n)
    cross join lateral (select payload ->> c.col as v) as k(v)
$$;

comment on function certyo.record_key(json, text[]) is
    'recordId of a row image: the key column''s text, or a JSON array of texts for a composite key.';
