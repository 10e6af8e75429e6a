-- certyo.wake(): AFTER statement trigger on tracked tables. Sends a NOTIFY only
-- while some relay is registered as waiting (certyo.waiting_relay), so a busy
-- or absent relay costs writers one index probe and no commit-time NOTIFY lock.
create or replace function certyo.wake()
returns trigger
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
    if exists (select from certyo.waiting_relay) then
        perform pg_notify('certyo_wakeup', '');
    end if;
    return null;
end
$$;

comment on function certyo.wake() is
    'AFTER statement trigger of tracked tables: wakes a waiting relay; silent while relays are busy.';
