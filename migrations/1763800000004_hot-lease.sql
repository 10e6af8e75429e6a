-- Up Migration
-- A claim's lease UPDATE becomes a HOT update (no new index entries, the new
-- row version on the same page): no index names the lease columns any more,
-- and outbox pages keep half their space free for those versions. The claim
-- finds leased changes by scanning the outbox up to certyo.leased_upto, the
-- highest id ever leased, and parked ones by the small index below.
--
-- The claim is dropped here and created again by the install that follows
-- (sql/claim.sql): a relay claiming in between would lease without raising
-- the mark, so it gets "function does not exist" and retries instead.
drop function if exists certyo.claim(uuid, integer, interval, bigint);
create sequence certyo.leased_upto as bigint minvalue 0 start 0;
select pg_catalog.setval('certyo.leased_upto', coalesce(max(id), 0))
from certyo.outbox where lease_token is not null;
drop index certyo.outbox_held;
create index outbox_parked on certyo.outbox (table_id, record_id) where parked_at is not null;
alter table certyo.outbox set (fillfactor = 50);

-- Down Migration
alter table certyo.outbox reset (fillfactor);
drop index certyo.outbox_parked;
create index outbox_held on certyo.outbox (table_id, record_id)
    where lease_token is not null or parked_at is not null;
drop sequence certyo.leased_upto;
