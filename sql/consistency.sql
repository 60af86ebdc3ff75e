-- api.check_consistency() RETURNS TABLE (invariant text, ticket_option_id uuid, detail text)
-- Every violated invariant of the books, one row each; no rows when all hold.
-- Admin, for operators (and the fault tests): SELECT * FROM api.check_consistency();
-- It reads every option, purchase, ticket, quota and order, so run it off-peak on a large
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
--   quota_sold_is_options_sold a quota's sold = the sum of its options' sold (hence of their active purchases)
--   quota_held_is_options_held a quota's held = the sum of its options' held (hence of their holds stored held)
--   quota_remaining_not_negative size - sold - held >= 0
--   order_line_matches         an order line's purchase and hold are of its option, quantity and the order's user
--   order_status_matches_lines an order's status agrees with its lines' holds and purchases
--                              (held: holds stored held; released: released; expired: expired or
--                              not reclaimed yet; confirmed: purchases all active; partially_cancelled:
--                              some cancelled, some active; cancelled: all cancelled)
-- Quota and order rows carry ticket_option_id null and name the quota or order in detail.
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
    ), quota_books AS (
        SELECT q.id, q.size, q.sold, q.held,
               coalesce(sum(o.sold), 0) AS options_sold, coalesce(sum(o.held), 0) AS options_held
        FROM quotas q
        LEFT JOIN quota_options qo ON qo.quota_id = q.id
        LEFT JOIN ticket_options o ON o.id = qo.ticket_option_id
        GROUP BY q.id
    ), order_books AS (
        SELECT o.id, o.status,
               ARRAY(SELECT DISTINCT h.status FROM order_lines l JOIN holds h ON h.id = l.hold_id
                     WHERE l.order_id = o.id ORDER BY 1) AS hold_statuses,
               ARRAY(SELECT DISTINCT p.status FROM order_lines l JOIN purchases p ON p.id = l.purchase_id
                     WHERE l.order_id = o.id ORDER BY 1) AS purchase_statuses
        FROM orders o
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
    UNION ALL
    SELECT 'quota_sold_is_options_sold', NULL, format('quota %s: sold %s, its options sold %s', id, sold, options_sold)
    FROM quota_books WHERE sold <> options_sold
    UNION ALL
    SELECT 'quota_held_is_options_held', NULL, format('quota %s: held %s, its options hold %s', id, held, options_held)
    FROM quota_books WHERE held <> options_held
    UNION ALL
    SELECT 'quota_remaining_not_negative', NULL, format('quota %s: size %s - sold %s - held %s < 0', id, size, sold, held)
    FROM quota_books WHERE size - sold - held < 0
    UNION ALL
    SELECT 'order_line_matches', l.ticket_option_id,
           format('order %s line %s (%s tickets for user %s): purchase %s (%s, %s, %s), hold %s (%s, %s, %s)',
                  l.order_id, l.line, l.quantity, o.user_id, p.id, p.ticket_option_id, p.quantity, p.user_id,
                  h.id, h.ticket_option_id, h.quantity, h.user_id)
    FROM order_lines l
    JOIN orders o ON o.id = l.order_id
    LEFT JOIN purchases p ON p.id = l.purchase_id
    LEFT JOIN holds h ON h.id = l.hold_id
    WHERE (l.purchase_id IS NOT NULL AND (p.ticket_option_id, p.quantity, p.user_id, p.order_id)
                                         IS DISTINCT FROM (l.ticket_option_id, l.quantity, o.user_id, o.id))
       OR (l.hold_id IS NOT NULL AND (h.ticket_option_id, h.quantity, h.user_id, h.order_id, h.purchase_id)
                                     IS DISTINCT FROM (l.ticket_option_id, l.quantity, o.user_id, o.id, l.purchase_id))
    UNION ALL
    SELECT 'order_status_matches_lines', NULL,
           format('order %s is %s; its lines: holds %s, purchases %s', id, status, hold_statuses, purchase_statuses)
    FROM order_books
    WHERE NOT CASE status
        WHEN 'held' THEN hold_statuses = ARRAY['held'] AND purchase_statuses = '{}'
        WHEN 'released' THEN hold_statuses = ARRAY['released'] AND purchase_statuses = '{}'
        WHEN 'expired' THEN hold_statuses <@ ARRAY['held', 'expired'] AND purchase_statuses = '{}'
        WHEN 'confirmed' THEN purchase_statuses = ARRAY['active'] AND hold_statuses <@ ARRAY['confirmed']
        WHEN 'partially_cancelled' THEN purchase_statuses = ARRAY['active', 'cancelled']
        WHEN 'cancelled' THEN purchase_statuses = ARRAY['cancelled']
    END
$$;
