-- Events (issue 13): a transactional outbox, the feed over it, and webhook
-- subscriptions with their delivery state. Every table here is new (empty),
-- so building its indexes in the transaction locks nothing anyone uses; the
-- settings row (one row) gains columns with constant defaults, a catalog-only
-- change. Locks (README, Migrations): milliseconds of ACCESS EXCLUSIVE on
-- ticket_allocation.settings.
-- depends: 0007_api_schema

-- The outbox: appended in the transaction that makes the change (sql/events.sql).
-- Ids come from a sequence and are not commit-ordered; `xid` (the writing
-- transaction) is what the feed orders by first, see api.events_after.
CREATE TABLE ticket_allocation.events (
    id           bigint       GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    xid          xid8         NOT NULL DEFAULT pg_current_xact_id(),
    type         text         NOT NULL CONSTRAINT events_type_known CHECK (type ~ '^[a-z_]+\.[a-z_]+$'),
    occurred_at  timestamptz  NOT NULL DEFAULT now(),
    data         jsonb        NOT NULL
);
CREATE INDEX events_feed_order ON ticket_allocation.events (xid, id);
-- A filtered page reads at most `limit` rows per type (see api.events_after).
CREATE INDEX events_by_type ON ticket_allocation.events (type, xid, id);

ALTER TABLE ticket_allocation.settings
    -- Events older than this are purged (api.purge_old_events); a subscription that
    -- falls further behind loses them.
    ADD COLUMN event_retention interval NOT NULL DEFAULT '7 days'
        CONSTRAINT settings_event_retention_range CHECK (event_retention BETWEEN '1 hour' AND '365 days'),
    -- Webhook retries: the first waits about webhook_retry_base, each next one twice as
    -- long (with jitter) up to webhook_retry_max; a subscription whose event keeps
    -- failing for webhook_give_up_after is disabled.
    ADD COLUMN webhook_retry_base interval NOT NULL DEFAULT '10 seconds'
        CONSTRAINT settings_webhook_retry_base_positive CHECK (webhook_retry_base > '0'),
    ADD COLUMN webhook_retry_max interval NOT NULL DEFAULT '1 hour'
        CONSTRAINT settings_webhook_retry_max_positive CHECK (webhook_retry_max > '0'),
    ADD COLUMN webhook_give_up_after interval NOT NULL DEFAULT '3 days'
        CONSTRAINT settings_webhook_give_up_after_min CHECK (webhook_give_up_after >= '24 hours');

-- A subscription, and where its delivery stands in the feed: every event up
-- to (cursor_xid, cursor_id) is delivered; pending_event_id is the next one,
-- being tried (attempts so far), and the subscription is not tried again
-- before next_attempt_at nor while a worker's lease (leased_until) runs.
CREATE TABLE ticket_allocation.webhooks (
    id                uuid         PRIMARY KEY DEFAULT gen_random_uuid(),
    url               text         NOT NULL CONSTRAINT webhooks_url_http CHECK (url ~* '^https?://[^/?#]+' AND char_length(url) <= 2000),
    types             text[]       CONSTRAINT webhooks_types_not_empty CHECK (cardinality(types) > 0),
    description       text         NOT NULL DEFAULT '' CONSTRAINT webhooks_description_length CHECK (char_length(description) <= 500),
    enabled           boolean      NOT NULL DEFAULT true,
    disabled_reason   text,
    created_at        timestamptz  NOT NULL DEFAULT now(),
    cursor_xid        xid8         NOT NULL,
    cursor_id         bigint       NOT NULL DEFAULT 0,
    pending_event_id  bigint,
    attempts          integer      NOT NULL DEFAULT 0,
    first_failed_at   timestamptz,
    next_attempt_at   timestamptz  NOT NULL DEFAULT now(),
    leased_until      timestamptz
);
CREATE INDEX webhooks_due ON ticket_allocation.webhooks (next_attempt_at) WHERE enabled;

-- Signing secrets apart from the subscriptions: only the owner's functions read
-- them, and only api.claim_webhook_deliveries (admin) hands them out.
CREATE TABLE ticket_allocation.webhook_secrets (
    webhook_id  uuid  PRIMARY KEY REFERENCES ticket_allocation.webhooks ON DELETE CASCADE,
    secret      text  NOT NULL CONSTRAINT webhook_secrets_format CHECK (secret ~ '^whsec_[A-Za-z0-9+/=]+$')
);

-- Every delivery attempt: outcome null while in flight (or abandoned by a
-- worker that died; the lease then expires and the event is tried again).
CREATE TABLE ticket_allocation.webhook_attempts (
    id           bigint       GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    webhook_id   uuid         NOT NULL REFERENCES ticket_allocation.webhooks ON DELETE CASCADE,
    event_id     bigint       NOT NULL,
    attempt      integer      NOT NULL,
    started_at   timestamptz  NOT NULL DEFAULT now(),
    finished_at  timestamptz,
    status_code  integer,
    outcome      text         CONSTRAINT webhook_attempts_outcome CHECK (outcome IN ('delivered', 'failed', 'gone')),
    error        text
);
CREATE INDEX webhook_attempts_by_webhook ON ticket_allocation.webhook_attempts (webhook_id, id);

CREATE TYPE api.event AS (
    id           bigint,
    type         text,
    occurred_at  timestamptz,
    data         jsonb,
    cursor       text
);
CREATE TYPE api.webhook AS (
    id           uuid,
    url          text,
    types        text[],
    description  text,
    enabled      boolean,
    disabled_reason text,
    created_at   timestamptz
);
-- The answer to creating one: the only time its secret is shown.
CREATE TYPE api.created_webhook AS (
    id           uuid,
    url          text,
    types        text[],
    description  text,
    enabled      boolean,
    disabled_reason text,
    created_at   timestamptz,
    secret       text
);
CREATE TYPE api.webhook_delivery AS (
    id           bigint,
    event_id     bigint,
    attempt      integer,
    started_at   timestamptz,
    finished_at  timestamptz,
    status_code  integer,
    outcome      text,
    error        text
);
-- What a delivery worker claimed: one attempt of one event to one subscription.
CREATE TYPE api.claimed_delivery AS (
    attempt_id   bigint,
    webhook_id   uuid,
    url          text,
    secret       text,
    event_id     bigint,
    attempt      integer,
    body         jsonb
);
