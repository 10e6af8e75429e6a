-- certyo.ack_and_claim(relay_token, ids, ..., payloads, max_changes, lease, max_bytes):
-- certyo.ack of the changes the relay delivered last, then certyo.claim of the next
-- ones, in one call and one transaction. A relay keeping up with its writers sends
-- small batches, and each batch cost three round trips (claim, send, acknowledge),
-- each with its own transaction; this makes it two. The claim sees what the ack
-- released (the next changes of the records just acknowledged). Returns the
-- claimed changes, each with acknowledged (how many changes the ack took out of
-- the outbox); when nothing is claimed, one row with acknowledged alone (id NULL).
-- SECURITY INVOKER: the caller needs ack and claim (certyo_relay has both).
create or replace function certyo.ack_and_claim(
    relay_token uuid, ids bigint[], record_hashes text[], accepted_ats timestamptz[], snapshot_ids text[],
    payload_digests text[], layout_ids integer[], payloads text[],
    max_changes integer, lease interval, max_bytes bigint
)
returns table (id bigint, idempotency_key uuid, op "char", record_id text, collection text, changed_at timestamptz,
               record text, table_id integer, acknowledged integer)
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
declare
    v_acknowledged integer := 0;
begin
    if cardinality(ids) > 0 then
        v_acknowledged := certyo.ack(relay_token, ids, record_hashes, accepted_ats, snapshot_ids, payload_digests,
                                     layout_ids, payloads);
    end if;
    return query
    select c.id, c.idempotency_key, c.op, c.record_id, c.collection, c.changed_at, c.record, c.table_id, v_acknowledged
    from certyo.claim(relay_token, max_changes, lease, max_bytes) as c;
    if not found then
        return query select null::bigint, null::uuid, null::"char", null::text, null::text, null::timestamptz, null::text,
                            null::integer, v_acknowledged;
    end if;
end
$$;

comment on function certyo.ack_and_claim(uuid, bigint[], text[], timestamptz[], text[], text[], integer[], text[], integer, interval, bigint) is
    'Relay: certyo.ack of the last batch, then certyo.claim of the next, in one round trip.';
