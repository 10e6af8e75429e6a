-- Up Migration
-- A waiting relay is registered by its token, not by the backend that
-- registered it: the relay registers and unregisters over any pooled
-- connection, so it holds no session of its own for that (a held connection
-- that the server terminated could stall the relay's pool). A registration of
-- a relay that is gone costs one NOTIFY: the next writer takes it.
drop function if exists certyo.relay_wait();
drop function if exists certyo.relay_busy();
drop table certyo.waiting_relay;
create table certyo.waiting_relay (
    relay uuid primary key,
    since timestamptz not null default pg_catalog.now()
);

-- Down Migration
drop function if exists certyo.relay_wait(uuid);
drop function if exists certyo.relay_busy(uuid);
drop table certyo.waiting_relay;
create table certyo.waiting_relay (
    pid integer primary key,
    since timestamptz not null default pg_catalog.now()
);
