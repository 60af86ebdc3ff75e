-- api.check_consistency() RETURNS TABLE (invariant text, ticket_option_id uuid, detail text)
-- Every violated invariant of the books, one row each; no rows when all hold.
-- Admin, for operators (and the fault tests): SELECT * FROM api.check_consistency();
-- It reads every option, purchase and ticket, so run it off-peak on a large
-- database. Invariants (the names in `invariant`):
--   remaining_not_negative     remaining >= 0
--   total_is_remaining_plus_sold  remaining + sold = total
--   sold_is_active_purchases   sold = sum of the quantities of active purchases
--   tickets_match_quantity     a purchase has exactly `quantity` tickets
--   tickets_void_iff_cancelled a purchase's tickets are void exactly when it is cancelled
-- Errors: none.
CREATE OR REPLACE FUNCTION api.check_consistency()
RETURNS TABLE (invariant text, ticket_option_id uuid, detail text)
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = ticket_allocation, api, pg_temp
AS $$
    WITH option_books AS (
        SELECT o.id, o.remaining, o.sold, o.total,
               coalesce(sum(p.quantity) FILTER (WHERE p.status = 'active'), 0) AS active_quantity
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
    SELECT 'total_is_remaining_plus_sold', id, format('remaining %s + sold %s <> total %s', remaining, sold, total)
    FROM option_books WHERE remaining + sold <> total
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
$$;
