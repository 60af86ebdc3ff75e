# syntax=docker/dockerfile:1

# ---- builder: build the wheel, install it into a self-contained virtualenv --
FROM python:3.12-slim AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
RUN python -m venv /opt/venv
ENV PATH="/opt/venv/bin:$PATH"

# Only what the package build needs: the wheel carries service/, sql/,
# migrations/ and the OpenAPI document. Runtime deps only: no extras
# (`embedded` is for running without DATABASE_URL, `test` is dev-only).
COPY pyproject.toml README.md ./
COPY service/ ./service/
COPY sql/ ./sql/
COPY migrations/ ./migrations/
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . \
    && pip install --no-cache-dir /wheels/*.whl

# ---- runtime ----------------------------------------------------------------
FROM python:3.12-slim AS runtime

ENV PATH="/opt/venv/bin:$PATH" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOST=0.0.0.0 \
    PORT=3000

RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --no-create-home --home-dir /app app

# The installed wheel is the whole application: no sources are copied here.
COPY --from=builder /opt/venv /opt/venv
WORKDIR /app

# Numeric so Kubernetes runAsNonRoot and the host can resolve it.
USER 10001:10001

EXPOSE 3000

# Ready: the database answers and has every migration (GET /readyz); slim has no curl.
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:3000/readyz', timeout=2)"]

# `serve` applies pending migrations, then serves HTTP on $HOST:$PORT.
CMD ["python", "-m", "service", "serve"]
