-- certyo.claim(relay_token, max_changes, lease, max_bytes): lease up to
-- max_changes deliverable changes, oldest first, stopping once their row
-- images reach max_bytes (at least one change is always returned, so the
-- relay's memory is bounded by max_bytes plus one change), and return them
-- ready to send. A change
-- is held back while an earlier change of the same record is leased by a live
-- lease or parked, so each record's changes leave in version order even with
-- several relays. Claims are serialised (one short transaction each) so two
-- relays never split one record's changes between them. Leased changes are
-- found below certyo.leased_upto, the highest id a claim ever leased: each
-- claim takes the oldest deliverable changes, so that range is about the
-- changes in flight (plus those held behind them).
drop function if exists certyo.claim(uuid, integer, interval);
-- Its result gained table_id (the relay registers payload layouts per table).
do $$
begin
    if exists (select from pg_proc p where p.oid = to_regprocedure('certyo.claim(uuid, integer, interval, bigint)')
               and not 'table_id' = any (p.proargnames)) then
        drop function certyo.claim(uuid, integer, interval, bigint);
    end if;
end
$$;
-- Its suffix cut is inline below now.
drop function if exists certyo.strip_status(json, text, text, timestamptz, bigint);
create or replace function certyo.claim(
    relay_token uuid, max_changes integer default 1000, lease interval default '60 seconds', max_bytes bigint default 4194304
)
returns table (id bigint, idempotency_key uuid, op "char", record_id text, collection text, changed_at timestamptz, record text,
               table_id integer)
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
-- Short statements: JIT compilation would cost more than it saves (tens of ms).
set jit = off
-- Between vacuums the outbox is mostly dead tuples and its statistics say it
-- is empty: a sequential scan would read every dead tuple; indexes skip them.
set enable_seqscan = off
as $$
declare
    v_upto bigint;
    v_ids bigint[];
    v_encoding name := pg_catalog.current_setting('server_encoding');
    v_installation uuid := (select i.id from certyo.installation i);
begin
    if v_installation is null then
        -- Without it every derived key would be NULL: changes sent under one key would be lost as replays.
        raise exception 'certyo.installation has no row: idempotency keys cannot be derived'
            using errcode = '55000',
                  hint = 'Insert one: insert into certyo.installation default values (a new id only for a new installation).';
    end if;
    perform pg_advisory_xact_lock(7283002);
    -- This transaction's commit need not wait for the disk (nor certyo.ack's): a lease or
    -- an acknowledgement lost in a server crash is the same as the relay dying before it committed; the
    -- changes are sent again with the same idempotency keys. Set here, not as a session
    -- setting of the relay, so that it also holds behind a connection pooler.
    perform pg_catalog.set_config('synchronous_commit', 'off', true);
    -- Every leased change has an id <= leased_upto (raised below, under the lock).
    select s.last_value into v_upto from certyo.leased_upto s;
    with picked as (
        select o.id, octet_length(o.payload::text) as size
        from certyo.outbox o
        where (o.lease_token is null or o.lease_until <= now())
            and o.parked_at is null
            -- skip records with a change leased (live) or parked: NOT IN over NOT NULL
            -- columns runs as one hashed subplan (a hash probe per candidate), whatever
            -- the planner's estimate of how many are held
            and (o.table_id, o.record_id) not in (
                select h.table_id, h.record_id
                from certyo.outbox h
                where h.id <= v_upto and h.lease_token is not null and h.lease_until > now()
                union all
                select h.table_id, h.record_id
                from certyo.outbox h
                where h.parked_at is not null
            )
        order by o.id
        limit max_changes
        for update skip locked
    )
    select array_agg(b.id order by b.id)
    into v_ids
    from (select p.id, sum(p.size) over (order by p.id) - p.size as before from picked p) as b
    where b.before < max_bytes;
    if v_ids is null then
        return;
    end if;
    if v_ids[cardinality(v_ids)] > v_upto then
        perform pg_catalog.setval('certyo.leased_upto', v_ids[cardinality(v_ids)]);
    end if;
    return query
    with leased as (
        -- A HOT update: no index names these columns (migration 4).
        update certyo.outbox o
        set lease_token = relay_token, lease_until = now() + lease, attempts = o.attempts + 1
        where o.id = any (v_ids)
        returning o.id, o.idempotency_key, o.op, o.record_id, o.table_id, o.changed_at, o.payload
    )
    -- Changes captured since migration 14 have no stored key: derived, the same on every claim.
    select l.id, coalesce(l.idempotency_key, certyo.change_key(v_installation, l.id, l.changed_at)),
           l.op, l.record_id, t.collection, l.changed_at,
           -- Inserts and updates were captured with status (null, 'pending', null, their
           -- version; a backfill's stamp: its mark '' for null, see backfill_step)
           -- as the last members: cut that exact suffix (what is left is the
           -- row's own members, still valid JSON); deletes and other layouts are rebuilt.
           -- Inline, not certyo.strip_status: no function call nor JSON re-check per row.
           -- In bytes (the server's encoding, so converting only checks it): right() and
           -- left() count characters from the start each time; this costs a third.
           -- The suffix is ASCII, which no server encoding uses inside a multibyte
           -- character, so the cut falls between characters.
           case when cardinality(t.exclude_columns) = 0 and l.op <> 'D'
                     and octet_length(x.image) > octet_length(x.suffix)
                     and substring(x.image from octet_length(x.image) - octet_length(x.suffix) + 1) = x.suffix
                then convert_from(substring(x.image for octet_length(x.image) - octet_length(x.suffix)), v_encoding) || '}'
                else certyo.record_payload(l.payload, t.exclude_columns::text[])::text end,
           l.table_id
    from leased l
    join certyo.tracked_table t on t.table_id = l.table_id
    cross join lateral (
        select convert_to(l.payload::text, v_encoding) as image,
               convert_to(',"certyo_record_hash":' || case when l.op = 'B' then '""' else 'null' end
                          || ',"certyo_anchor_status":"pending","certyo_verified_at":null,"certyo_record_version":'
                          || l.id || '}', v_encoding) as suffix
        offset 0 -- evaluated once per row, not once per use above
    ) x
    order by l.id;
end
$$;

comment on function certyo.claim(uuid, integer, interval, bigint) is
    'Relay: lease up to max_changes deliverable changes in per-record version order.';
