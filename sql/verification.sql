-- The relay's verification verbs: lease receipts that are due a check, and
-- settle what the check found (fenced by the lease), writing 'anchored',
-- 'anchor_failed' or 'mismatch' back into the rows still at that version.

-- certyo.claim_verification(relay_token, max_receipts, lease, first_delay):
-- lease up to max_receipts receipts due a check, earliest due first. A
-- receipt is first due first_delay after its delivery (Certyo anchors a
-- minute or so after accepting), then whenever settle scheduled it.
-- payload: kept only when Certyo gave no record hash (see migration 12).
drop function if exists certyo.claim_verification(uuid, integer, interval, interval);
create or replace function certyo.claim_verification(
    relay_token uuid, max_receipts integer default 1000, lease interval default '60 seconds',
    first_delay interval default '60 seconds'
)
returns table (
    id bigint, op "char", record_id text, collection text, record_hash text, accepted_at timestamptz,
    delivered_at timestamptz, anchor_status text, checks integer, payload text
)
language sql
security definer
set search_path = pg_catalog, pg_temp
set jit = off
-- The receipts by index, however many there are: with seq scans and hash joins
-- allowed, the lease below read every receipt ever kept to update a thousand.
set enable_seqscan = off
set enable_hashjoin = off
set enable_mergejoin = off
as $$
    with due as (
        select r.id
        from certyo.receipt r
        where r.next_check_at <= now()
            and (r.lease_until is null or r.lease_until <= now())
            and (r.checks > 0 or r.anchor_status <> 'submitted' or r.delivered_at <= now() - first_delay)
        order by r.next_check_at
        limit max_receipts
        for update skip locked
    ),
    leased as (
        update certyo.receipt r
        set lease_token = relay_token, lease_until = now() + lease
        from due
        where r.id = due.id
        returning r.*
    )
    select l.id, l.op, l.record_id, t.collection, l.record_hash, l.accepted_at, l.delivered_at, l.anchor_status, l.checks,
           l.payload::text
    from leased l
    join certyo.tracked_table t on t.table_id = l.table_id
    order by l.id
$$;

comment on function certyo.claim_verification(uuid, integer, interval, interval) is
    'Relay: lease receipts whose anchoring is due a check.';

-- certyo.settle_verification(relay_token, results): results is a JSON array of
--   {id, status, checked, next_check_ms, record_hash, merkle_root, proof (hex),
--    detail, batch_id, polygon_tx_hash, block_number, ipfs_cid, anchored_at}
-- status: 'submitted' (not anchored yet), 'anchored', 'anchor_failed' or
-- 'mismatch'; checked: Certyo was asked (counts an attempt); next_check_ms:
-- when to look again (null: done). Only the lease holder settles. The row
-- status is written for rows still at that version; a row a user transaction
-- has locked is retried a second later. Returns the receipts settled.
create or replace function certyo.settle_verification(relay_token uuid, results jsonb)
returns integer
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
set jit = off
-- The receipts by id, one index probe each (see certyo.ack: the token is a join
-- column, so no estimate of it decides how the receipts are read).
set enable_seqscan = off
set enable_hashjoin = off
set enable_mergejoin = off
as $$
declare
    v_count integer;
    v_tables integer[];
    v_all_ids bigint[];
    v_all_keys text[];
    v_all_status text[];
    v_all_hashes text[];
    v_all_verified timestamptz[];
    v_table integer;
    v_ids bigint[];
    v_keys text[];
    v_written bigint[];
