"""Property-based: random sequences of create / purchase / cancel / retry-with-key keep the books balanced."""

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
REFUSALS = {"TA003", "TA005", "TA007"}


def books_machine(owner_url: str, api_url: str):
    class Books(RuleBasedStateMachine):
        options = Bundle("options")
        purchases = Bundle("purchases")

        def __init__(self):
            super().__init__()
            self.api = psycopg.connect(api_url, autocommit=True)  # calls go through the API role
            self.admin = psycopg.connect(admin_url_of(api_url), autocommit=True)  # and admin calls the admin role
            self.owner = psycopg.connect(owner_url, autocommit=True)
            self.initial: dict[uuid.UUID, int] = {}
            self.bought: dict[uuid.UUID, tuple[uuid.UUID, int]] = {}  # purchase -> (option, quantity), active
            self.cancelled: set[uuid.UUID] = set()

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

        @invariant()
        def books_balance(self):
            assert self.owner.execute("SELECT * FROM check_consistency()").fetchall() == []
            for option_id, initial in self.initial.items():
                remaining, sold, max_per_user = self.owner.execute(
                    "SELECT remaining, sold, max_per_user FROM ticket_options WHERE id = %s", (option_id,)).fetchone()
                assert remaining + sold == initial
                assert sold == sum(q for o, q in self.bought.values() if o == option_id)
                if max_per_user is not None:
                    held = self.owner.execute(
                        """SELECT coalesce(max(s), 0) FROM (SELECT sum(quantity) AS s FROM purchases
                           WHERE ticket_option_id = %s AND status = 'active' GROUP BY user_id) per_user""",
                        (option_id,)).fetchone()[0]
                    assert held <= max_per_user

    return Books


@pytest.mark.slow
def test_random_sequences_keep_the_books_balanced(database_url, api_database_url):
    run_state_machine_as_test(
        books_machine(database_url, api_database_url),
        settings=settings(max_examples=40, stateful_step_count=30, deadline=None, derandomize=True,
                          database=None, suppress_health_check=[HealthCheck.too_slow]),
    )
