-- Webhooks (issue 17). Fair delivery needed no schema change (sql/webhooks.sql:
-- claim_webhook_deliveries; service/webhooks.py); this migration gives webhook
-- URLs a shape every HTTP client reads alike, backed by a CHECK: what the
-- service and psql callers register is what the deliverer connects to.
-- Subscriptions registered before whose URL breaks the rule are disabled (their
-- disabled_reason says why), and credentials are removed from every stored URL
-- (GET /webhooks showed them). Locks (README, Migrations): the webhooks table
-- holds a handful of rows; its UPDATE and VALIDATE take milliseconds.
-- depends: 0009_events

-- webhook_url_problem(p_url text) RETURNS text
-- Why p_url cannot be a webhook destination, or null if it can. The shape only
-- (addresses are the service's to check, against WEBHOOK_ALLOWED_NETWORKS, at
-- registration and at every delivery: service/destinations.py):
--   http or https, at most 2000 characters, only RFC 3986 characters (so no
--   spaces, backslashes or raw non-ASCII), well-formed percent-escapes; no
--   credentials (user:password@); a host: a DNS name of letter-digit-hyphen
--   labels of 1-63 characters (IDNA-encoded), at most 253 in all, an IPv4
--   address as four decimal numbers 0-255 without leading zeros (a name whose
--   last label is a number is one: 2130706433, 0x7f.1 or 127.1 mean 127.0.0.1
--   to some clients), or an IPv6 address in brackets without a zone; a port,
--   if given, from 1 to 65535.
-- IMMUTABLE: a CHECK uses it, so it lives here, and changing it takes a
-- migration that validates the URLs again.
CREATE FUNCTION ticket_allocation.webhook_url_problem(p_url text)
RETURNS text
LANGUAGE plpgsql
IMMUTABLE
STRICT
PARALLEL SAFE
SET search_path = ticket_allocation, api, pg_temp
AS $$
DECLARE
    parts text[];
    host text;
    port text;
    address inet;
BEGIN
    IF char_length(p_url) > 2000 THEN
        RETURN 'must be at most 2000 characters';
    ELSIF p_url ~ '[^A-Za-z0-9._~:/?#\[\]@!$&''()*+,;=%-]' THEN
        RETURN 'must be a URL of printable ASCII (RFC 3986): percent-encode other characters, IDNA-encode host names';
    ELSIF p_url ~ '%([^0-9A-Fa-f]|.[^0-9A-Fa-f]|.?$)' THEN
        RETURN 'must write % as a percent-escape: % and two hexadecimal digits';
    END IF;
    parts := regexp_match(p_url, '^([A-Za-z][A-Za-z0-9+.-]*)://([^/?#]*)');
    IF parts IS NULL OR lower(parts[1]) NOT IN ('http', 'https') THEN
        RETURN 'must be an http or https URL';
    ELSIF strpos(parts[2], '@') > 0 THEN
        RETURN 'must not contain credentials (user:password@): receivers authenticate deliveries by their signature';
    END IF;
    parts := regexp_match(parts[2], '^(\[[^\]]*\]|[^:\[\]]*)(:[^:]*)?$');
    IF parts IS NULL OR parts[1] = '' THEN
        RETURN 'must have a host, and at most one port';
    END IF;
    host := parts[1];
    port := substr(parts[2], 2);
    IF port IS NOT NULL AND (port !~ '^[0-9]{1,5}$' OR port::integer NOT BETWEEN 1 AND 65535) THEN
        RETURN 'must have a port from 1 to 65535, or none';
    END IF;
    IF host LIKE '[%' THEN
        IF host !~ '^\[[0-9A-Fa-f:.]+\]$' THEN
            RETURN 'must have an IPv6 address in brackets (without a zone)';
        END IF;
        BEGIN
            address := substr(host, 2, char_length(host) - 2)::inet;
        EXCEPTION WHEN invalid_text_representation THEN
            RETURN 'must have a valid IPv6 address in brackets';
        END;
        IF family(address) <> 6 THEN
            RETURN 'must have a valid IPv6 address in brackets';
        END IF;
    ELSIF host ~* '(^|\.)(0x[0-9a-f]*|[0-9]+)\.?$' THEN
        IF host !~ '^((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])$' THEN
            RETURN 'must write an IPv4 address as four decimal numbers from 0 to 255, without leading zeros';
        END IF;
    ELSIF char_length(rtrim(host, '.')) > 253
          OR rtrim(host, '.') !~ '^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$'
          OR host LIKE '%..' THEN
        RETURN 'must have a host name of labels of 1 to 63 letters, digits or hyphens (not first or last), at most 253 characters';
    END IF;
    RETURN NULL;
END;
$$;

-- Credentials out of every stored URL (the subscriptions that had them are disabled below).
UPDATE ticket_allocation.webhooks
SET url = regexp_replace(url, '^([A-Za-z][A-Za-z0-9+.-]*://)[^/?#]*@', '\1'),
    enabled = false,
    disabled_reason = 'its URL had credentials (now removed from it), which webhook URLs may not have since '
                      'migration 0014: subscribe again without them'
WHERE url ~ '^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*@';

UPDATE ticket_allocation.webhooks
SET enabled = false,
    disabled_reason = format('its URL breaks the rule of migration 0014 (url %s): subscribe a valid one',
                             ticket_allocation.webhook_url_problem(url))
WHERE enabled AND ticket_allocation.webhook_url_problem(url) IS NOT NULL;

-- Disabled subscriptions keep the URL they had (for the record); none is sent anything.
ALTER TABLE ticket_allocation.webhooks
    ADD CONSTRAINT webhooks_url_valid CHECK (NOT enabled OR ticket_allocation.webhook_url_problem(url) IS NULL) NOT VALID;
ALTER TABLE ticket_allocation.webhooks VALIDATE CONSTRAINT webhooks_url_valid;
