-- certyo.record_payload(payload, exclude_columns): the recordPayload sent to
-- Certyo: the captured row image without certyo's status columns and without
-- the columns the user excluded. Works on the JSON text, so every value
-- (numbers, duplicate keys inside json columns, escapes) stays byte-exact.
create or replace function certyo.record_payload(payload json, exclude_columns text[])
returns json
language sql
immutable
parallel safe
set search_path = pg_catalog, pg_temp
as $$
    select coalesce('{' || string_agg(to_json(e.key)::text || ':' || e.value::text, ',' order by e.n) || '}', '{}')::json
    from json_each(payload) with ordinality as e(key, value, n)
    where e.key <> all (exclude_columns)
        and e.key not in ('certyo_record_hash', 'certyo_anchor_status', 'certyo_verified_at', 'certyo_record_version')
$$;

comment on function certyo.record_payload(json, text[]) is
    'recordPayload of a captured row image: status and excluded columns removed, every value byte-exact.';
