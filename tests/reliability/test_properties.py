"""Property-based: random sequences of create / purchase / cancel / retry-with-key / hold / confirm / release /
advance the clock / sweep / quotas / orders (placed, confirmed, released, cancelled) keep the books of options
and quotas balanced, and agree with a model of what each call must do."""

import uuid

import hypothesis.strategies as st
import psycopg
import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, multiple, rule, run_state_machine_as_test

from ..processes import admin_url_of

USERS = [uuid.UUID(int=n) for n in range(1, 5)]
KEYS = [f"key-{n}" for n in range(6)]
# What a caller may be refused with; anything else is a bug.
REFUSALS = {"TA003", "TA005", "TA007", "TA014"}
# Hold TTLs and clock steps are whole minutes, so the seconds the test itself takes never decide an expiry:
# a hold made at offset o with ttl t is expired exactly when the offset reaches o + t.
TTL_MINUTES = (5, 10, 20)


def books_machine(owner_url: str, api_url: str):
    class Books(RuleBasedStateMachine):
        options = Bundle("options")
        purchases = Bundle("purchases")
        holds = Bundle("holds")  # holds of their own (an order's are confirmed and released with it)
        quotas = Bundle("quotas")
        orders = Bundle("orders")

        def __init__(self):
            super().__init__()
            self.api = psycopg.connect(api_url, autocommit=True)  # calls go through the API role
            self.admin = psycopg.connect(admin_url_of(api_url), autocommit=True)  # and admin calls the admin role
            self.owner = psycopg.connect(owner_url, autocommit=True)
            self.initial: dict[uuid.UUID, int] = {}
            self.bought: dict[uuid.UUID, tuple[uuid.UUID, int]] = {}  # purchase -> (option, quantity), active
            self.cancelled: set[uuid.UUID] = set()
            # hold -> [option, user, quantity, expires at (offset minutes), stored state: held/confirmed/released]
            self.held: dict[uuid.UUID, list] = {}
            self.confirmed_by: dict[uuid.UUID, uuid.UUID] = {}  # hold -> its purchase
            self.quota_options: dict[uuid.UUID, set[uuid.UUID]] = {}  # quota -> the options it counts
            self.quota_size: dict[uuid.UUID, int] = {}
            # order -> [stored state: held/confirmed/released, its line holds, its line purchases]
            self.placed: dict[uuid.UUID, list] = {}
            self.offset = self.owner.execute(
                "SELECT extract(epoch FROM clock_offset)::integer / 60 FROM ticket_allocation.settings").fetchone()[0]

        def teardown(self):
            self.api.close()
            self.admin.close()
            self.owner.close()

        @rule(target=options, allocation=st.integers(0, 20), max_per_user=st.none() | st.integers(1, 6))
        def create(self, allocation, max_per_user):
            option_id = self.admin.execute(
                "SELECT id FROM create_ticket_option('Gig', '', %s, %s)", (allocation, max_per_user)).fetchone()[0]
            self.initial[option_id] = allocation
            return option_id

        @rule(target=purchases, option_id=options, user=st.sampled_from(USERS), quantity=st.integers(1, 6),
              key=st.none() | st.sampled_from(KEYS))
        def purchase(self, option_id, user, quantity, key):
            try:
                purchase_id, status = self.api.execute(
                    "SELECT id, status FROM purchase_tickets(%s, %s, %s, %s)", (option_id, user, quantity, key)
                ).fetchone()
            except psycopg.Error as error:
                assert error.sqlstate in REFUSALS, error
                return multiple()
            if purchase_id in self.bought or purchase_id in self.cancelled:  # a retry with its key: nothing new
                assert key is not None
                return multiple()
            assert status == "active"
            self.bought[purchase_id] = (option_id, quantity)
            return purchase_id

        @rule(purchase_id=purchases)
        def cancel(self, purchase_id):
            status = self.admin.execute("SELECT status FROM cancel_purchase(%s)", (purchase_id,)).fetchone()[0]
            assert status == "cancelled"
            if purchase_id in self.bought:
                del self.bought[purchase_id]
                self.cancelled.add(purchase_id)

        @rule(target=quotas, option_ids=st.lists(options, min_size=1, max_size=3, unique=True),
              size=st.integers(0, 25))
        def create_quota(self, option_ids, size):
            counted = sum(self.sold(o) + self.live(o) for o in option_ids)
            try:
                quota_id = self.admin.execute(
                    "SELECT id FROM create_quota('Hall', %s, %s)", (size, option_ids)).fetchone()[0]
            except psycopg.Error as error:
                assert error.sqlstate == "TA016" and size < counted, error
                return multiple()
            assert size >= counted
            self.quota_options[quota_id] = set(option_ids)
            self.quota_size[quota_id] = size
            return quota_id

        @rule(quota_id=quotas, size=st.integers(0, 25))
        def resize_quota(self, quota_id, size):
            counted = sum(self.sold(o) + self.live(o) for o in self.quota_options[quota_id])
            try:
                self.admin.execute("SELECT * FROM update_quota(%s, %s)", (quota_id, size))
            except psycopg.Error as error:
                assert error.sqlstate == "TA016" and size < counted, error
                return
            assert size >= counted
            self.quota_size[quota_id] = size

        def order_status(self, order_id):
            state, hold_ids, purchase_ids = self.placed[order_id]
            if state == "held":
                return self.status(hold_ids[0])  # its lines expire together
            if state == "confirmed" and purchase_ids:
                cancelled = sum(p in self.cancelled for p in purchase_ids)
                return {0: "confirmed", len(purchase_ids): "cancelled"}.get(cancelled, "partially_cancelled")
            return state

        @rule(target=orders, option_ids=st.lists(options, min_size=1, max_size=3, unique=True),
              quantities=st.lists(st.integers(1, 4), min_size=3, max_size=3), user=st.sampled_from(USERS),
              ttl=st.none() | st.sampled_from(TTL_MINUTES), key=st.none() | st.sampled_from(KEYS))
        def place_order(self, option_ids, quantities, user, ttl, key):
            lines = list(zip(option_ids, quantities))
            try:
                order_id, status = self.api.execute(
                    "SELECT id, status FROM place_order(%s, %s::order_line[], make_interval(mins => %s), %s)",
                    (user, [f"({o},{q})" for o, q in lines], ttl, key)).fetchone()
            except psycopg.Error as error:
                assert error.sqlstate in REFUSALS, error
                if error.sqlstate != "TA005":  # refused whole: every failing line named, nothing taken
                    assert error.diag.column_name == "lines" and error.diag.message_detail.startswith('[{"line"')
                return multiple()
            if order_id in self.placed:  # a retry with its key: the first order, as it is now
                assert key is not None and status == self.order_status(order_id)
                return multiple()
            lines_now = self.owner.execute(
                "SELECT hold_id, purchase_id FROM order_lines WHERE order_id = %s ORDER BY line", (order_id,)).fetchall()
            assert len(lines_now) == len(lines)
            if ttl is None:
                assert status == "confirmed"
                for (option_id, quantity), (_, purchase_id) in zip(lines, lines_now, strict=True):
                    self.bought[purchase_id] = (option_id, quantity)
                self.placed[order_id] = ["confirmed", [], [p for _, p in lines_now]]
            else:
                assert status == "held"
                for (option_id, quantity), (hold_id, _) in zip(lines, lines_now, strict=True):
                    self.held[hold_id] = [option_id, user, quantity, self.offset + ttl, "held"]
                self.placed[order_id] = ["held", [h for h, _ in lines_now], []]
            return order_id

        @rule(target=purchases, order_id=orders)
        def confirm_order(self, order_id):
            expected = self.order_status(order_id)
            try:
                created, purchase_ids = self.api.execute(
                    "SELECT created, ARRAY(SELECT p.id FROM unnest((\"order\").purchases) AS p) FROM confirm_order(%s)",
                    (order_id,)).fetchone()
            except psycopg.Error as error:
                assert (expected, error.sqlstate) in {("expired", "TA018"), ("released", "TA019")}, error
                return multiple()
            state, hold_ids, known = self.placed[order_id]
            if expected != "held":
                assert not created and purchase_ids == known
                return multiple()
            assert created and len(purchase_ids) == len(hold_ids)
            for hold_id, purchase_id in zip(hold_ids, purchase_ids, strict=True):
                option_id, _, quantity, _, _ = self.held[hold_id]
                self.held[hold_id][4] = "confirmed"
                self.bought[purchase_id] = (option_id, quantity)
            self.placed[order_id] = ["confirmed", hold_ids, purchase_ids]
            return multiple(*purchase_ids)

        @rule(order_id=orders)
        def release_order(self, order_id):
            expected = self.order_status(order_id)
            try:
                status = self.api.execute("SELECT status FROM release_order(%s)", (order_id,)).fetchone()[0]
            except psycopg.Error as error:
                assert expected in ("confirmed", "partially_cancelled", "cancelled") and error.sqlstate == "TA020", error
                return
            if expected == "held":
                for hold_id in self.placed[order_id][1]:
                    self.held[hold_id][4] = "released"
                self.placed[order_id][0] = expected = "released"
            assert status == expected

        @rule(order_id=orders)
        def cancel_order(self, order_id):
            expected = self.order_status(order_id)
            try:
                status = self.admin.execute("SELECT status FROM cancel_order(%s)", (order_id,)).fetchone()[0]
            except psycopg.Error as error:
                assert expected in ("held", "released", "expired") and error.sqlstate == "TA021", error
                return
            assert status == "cancelled"
            for purchase_id in self.placed[order_id][2]:
                if self.bought.pop(purchase_id, None):
                    self.cancelled.add(purchase_id)

        def status(self, hold_id):
            option_id, user, quantity, expires, state = self.held[hold_id]
            return "expired" if state == "held" and self.offset >= expires else state

        @rule(target=holds, option_id=options, user=st.sampled_from(USERS), quantity=st.integers(1, 6),
              ttl=st.sampled_from(TTL_MINUTES), key=st.none() | st.sampled_from(KEYS))
        def hold(self, option_id, user, quantity, ttl, key):
            try:
                hold_id, status = self.api.execute(
                    "SELECT id, status FROM hold_tickets(%s, %s, %s, make_interval(mins => %s), %s)",
                    (option_id, user, quantity, ttl, key)).fetchone()
            except psycopg.Error as error:
                assert error.sqlstate in REFUSALS, error
                return multiple()
            if hold_id in self.held:  # a retry with its key: the first hold, as it is now
                assert key is not None and status == self.status(hold_id)
                return multiple()
            assert status == "held"
            self.held[hold_id] = [option_id, user, quantity, self.offset + ttl, "held"]
            return hold_id

        @rule(target=purchases, hold_id=holds)
        def confirm(self, hold_id):
            expected = self.status(hold_id)
            try:
                created, purchase_id = self.api.execute(
                    "SELECT created, (purchase).id FROM confirm_hold(%s)", (hold_id,)).fetchone()
            except psycopg.Error as error:
                assert (expected, error.sqlstate) in {("expired", "TA010"), ("released", "TA011")}, error
                return multiple()
            if expected == "confirmed":
                assert not created and purchase_id == self.confirmed_by[hold_id]
                return multiple()
            assert expected == "held" and created
            option_id, user, quantity, _, _ = self.held[hold_id]
            self.held[hold_id][4] = "confirmed"
            self.confirmed_by[hold_id] = purchase_id
            self.bought[purchase_id] = (option_id, quantity)
            return purchase_id

        @rule(hold_id=holds)
        def release(self, hold_id):
            expected = self.status(hold_id)
            try:
                status = self.api.execute("SELECT (hold).status FROM release_hold(%s)", (hold_id,)).fetchone()[0]
            except psycopg.Error as error:
                assert expected == "confirmed" and error.sqlstate == "TA012", error
                return
            if expected == "held":
                self.held[hold_id][4] = "released"
                expected = "released"
            assert status == expected

        @rule(minutes=st.sampled_from((5, 10)))
        def advance_clock(self, minutes):
            self.owner.execute(
                "UPDATE ticket_allocation.settings SET clock_offset = clock_offset + make_interval(mins => %s)",
                (minutes,))
            self.offset += minutes

        @rule()
        def sweep(self):
            self.admin.execute("SELECT release_expired_holds()")

        def sold(self, option_id):
            return sum(q for o, q in self.bought.values() if o == option_id)

        def live(self, option_id, user=None):
            """Tickets of the option held now (by `user`, if given), per the model."""
            return sum(q for h, (o, u, q, _, _) in self.held.items()
                       if o == option_id and (user is None or u == user) and self.status(h) == "held")

        @invariant()
        def books_balance(self):
            assert self.owner.execute("SELECT * FROM check_consistency()").fetchall() == []
            for option_id, initial in self.initial.items():
                remaining, held, sold, max_per_user = self.api.execute(
                    "SELECT remaining, held, sold, max_per_user FROM get_ticket_option(%s)", (option_id,)).fetchone()
                assert remaining + held + sold == initial
                assert sold == sum(q for o, q in self.bought.values() if o == option_id)
                assert held == self.live(option_id)
                if max_per_user is not None:
                    for user in USERS:
                        bought = self.owner.execute(
                            """SELECT coalesce(sum(quantity), 0) FROM purchases
                               WHERE ticket_option_id = %s AND user_id = %s AND status = 'active'""",
                            (option_id, user)).fetchone()[0]
                        assert bought + self.live(option_id, user) <= max_per_user
            for hold_id in self.held:
                assert self.api.execute("SELECT status FROM get_hold(%s)", (hold_id,)).fetchone()[0] == self.status(hold_id)
            for quota_id, option_ids in self.quota_options.items():
                size, sold, held, remaining = self.admin.execute(
                    "SELECT size, sold, held, remaining FROM get_quota(%s)", (quota_id,)).fetchone()
                assert size == self.quota_size[quota_id]
                assert sold == sum(self.sold(o) for o in option_ids)
                assert held == sum(self.live(o) for o in option_ids)
                assert remaining == size - sold - held >= 0  # never oversold
            for order_id in self.placed:
                assert self.api.execute("SELECT status FROM get_order(%s)", (order_id,)).fetchone()[0] == \
                    self.order_status(order_id)

    return Books


@pytest.mark.slow
def test_random_sequences_keep_the_books_balanced(database_url, api_database_url):
    run_state_machine_as_test(
        books_machine(database_url, api_database_url),
        settings=settings(max_examples=60, stateful_step_count=50, deadline=None, derandomize=True,
                          database=None, suppress_health_check=[HealthCheck.too_slow]),
    )
