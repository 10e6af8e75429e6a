-- certyo.strip_status(payload, hash, status, verified_at, version): a row
-- image without certyo's status columns. enable_tracking appends those
-- columns last, so row_to_json() ends with exactly their rendering: cut that
-- suffix (cheap, exact). When the layout differs (columns added later), fall
-- back to rebuilding the object with certyo.record_payload (exact, slower).
-- The claim calls it for inserts and updates, whose status values it knows.
create or replace function certyo.strip_status(
    payload json, hash text, status text, verified_at timestamptz, version bigint
)
returns json
language plpgsql
immutable
set search_path = pg_catalog, pg_temp
as $$
declare
    v_text text := payload::text;
    v_suffix text := ',"certyo_record_hash":' || coalesce(to_json(hash)::text, 'null')
        || ',"certyo_anchor_status":' || coalesce(to_json(status)::text, 'null')
        || ',"certyo_verified_at":' || coalesce(to_json(verified_at)::text, 'null')
        || ',"certyo_record_version":' || coalesce(version::text, 'null') || '}';
begin
    if right(v_text, length(v_suffix)) = v_suffix then
        return (left(v_text, length(v_text) - length(v_suffix)) || '}')::json;
    end if;
    return certyo.record_payload(payload, '{}');
end
$$;
