-- Webhook event ids include the tenant (docs/architecture.md, "Ids and tenants"): the
-- same platform call sent to two tenants is two events. Ids in the log are never rewritten, so
-- a tenant that exists now keeps the earlier ids (platform, webhook type, call id) for its
-- events that occurred before `legacy_ids_before`: a webhook of an earlier call that is
-- redelivered or imported after the upgrade gets the id its event already has, and is
-- not extracted, embedded or summarised a second time. Tenants created from now on have
-- NULL: every id of theirs includes the tenant.
--
-- One hour from now rather than now: ingest processes of the previous release, still
-- running during a rolling deploy, append earlier ids until they stop; a call that ends
-- in that hour gets the earlier id from the new release too.
ALTER TABLE memstream.tenants ADD COLUMN legacy_ids_before timestamptz;
UPDATE memstream.tenants SET legacy_ids_before = now() + interval '1 hour';

-- The import ledger knows an id per tenant: two tenants can hold the same earlier id.
ALTER TABLE memstream.imported_events DROP CONSTRAINT imported_events_pkey;
ALTER TABLE memstream.imported_events ADD PRIMARY KEY (tenant, event_id);
