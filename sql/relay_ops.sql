-- The relay's other verbs: give back a lease, park rejected changes, register
-- as waiting for a wake-up, and (for admins) retry parked changes.

-- certyo.release(relay_token): give back every change (and receipt being verified)
-- this relay leased (graceful stop). Returns the changes given back.
create or replace function certyo.release(relay_token uuid)
returns integer
language sql
security definer
set search_path = pg_catalog, pg_temp
-- Leased changes lie at or below leased_upto (see claim): a range of the primary key.
set enable_seqscan = off
as $$
    with r as (
        update certyo.outbox o set lease_token = null, lease_until = null
        where o.id <= (select s.last_value from certyo.leased_upto s) and o.lease_token = relay_token
        returning 1
    ),
    v as (
        -- A receipt is leased only while due (claim_verification), so its lease lies
        -- among the due ones (receipt_due), never among every receipt ever kept.
        -- One leased otherwise is not given back: its lease expires.
        update certyo.receipt c set lease_token = null, lease_until = null
        where c.next_check_at <= now() and c.lease_token = relay_token
    )
    select count(*)::integer from r
$$;

-- certyo.park(relay_token, ids, errors): Certyo rejected these changes. They
-- stay in the outbox with the reason, and later changes of the same record
-- wait behind them (order is kept) until certyo.retry_parked().
create or replace function certyo.park(relay_token uuid, ids bigint[], errors text[])
returns integer
language sql
security definer
set search_path = pg_catalog, pg_temp
-- The changes by id, one index probe each (see certyo.ack: the token is a join column).
set enable_seqscan = off
set enable_hashjoin = off
set enable_mergejoin = off
as $$
    with p as (
        update certyo.outbox o
        set parked_at = now(), last_error = r.e, lease_token = null, lease_until = null
        from unnest(ids, errors, array_fill(relay_token, array[cardinality(ids)])) as r(id, e, token)
        where o.id = r.id and o.lease_token = r.token
        returning 1
    )
    select count(*)::integer from p
$$;

-- certyo.retry_parked(target, record_id): make parked changes deliverable again
-- (all of them, one table's, or one record's). Returns how many.
create or replace function certyo.retry_parked(target regclass default null, record_id text default null)
returns integer
language sql
security definer
set search_path = pg_catalog, pg_temp
as $$
    with r as (
        update certyo.outbox o
        set parked_at = null, last_error = null
        from certyo.tracked_table t
        where o.parked_at is not null
            and t.table_id = o.table_id
            and (retry_parked.target is null or t.relid = retry_parked.target)
            and (retry_parked.record_id is null or o.record_id = retry_parked.record_id)
        returning 1
    ),
    n as (select count(*)::integer as n from r)
    -- Wake waiting relays: the retried changes go out now, not at the next poll.
    select n.n from n, lateral (select pg_notify('certyo_wakeup', '') where n.n > 0) as w
    union all
    select n.n from n where n.n = 0
$$;

-- certyo.relay_wait(relay) / certyo.relay_busy(relay): the relay with this
-- token is (no longer) waiting for a wake-up. Neither ever waits for a writer:
-- a registration a writer is taking (see certyo.wake) is still visible until
-- that writer commits, and its NOTIFY is on the way.
create or replace function certyo.relay_wait(relay uuid)
returns void
language sql
security definer
set search_path = pg_catalog, pg_temp
as $$
    -- "not exists" first: a registration a writer is deleting is still visible
    -- here, so the insert never waits on that writer's transaction.
    insert into certyo.waiting_relay (relay)
    select relay_wait.relay
    where not exists (select from certyo.waiting_relay w where w.relay = relay_wait.relay)
    on conflict do nothing;
$$;

create or replace function certyo.relay_busy(relay uuid)
returns void
language sql
security definer
set search_path = pg_catalog, pg_temp
as $$
    delete from certyo.waiting_relay w
    where w.relay in (select x.relay from certyo.waiting_relay x
                      where x.relay = relay_busy.relay for update skip locked);
$$;

-- certyo.writers_in_flight(relay): whether a writer that may have missed this
-- relay's registration is still open. A writer asks whether a relay waits
-- before it commits, so one that asked before the registration committed sent
-- no NOTIFY, and the relay's claim right after registering does not see its
-- change yet: without this the change waited for the poll (3 in 100 of a
-- trickle's changes, each a CERTYO_POLL_INTERVAL_MS). Such a writer is one of:
-- - a transaction holding its lock on the outbox (it wrote a change: the lock
--   goes after its commit is visible);
-- - a transaction whose snapshot may be older than the registration (under
--   REPEATABLE READ or SERIALIZABLE it never sees the registration, whenever
--   it writes). Seen only when certyo's owner may read other sessions'
--   backend_xmin (a superuser, pg_read_all_stats). backend_xmin is the oldest
--   transaction running anywhere on the server when the snapshot was taken:
--   while a long one runs (a report, pg_dump), newer snapshots count too, and
--   an idle relay claims about once a poll interval, as without a wake-up.
-- A relay that registered checks this (after the registration committed)
-- before the claim it goes to sleep on, and claims again shortly while it
-- holds. It only reads pg_locks and pg_stat_activity: writers never wait for
-- it. No registration (a writer took it): only the lock counts; that
-- writer's NOTIFY is on its way.
create or replace function certyo.writers_in_flight(relay uuid)
returns boolean
language sql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
    with db as (select d.oid from pg_database d where d.datname = current_database())
    select exists (
        select from pg_locks l, db
        where l.locktype = 'relation' and l.database = db.oid
            and l.relation = 'certyo.outbox'::regclass
            and l.mode = 'RowExclusiveLock' and l.granted
            and l.pid <> pg_backend_pid())
    or exists (
        select from certyo.waiting_relay w, pg_stat_activity a, db
        where w.relay = writers_in_flight.relay
            and a.datid = db.oid and a.backend_type = 'client backend'
            and a.pid <> pg_backend_pid() and a.backend_xmin is not null
            -- backend_xmin at or before the registration's transaction (xid has no "<")
            and age(a.backend_xmin) >= age(w.xmin));
$$;

comment on function certyo.writers_in_flight(uuid) is
    'Relay: is a writer that may have missed this relay''s registration still open?';
