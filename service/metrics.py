"""Prometheus metrics: the series a worker counts (served at GET /metrics: service/metrics_http.py).

Every series carries the `worker` label of the process that counted it. Under
the server (service/server.py) prometheus_client runs in multiprocess mode:
each worker writes its values to files in PROMETHEUS_MULTIPROC_DIR, and a
scrape, whichever worker answers it, reads every worker's files, those of
workers that died included (their counts do not vanish; their gauges do).
Without that folder (an app made in-process, as in tests) the worker's own
registry is served.

An observation is a write to memory shared with those files (no system
call), so a worker's counts survive its death, SIGKILL included; the label
lookups before it are what costs, so the series a request touches are
looked up once and kept.
"""

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess



class Metrics:
    def __init__(self, worker: str):
        self.worker = worker
        self.registry = CollectorRegistry()
        http_labels = ("method", "route", "status", "worker")
        self.requests = Counter(
            "ticket_allocation_http_requests", "HTTP requests answered, by route template and status",
            http_labels, registry=self.registry,
        )
        self.request_seconds = Histogram(
            "ticket_allocation_http_request_duration_seconds", "Time to answer an HTTP request",
            http_labels, registry=self.registry,
        )
        self.purchases = Counter(
            "ticket_allocation_purchases", "Purchases answered 201 (a replayed Idempotency-Key counts again)",
            ("worker",), registry=self.registry,
        )
        self.tickets_sold = Counter(
            "ticket_allocation_tickets_sold", "Tickets in the purchases answered 201", ("worker",), registry=self.registry,
        )
        self.purchases_refused = Counter(
            "ticket_allocation_purchases_refused", "Purchases the rules refused, by problem type",
            ("reason", "worker"), registry=self.registry,
        )
        self.client_disconnects = Counter(
            "ticket_allocation_client_disconnects", "Clients that hung up before sending their whole request",
            ("worker",), registry=self.registry,
        )
        self.purchases_shed = Counter(
            "ticket_allocation_purchases_shed", "Purchases answered 503 at once: their queue was full",
            ("worker",), registry=self.registry,
        )
        self.purchase_batch_size = Histogram(
            "ticket_allocation_purchase_batch_size", "Purchases decided per purchase_tickets_batch call",
            ("worker",), buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256), registry=self.registry,
        )
        self.purchase_queue_depth = Gauge(
            "ticket_allocation_purchase_queue_depth", "Purchases waiting for a call in flight",
            ("worker",), registry=self.registry, multiprocess_mode="livesum",
        )
        self.holds = Counter(
            "ticket_allocation_holds", "Holds answered 201 (a replayed Idempotency-Key counts again)",
            ("worker",), registry=self.registry,
        )
        self.tickets_held = Counter(
            "ticket_allocation_tickets_held", "Tickets in the holds answered 201", ("worker",), registry=self.registry,
        )
        self.holds_refused = Counter(
            "ticket_allocation_holds_refused", "Holds the rules refused, by problem type",
            ("reason", "worker"), registry=self.registry,
        )
        self.holds_shed = Counter(
            "ticket_allocation_holds_shed", "Holds answered 503 at once: their queue was full",
            ("worker",), registry=self.registry,
        )
        self.hold_batch_size = Histogram(
            "ticket_allocation_hold_batch_size", "Holds decided per hold_tickets_batch call",
            ("worker",), buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256), registry=self.registry,
        )
        self.hold_queue_depth = Gauge(
            "ticket_allocation_hold_queue_depth", "Holds waiting for a call in flight",
            ("worker",), registry=self.registry, multiprocess_mode="livesum",
        )
        self.hold_outcomes = Counter(
            "ticket_allocation_hold_outcomes", "Holds ended: confirmed or released by a call, swept once expired",
            ("outcome", "worker"), registry=self.registry,
        )
        # livesum: a worker's gauges leave the multiprocess files when it exits.
        self.pool_connections = Gauge(
            "ticket_allocation_db_pool_connections", "Open connections in the pool", ("worker",),
            registry=self.registry, multiprocess_mode="livesum",
        )
        self.pool_connections_in_use = Gauge(
            "ticket_allocation_db_pool_connections_in_use", "Pool connections lent to a request", ("worker",),
            registry=self.registry, multiprocess_mode="livesum",
        )

        self.webhook_deliveries = Counter(
            "ticket_allocation_webhook_deliveries", "Webhook delivery attempts, by outcome (delivered, failed, gone)",
            ("outcome", "worker"), registry=self.registry,
        )
        # max: every worker refreshes them from the database; any one's values will do.
        self.webhook_lag = Gauge(
            "ticket_allocation_webhook_delivery_lag_seconds",
            "Per subscription, the age of its oldest event not yet delivered (0: up to date)",
            ("webhook", "worker"), registry=self.registry, multiprocess_mode="max",
        )
        self.lagging_webhooks: set[str] = set()
        self.events_written = Gauge(
            "ticket_allocation_events_written", "Events written to the outbox so far (its last id)",
            ("worker",), registry=self.registry, multiprocess_mode="max",
        )
        # (method, route, status) -> the request counter's and histogram's series of this worker.
        self.request_series: dict[tuple[str, str, int], tuple] = {}
        # Metric -> its series of this worker, for the metrics labelled by worker alone.
        self.own_series: dict = {}

    def own(self, metric):
        """This worker's series of a metric labelled by worker alone (looked up on first use, so
        that a series appears when first counted, as before)."""
        series = self.own_series.get(metric)
        if series is None:
            series = self.own_series[metric] = metric.labels(self.worker)
        return series

    def webhook_delivered(self, outcome: str) -> None:
        self.webhook_deliveries.labels(outcome, self.worker).inc()

    def webhook_lag_observed(self, rows) -> None:
        # Multiprocess gauges cannot drop a label set: a subscription gone (deleted or disabled) reads 0.
        current = {str(row["webhook_id"]): row["lag_seconds"] for row in rows if row["webhook_id"] is not None}
        for webhook in self.lagging_webhooks - current.keys():
            self.webhook_lag.labels(webhook, self.worker).set(0)
        for webhook, seconds in current.items():
            self.webhook_lag.labels(webhook, self.worker).set(seconds)
        self.lagging_webhooks = set(current)
        for row in rows[:1]:
            self.events_written.labels(self.worker).set(row["events_written"])

    def request_answered(self, method: str, route: str, status: int, seconds: float) -> None:
        # Bounded: route templates, the methods aiohttp's parser knows and HTTP statuses.
        series = self.request_series.get((method, route, status))
        if series is None:
            labels = (method, route, str(status), self.worker)
            series = self.request_series[method, route, status] = (
                self.requests.labels(*labels), self.request_seconds.labels(*labels))
        count, duration = series
        count.inc()
        duration.observe(seconds)

    def purchased(self, quantity: int) -> None:
        self.own(self.purchases).inc()
        self.own(self.tickets_sold).inc(quantity)

    def purchase_refused(self, problem: str) -> None:
        """problem: the refusal's problem type (Problems.slug_of its SQLSTATE)."""
        self.purchases_refused.labels(problem, self.worker).inc()

    def client_disconnected(self) -> None:
        self.own(self.client_disconnects).inc()

    def purchase_batch_sent(self, size: int) -> None:
        self.own(self.purchase_batch_size).observe(size)

    def purchase_shed(self) -> None:
        self.own(self.purchases_shed).inc()

    def held(self, quantity: int) -> None:
        self.own(self.holds).inc()
        self.own(self.tickets_held).inc(quantity)

    def hold_refused(self, problem: str) -> None:
        """problem: the refusal's problem type (Problems.slug_of its SQLSTATE)."""
        self.holds_refused.labels(problem, self.worker).inc()

    def hold_batch_sent(self, size: int) -> None:
        self.own(self.hold_batch_size).observe(size)

    def hold_shed(self) -> None:
        self.own(self.holds_shed).inc()

    def hold_ended(self, outcome: str) -> None:
        self.hold_outcomes.labels(outcome, self.worker).inc()

    def holds_swept(self, count: int) -> None:
        self.hold_outcomes.labels("swept", self.worker).inc(count)

    def pool_observed(self, pool) -> None:
        size = pool.get_size()
        self.own(self.pool_connections).set(size)
        self.own(self.pool_connections_in_use).set(size - pool.get_idle_size())

    def exposition(self, pool, purchases, holds) -> bytes:
        self.own(self.purchase_queue_depth).set(purchases.queue_depth())
        self.own(self.hold_queue_depth).set(holds.queue_depth())
        self.pool_observed(pool)
        if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
            return generate_latest(self.registry)
        every_worker = CollectorRegistry()
        multiprocess.MultiProcessCollector(every_worker)
        return generate_latest(every_worker)
