-- Names must show something, and nothing that hides or reorders what they show: "not blank"
-- becomes Unicode-aware (whitespace and format characters are blank, not only ASCII spaces), and
-- control and bidirectional-override characters are refused anywhere in a name.
-- depends: 0004_idempotency_key_scope

-- name_problem(p_name text) RETURNS text
-- Why p_name cannot be a name ("must not be blank", "must not contain ..."), or null if it can.
-- Blank: only White_Space and format (Cf) characters. Control (Cc) characters, and the
-- bidirectional embeddings, overrides and isolates (U+202A-202E, U+2066-2069), which make a name
-- display as something else, are refused anywhere. IMMUTABLE (code points, no locale): a CHECK
-- uses it, so it lives here, and changing it takes a migration that validates the names again.
CREATE OR REPLACE FUNCTION name_problem(p_name text)
RETURNS text
LANGUAGE sql
IMMUTABLE
STRICT
PARALLEL SAFE
AS $$
    SELECT CASE
        WHEN p_name ~ '[\x01-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]'
            THEN 'must not contain control or bidirectional-override characters'
        WHEN p_name !~ ('[^\x20\u0085\u00a0\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u1680\u180e'
                        '\u2000-\u200f\u2028-\u202f\u205f-\u2064\u206a-\u206f\u3000\ufeff\ufff9-\ufffb'
                        '\U000110bd\U000110cd\U00013430-\U0001343f\U0001bca0-\U0001bca3\U0001d173-\U0001d17a'
                        '\U000e0001\U000e0020-\U000e007f]')
            THEN 'must not be blank'
    END
$$;

ALTER TABLE ticket_options DROP CONSTRAINT ticket_options_name_not_blank;
-- NOT VALID, then VALIDATE: existing rows are checked without blocking writes meanwhile.
ALTER TABLE ticket_options
    ADD CONSTRAINT ticket_options_name_visible CHECK (name_problem(name) IS NULL) NOT VALID;
ALTER TABLE ticket_options VALIDATE CONSTRAINT ticket_options_name_visible;
