-- release_hold tells whether it released (issue 20): releasing a hold that is
-- already released or expired changes nothing, and its caller (the service's
-- metrics) must not count it. Its result becomes api.hold_release, as
-- confirm_hold's is api.hold_confirmation (created, purchase).
--
-- Locks (README, Migrations): catalog only (a new type; the function is
-- dropped here and re-created by post-apply, so release_hold is missing for
-- the moment between the two). Run it with the new version of the service:
-- the old one reads the hold's fields from the result.
-- depends: 0016_deferred_outcomes

-- What release_hold returns: the hold as it is now, and whether this call
-- released it (false: it was released or expired before).
CREATE TYPE api.hold_release AS (
    released  boolean,
    hold      api.hold
);
-- Its result type changes, which CREATE OR REPLACE refuses.
DROP FUNCTION IF EXISTS api.release_hold(uuid);
