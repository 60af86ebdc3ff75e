-- api.check_consistency() RETURNS TABLE (invariant text, ticket_option_id uuid, detail text)
-- Every violated invariant of the books, one row each; no rows when all hold.
-- Admin, for operators (and the fault tests): SELECT * FROM api.check_consistency();
-- It reads every option, purchase and ticket, so run it off-peak on a large
-- database. Invariants (the names in `invariant`):
--   remaining_not_negative     remaining >= 0
--   total_is_remaining_plus_held_plus_sold  remaining + held + sold = total
--   held_is_live_holds         held = sum of the quantities of holds stored `held`
--                              (unexpired, unreleased, unconfirmed as stored)
--   sold_is_active_purchases   sold = sum of the quantities of active purchases
--   tickets_match_quantity     a purchase has exactly `quantity` tickets
--   tickets_void_iff_cancelled a purchase's tickets are void exactly when it is cancelled
--   hold_confirmed_xor_released no hold is both confirmed and released
--   confirmed_hold_purchase    a confirmed hold's purchase exists, of its option, user and quantity
-- Errors: none.
CREATE OR REPLACE FUNCTION api.check_consistency()
RETURNS TABLE (invariant text, ticket_option_id uuid, detail text)
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = ticket_allocation, api, pg_temp
AS $$
    WITH option_books AS (
        SELECT o.id, o.remaining, o.held, o.sold, o.total,
               coalesce(sum(p.quantity) FILTER (WHERE p.status = 'active'), 0) AS active_quantity,
               (SELECT coalesce(sum(h.quantity), 0) FROM holds h
                WHERE h.ticket_option_id = o.id AND h.status = 'held') AS live_held
        FROM ticket_options o
        LEFT JOIN purchases p ON p.ticket_option_id = o.id
        GROUP BY o.id
    ), purchase_tickets AS (
        SELECT p.id, p.ticket_option_id, p.quantity, p.status,
               count(t.id) AS tickets,
               count(t.id) FILTER (WHERE t.voided_at IS NOT NULL) AS void_tickets
        FROM purchases p
        LEFT JOIN tickets t ON t.purchase_id = p.id
        GROUP BY p.id
    )
    SELECT 'remaining_not_negative', id, format('remaining is %s', remaining)
    FROM option_books WHERE remaining < 0
    UNION ALL
    SELECT 'total_is_remaining_plus_held_plus_sold', id,
           format('remaining %s + held %s + sold %s <> total %s', remaining, held, sold, total)
    FROM option_books WHERE remaining + held + sold <> total
    UNION ALL
    SELECT 'held_is_live_holds', id, format('held %s, holds stored held hold %s', held, live_held)
    FROM option_books WHERE held <> live_held
    UNION ALL
    SELECT 'sold_is_active_purchases', id, format('sold %s, active purchases hold %s', sold, active_quantity)
    FROM option_books WHERE sold <> active_quantity
    UNION ALL
    SELECT 'tickets_match_quantity', ticket_option_id, format('purchase %s: quantity %s, %s tickets', id, quantity, tickets)
    FROM purchase_tickets WHERE tickets <> quantity
    UNION ALL
    SELECT 'tickets_void_iff_cancelled', ticket_option_id,
           format('purchase %s is %s with %s of %s tickets void', id, status, void_tickets, tickets)
    FROM purchase_tickets
    WHERE void_tickets <> CASE WHEN status = 'cancelled' THEN tickets ELSE 0 END
    UNION ALL
    SELECT 'hold_confirmed_xor_released', h.ticket_option_id, format('hold %s is %s, confirmed at %s, released at %s',
                                                                  h.id, h.status, h.confirmed_at, h.released_at)
    FROM holds h WHERE h.confirmed_at IS NOT NULL AND h.released_at IS NOT NULL
    UNION ALL
    SELECT 'confirmed_hold_purchase', h.ticket_option_id,
           format('hold %s (user %s, %s tickets) confirmed by purchase %s (user %s, %s tickets, option %s)',
                  h.id, h.user_id, h.quantity, h.purchase_id, p.user_id, p.quantity, p.ticket_option_id)
    FROM holds h
    LEFT JOIN purchases p ON p.id = h.purchase_id
    WHERE h.status = 'confirmed'
      AND (p.id IS NULL OR (p.user_id, p.quantity, p.ticket_option_id)
                           IS DISTINCT FROM (h.user_id, h.quantity, h.ticket_option_id))
$$;
