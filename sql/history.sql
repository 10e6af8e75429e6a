-- certyo.history: every delivered version of every record, with what proves
-- it once anchored (hash, Merkle root and proof, Polygon transaction, block).
-- Deleted rows keep their history here.
create or replace view certyo.history as
select
    format('%I.%I', t.schema_name, t.table_name) as table_name,
    t.collection,
    r.record_id,
    r.id as version,
    case r.op when 'I' then 'insert' when 'U' then 'update' when 'B' then 'upsert' else 'delete' end as operation,
    r.changed_at,
    r.delivered_at,
    r.anchor_status,
    r.record_hash,
    encode(r.payload_digest, 'hex') as payload_digest,
    r.merkle_root,
    certyo.proof_json(r.merkle_proof) as merkle_proof,
    a.polygon_tx_hash,
    a.block_number,
    a.ipfs_cid,
    a.anchored_at,
    r.verified_at,
    r.snapshot_id,
    r.detail,
    t.table_id
from certyo.receipt r
join certyo.tracked_table t on t.table_id = r.table_id
left join certyo.anchor a on a.merkle_root = r.merkle_root;

comment on view certyo.history is
    'Every delivered version of every record, with its anchoring proof once anchored.';

-- certyo.record_history(target, record_id, anchored_only): one record's
-- versions, newest first (by default only the anchored ones).
create or replace function certyo.record_history(target regclass, record_id text, anchored_only boolean default true)
returns setof certyo.history
language sql
stable
set search_path = pg_catalog, pg_temp
as $$
    select h.*
    from certyo.history h
    where h.table_id in (select t.table_id from certyo.tracked_table t where t.relid = target)
        and h.record_id = record_history.record_id
        and (not anchored_only or h.anchor_status = 'anchored')
    order by h.version desc
$$;

comment on function certyo.record_history(regclass, text, boolean) is
    'One record''s delivered versions with their proofs, newest first.';