begin
    with r as (
        select x.*, relay_token as token from jsonb_to_recordset(results) as x(
            id bigint, status text, checked boolean, next_check_ms bigint, record_hash text, merkle_root text,
            proof text, detail text, batch_id text, polygon_tx_hash text, block_number bigint, ipfs_cid text,
            anchored_at timestamptz)
    ),
    anchors as (
        insert into certyo.anchor (merkle_root, batch_id, polygon_tx_hash, block_number, ipfs_cid, anchored_at)
        select distinct on (r.merkle_root) r.merkle_root, r.batch_id, r.polygon_tx_hash, r.block_number, r.ipfs_cid, r.anchored_at
        from r
        where r.status = 'anchored' and r.merkle_root is not null
        on conflict (merkle_root) do nothing
    ),
    settled as (
        update certyo.receipt c
        set anchor_status = r.status,
            checks = c.checks + case when r.checked then 1 else 0 end,
            next_check_at = now() + make_interval(secs => r.next_check_ms / 1000.0),
            lease_token = null,
            lease_until = null,
            record_hash = coalesce(c.record_hash, r.record_hash),
            merkle_root = coalesce(r.merkle_root, c.merkle_root),
            merkle_proof = coalesce(decode(r.proof, 'hex'), c.merkle_proof),
            verified_at = case when r.status = 'anchored' and r.checked then now() else c.verified_at end,
            detail = r.detail,
            -- Kept for verification by payload until nothing is left to check.
            payload = case when r.next_check_ms is null then null else c.payload end
        from r
        where c.id = r.id and c.lease_token = r.token
        returning c.id, c.table_id, c.op, c.record_id, c.anchor_status,
                  coalesce(c.record_hash, r.record_hash) as h, c.verified_at
    )
    select count(*)::integer,
           array_agg(s.table_id order by s.id) filter (where s.anchor_status <> 'submitted' and s.op <> 'D'),
           array_agg(s.id order by s.id) filter (where s.anchor_status <> 'submitted' and s.op <> 'D'),
           array_agg(s.record_id order by s.id) filter (where s.anchor_status <> 'submitted' and s.op <> 'D'),
           array_agg(s.anchor_status order by s.id) filter (where s.anchor_status <> 'submitted' and s.op <> 'D'),
           array_agg(s.h order by s.id) filter (where s.anchor_status <> 'submitted' and s.op <> 'D'),
           array_agg(s.verified_at order by s.id) filter (where s.anchor_status <> 'submitted' and s.op <> 'D')
    into v_count, v_tables, v_all_ids, v_all_keys, v_all_status, v_all_hashes, v_all_verified
    from settled s;

    -- Write the final states back into the rows (deleted rows have none).
    for v_table in select distinct t from unnest(v_tables) as t loop
        select array_agg(u.i), array_agg(u.k) into v_ids, v_keys
        from unnest(v_tables, v_all_ids, v_all_keys) as u(t, i, k) where u.t = v_table;
        v_written := certyo.write_status(
            v_table, v_keys, v_ids,
            array(select u.s from unnest(v_tables, v_all_status) as u(t, s) where u.t = v_table),
            array(select u.h from unnest(v_tables, v_all_hashes) as u(t, h) where u.t = v_table),
            array(select u.va from unnest(v_tables, v_all_verified) as u(t, va) where u.t = v_table));
        -- Not written: the row has a newer version or is gone (nothing to do), or a
        -- user transaction holds it: written again from the receipt (certyo.write_due).
        perform certyo.mark_write_due(v_table, v_keys, v_ids, v_written);
    end loop;
    return coalesce(v_count, 0);
end
$$;

comment on function certyo.settle_verification(uuid, jsonb) is
    'Relay: record what verification found (fenced by the lease) and write final states back to the rows.';

-- certyo.proof_json(proof): a stored proof as [{"position": "left"|"right", "hash": "..."}].
create or replace function certyo.proof_json(proof bytea)
returns json
language sql
immutable
parallel safe
set search_path = pg_catalog, pg_temp
as $$
    select json_agg(json_build_object(
               'position', case get_byte(proof, i * 33) when 0 then 'left' else 'right' end,
               'hash', encode(substr(proof, i * 33 + 2, 32), 'hex')) order by i)
    from generate_series(0, length(proof) / 33 - 1) as i
$$;
