-- Purchase batches: refusals as data, so that one call can decide many
-- purchases, each all or nothing, without aborting the others.
-- depends: 0002_purchases_as_resources

-- Their results change; post-apply re-creates them (IF EXISTS: see 0002).
DROP FUNCTION IF EXISTS claim_idempotency_key(text, jsonb);
DROP FUNCTION IF EXISTS remember_idempotency_key(text, jsonb, uuid, uuid);
DROP FUNCTION IF EXISTS purchase_tickets(uuid, uuid, integer, text);

-- Why a request was refused: what the single-request functions raise.
CREATE TYPE refusal AS (
    sqlstate     text,
    message      text,
    detail       text,
    hint         text,
    column_name  text
);

-- The answer to one request of a batch: a refusal, or the purchase's receipt.
CREATE TYPE purchase_outcome AS (
    ordinal  integer,
    refusal  refusal,
    receipt  purchase_receipts
);
