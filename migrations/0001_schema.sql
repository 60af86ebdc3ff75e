-- The tables of ticket-allocation. Every rule the sql/ functions enforce is
-- backed here by a constraint, so no caller (HTTP, psql, a future function)
-- can store what the functions would refuse.

CREATE TABLE ticket_options (
    id          uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    name        text        NOT NULL
        CONSTRAINT ticket_options_name_not_blank CHECK (btrim(name) <> '')
        CONSTRAINT ticket_options_name_length CHECK (char_length(name) <= 200),
    "desc"      text        NOT NULL DEFAULT ''
        CONSTRAINT ticket_options_desc_length CHECK (char_length("desc") <= 2000),
    -- What remains on sale; purchases decrement it under a row lock.
    allocation  integer     NOT NULL
        CONSTRAINT ticket_options_allocation_not_negative CHECK (allocation >= 0),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE purchases (
    id                uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    ticket_option_id  uuid        NOT NULL REFERENCES ticket_options (id),
    user_id           uuid        NOT NULL,
    quantity          integer     NOT NULL
        CONSTRAINT purchases_quantity_range CHECK (quantity BETWEEN 1 AND 1000),
    created_at        timestamptz NOT NULL DEFAULT now(),
    -- Lets tickets reference (purchase, option) together, see below.
    CONSTRAINT purchases_id_option_unique UNIQUE (id, ticket_option_id)
);
CREATE INDEX purchases_ticket_option_id_idx ON purchases (ticket_option_id);

CREATE TABLE tickets (
    id                uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    ticket_option_id  uuid        NOT NULL REFERENCES ticket_options (id),
    purchase_id       uuid        NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    -- A ticket always belongs to the option its purchase was made on.
    CONSTRAINT tickets_purchase_fk FOREIGN KEY (purchase_id, ticket_option_id)
        REFERENCES purchases (id, ticket_option_id)
);
CREATE INDEX tickets_ticket_option_id_idx ON tickets (ticket_option_id);
CREATE INDEX tickets_purchase_id_idx ON tickets (purchase_id);
