-- certyo.wake(): AFTER statement trigger on tracked tables (ordinary tables:
-- AFTER UPDATE only, capture_rows wakes for inserts and deletes). Sends a NOTIFY only
-- while some relay is registered as waiting (certyo.waiting_relay), so a busy
-- or absent relay costs writers one index probe and no commit-time NOTIFY lock.
-- One NOTIFY per wait: the first writer takes the registrations (skip locked:
-- concurrent writers neither wait nor notify), and a woken relay registers
-- again only when it finds nothing to claim. NOTIFY serialises commits, so
-- notifying on every write while a relay keeps up would throttle the writers.
-- certyo.wake_relays(): takes the waiting relays' registrations and notifies
-- them; called by certyo.wake() and, for inserts and deletes of ordinary
-- tables, by certyo.capture_rows() (which asks whether any relay waits in the
-- statement that writes the outbox: one trigger call fewer per statement).
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

create or replace function certyo.wake()
returns trigger
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
    if exists (select from certyo.waiting_relay) then
        perform certyo.wake_relays();
    end if;
    return null;
end
$$;

comment on function certyo.wake() is
    'AFTER statement trigger of tracked tables: wakes a waiting relay; silent while relays are busy.';
