-- certyo.ack(relay_token, ids, record_hashes, accepted_ats, snapshot_ids, payload_digests,
-- layout_ids, payloads): the changes were accepted by Certyo (payload_digests: SHA-256 of each
-- recordPayload text as sent, in hex, kept for the tamper sweep; payloads: the
-- recordPayload texts, kept where Certyo gave no hash, as verification then asks
-- about the payload; NULL when every change has a hash). Only the holder of their lease can
-- acknowledge (a relay whose lease was taken over acknowledges nothing). Moves
-- them from the outbox to certyo.receipt and marks each row 'submitted' if it
-- is still at that version. Returns the number acknowledged.
drop function if exists certyo.ack(uuid, bigint[], text[], timestamptz[], text[]);
-- layout_ids added (each change's payload layout, certyo.layout_of); NULL: unknown.
drop function if exists certyo.ack(uuid, bigint[], text[], timestamptz[], text[], text[]);
-- payloads added.
drop function if exists certyo.ack(uuid, bigint[], text[], timestamptz[], text[], text[], integer[]);
create or replace function certyo.ack(
    relay_token uuid, ids bigint[], record_hashes text[], accepted_ats timestamptz[], snapshot_ids text[],
    payload_digests text[], layout_ids integer[] default null, payloads text[] default null
)
returns integer
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
-- Short statements: JIT compilation would cost more than it saves (tens of ms).
set jit = off
-- The changes by id, one index probe each, whatever the statistics say. Analyzed
-- while no change was leased, the outbox's statistics put "lease_token = this
-- token" at one row: the planner then scanned the outbox once and the ids once
-- per row it kept (a nested loop the wrong way round: 0.8 s to acknowledge 1,000
-- of a 24,000-change backlog). The token is compared as a join column below, so
-- no estimate of it decides how the outbox is read.
set enable_seqscan = off
set enable_hashjoin = off
set enable_mergejoin = off
as $$
declare
    v_count integer;
    v_tables integer[];
    v_keys text[];
    v_versions bigint[];
    v_hashes text[];
    v_table integer;
    v_keys_t text[];
    v_versions_t bigint[];
    -- Changes whose id is already receipted (see below): none, as a rule.
    v_receipted bigint[] := '{}';
    v_installation uuid := (select i.id from certyo.installation i);
begin
    -- No fsync wait for this commit, as in certyo.claim (why is there).
    perform pg_catalog.set_config('synchronous_commit', 'off', true);
    <<acknowledge>>
    loop
        begin
            with done as (
                delete from certyo.outbox o
                using unnest(ids, record_hashes, accepted_ats, snapshot_ids, payload_digests,
                             coalesce(layout_ids, '{}'), coalesce(payloads, '{}'),
                             array_fill(relay_token, array[cardinality(ids)])) as r(id, h, a, s, g, l, p, token)
                where o.id = r.id and o.lease_token = r.token
                returning o.id, o.table_id, o.op, o.record_id, o.idempotency_key, o.changed_at, r.h, r.a, r.s, r.g, r.l,
                          -- No hash from Certyo: verification needs the payload (migration 12).
                          case when r.h is null then r.p::json end as payload
            ),
            kept as (
                insert into certyo.receipt (id, table_id, op, record_id, idempotency_key, changed_at, record_hash, accepted_at,
                                            snapshot_id, payload_digest, layout_id, payload)
                select d.id, d.table_id, d.op, d.record_id,
                       coalesce(d.idempotency_key, certyo.change_key(v_installation, d.id, d.changed_at)), d.changed_at, d.h, d.a, d.s, decode(d.g, 'hex'), d.l,
                       d.payload
                from done d
                where d.id <> all (v_receipted)
            )
            select count(*),
                   array_agg(d.table_id) filter (where d.op <> 'D'),
                   array_agg(d.record_id) filter (where d.op <> 'D'),
                   array_agg(d.id) filter (where d.op <> 'D'),
                   array_agg(d.h) filter (where d.op <> 'D')
            into v_count, v_tables, v_keys, v_versions, v_hashes
            from done d;
            exit acknowledge;
        exception when unique_violation then
            -- A change id reaches the receipts once, when it leaves the outbox, unless
            -- certyo.change_seq was set back (a copy made by logical replication, which
            -- leaves sequences behind): then keep the receipts there and acknowledge
            -- again without these changes' receipts, as ON CONFLICT DO NOTHING would
            -- (checking every row for a conflict that way cost 5-13% of an ack of 1,000).
            if cardinality(v_receipted) > 0 then
                raise;
            end if;
            select array_agg(r.id) into v_receipted
            from certyo.receipt r
            where r.id = any (ids)
                and exists (select from certyo.outbox o where o.id = r.id and o.lease_token = relay_token);
            if v_receipted is null then
                raise;
            end if;
            raise warning 'certyo.ack: change ids % already have receipts (certyo.change_seq was set back?); theirs are kept, the new ones dropped',
                v_receipted
                using hint = 'Set certyo.change_seq past the highest id in certyo.receipt (see the README, Moving the database).';
        end;
    end loop;
    -- Deleted rows have no row to mark; their proof stays in the receipt.
    if v_tables is null then
        return v_count;
    end if;
    -- The usual batch is of one table: its arrays go as they are (splitting them
    -- by table costs about 2 ms per 1,000 changes).
    -- A row a user's transaction holds is skipped: mark_write_due has it written later.
    if v_tables[1] = all (v_tables) then
        perform certyo.mark_write_due(v_tables[1], v_keys, v_versions, certyo.write_status(
            v_tables[1], v_keys, v_versions,
            array_fill('submitted'::text, array[cardinality(v_keys)]), v_hashes,
            array_fill(null::timestamptz, array[cardinality(v_keys)])));
        return v_count;
    end if;
    for v_table in select distinct t from unnest(v_tables) as t loop
        v_keys_t := array(select k from unnest(v_tables, v_keys) as u(t, k) where u.t = v_table);
        v_versions_t := array(select v from unnest(v_tables, v_versions) as u(t, v) where u.t = v_table);
        perform certyo.mark_write_due(v_table, v_keys_t, v_versions_t, certyo.write_status(
            v_table, v_keys_t, v_versions_t,
            array(select 'submitted'::text from unnest(v_tables) as u(t) where u.t = v_table),
            array(select h from unnest(v_tables, v_hashes) as u(t, h) where u.t = v_table),
            array(select null::timestamptz from unnest(v_tables) as u(t) where u.t = v_table)));
    end loop;
    return v_count;
end
$$;

comment on function certyo.ack(uuid, bigint[], text[], timestamptz[], text[], text[], integer[], text[]) is
    'Relay: acknowledge delivered changes (fenced by the lease), keep receipts, mark rows submitted.';
