-- certyo.ack(relay_token, ids, record_hashes, accepted_ats, snapshot_ids):
-- the changes were accepted by Certyo. Only the holder of their lease can
-- acknowledge (a relay whose lease was taken over acknowledges nothing). Moves
-- them from the outbox to certyo.receipt and marks each row 'submitted' if it
-- is still at that version. Returns the number acknowledged.
create or replace function certyo.ack(
    relay_token uuid, ids bigint[], record_hashes text[], accepted_ats timestamptz[], snapshot_ids text[]
)
returns integer
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    v_count integer;
    v_table record;
begin
    create temporary table if not exists certyo_acked (
        table_id integer, record_id text, id bigint, record_hash text
    ) on commit drop;
    with done as (
        delete from certyo.outbox o
        using unnest(ids, record_hashes, accepted_ats, snapshot_ids) as r(id, h, a, s)
        where o.id = r.id and o.lease_token = relay_token
        returning o.id, o.table_id, o.op, o.record_id, o.idempotency_key, o.changed_at, r.h, r.a, r.s
    ),
    kept as (
        insert into certyo.receipt (id, table_id, op, record_id, idempotency_key, changed_at, record_hash, accepted_at, snapshot_id)
        select d.id, d.table_id, d.op, d.record_id, d.idempotency_key, d.changed_at, d.h, d.a, d.s from done d
        on conflict (id) do nothing
        returning receipt.id
    )
    insert into certyo_acked
    select d.table_id, d.record_id, d.id, d.h from done d where d.op <> 'D';
    for v_table in select a.table_id, array_agg(a.record_id) as k, array_agg(a.id) as v, array_agg(a.record_hash) as h
                   from certyo_acked a group by a.table_id loop
        perform certyo.write_status(v_table.table_id, v_table.k, v_table.v,
                                    array_fill('submitted'::text, array[cardinality(v_table.k)]),
                                    v_table.h, array_fill(null::timestamptz, array[cardinality(v_table.k)]));
    end loop;
    select count(*) into v_count from certyo.receipt r where r.id = any (ids) and r.delivered_at = now();
    drop table certyo_acked;
    return v_count;
end
$$;

comment on function certyo.ack(uuid, bigint[], text[], timestamptz[], text[]) is
    'Relay: acknowledge delivered changes (fenced by the lease), keep receipts, mark rows submitted.';
