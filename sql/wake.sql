-- Wake-up: capture (certyo.capture_rows for inserts and deletes of ordinary
-- tables, certyo.capture for the rest) sends a NOTIFY only while some relay is
-- registered as waiting (certyo.waiting_relay), so a busy or absent relay costs
-- writers one probe and no commit-time NOTIFY lock.
-- One NOTIFY per wait: the first writer takes the registrations (skip locked:
-- concurrent writers neither wait nor notify), and a woken relay registers
-- again only when it finds nothing to claim. NOTIFY serialises commits, so
-- notifying on every write while a relay keeps up would throttle the writers.
-- certyo.wake_relays(): takes the waiting relays' registrations and notifies
-- them; called by capture, which asks whether any relay waits in the statement
-- that writes the outbox (a trigger of its own cost more than the probe).
create or replace function certyo.wake_relays()
returns void
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
begin
    delete from certyo.waiting_relay w
    where w.relay in (select x.relay from certyo.waiting_relay x for update skip locked);
    if found then
        perform pg_notify('certyo_wakeup', '');
    end if;
end
$$;

comment on function certyo.wake_relays() is
    'Capture: wake the relays registered as waiting (one NOTIFY per wait).';

-- certyo.wake(): the statement trigger tables tracked before capture woke
-- relays itself had (certyo_wake). It has nothing left to do; enable_tracking
-- no longer creates it, and running enable_tracking again removes it.
create or replace function certyo.wake()
returns trigger
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
    return null;
end
$$;

comment on function certyo.wake() is
    'Statement trigger of tables tracked by an earlier version: does nothing (capture wakes relays itself).';
