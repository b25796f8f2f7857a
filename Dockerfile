# One image for every service of the fleet: the workers, beat, the schema migration, the
# sandboxes, the members' API and Flower (docker-compose.yml picks the command). No secret is
# baked in: the database and broker URLs, passwords and Flower's credentials come from the
# environment, and the platform's public key from a read-only mount.

# --- build: install the project (not editable) into a virtual environment -------------------
FROM python:3.11-slim AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
# The dependencies first, exactly as locked (every file checked against its hash): the same
# bytes on every build. This layer is rebuilt only when the lock changes.
COPY requirements.txt ./
RUN pip install --require-hashes --no-deps -r requirements.txt
# Only what `pip install .` reads: the metadata (README.md is the package's long description)
# and the six packages; tests, .git and local data stay out of the image.
COPY pyproject.toml README.md ./
COPY domain/ domain/
COPY broker/ broker/
COPY workers/ workers/
COPY cli/ cli/
COPY api/ api/
COPY sandbox/ sandbox/
# The project itself, nothing more: its dependencies (Flower and the RedBeat scheduler among
# them) are the locked ones above.
RUN pip install --no-deps .

# --- runtime ------------------------------------------------------------------------------------
FROM python:3.11-slim

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HUZHU_DATA_DIR=/var/lib/huzhu

# A fixed numeric uid, so that an orchestrator can check "not root" without reading /etc/passwd.
# /var/lib/huzhu: the data folder the app creates its files in (beat's local schedule, never
# SQLite here); /data: Flower's state, and /evidence: investigators' files (by their hash),
# named volumes that take this ownership when first used.
RUN groupadd --system --gid 10001 huzhu \
    && useradd --system --uid 10001 --gid huzhu --home-dir /home/huzhu --create-home \
        --shell /usr/sbin/nologin huzhu \
    && mkdir -p /var/lib/huzhu /data /evidence \
    && chown huzhu:huzhu /var/lib/huzhu /data /evidence

COPY --from=build /opt/venv /opt/venv

WORKDIR /home/huzhu
USER 10001:10001

CMD ["huzhu", "--help"]
