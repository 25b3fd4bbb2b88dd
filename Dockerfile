# offline-ingestor worker image: slim Python, the package and its schemas, non-root.
# Build: docker build -t offline-ingestor .   Run: see docker-compose.yml.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
COPY schemas ./schemas
# [flower]: `offline-ingestor flower` (compose's flower service) runs from this image too.
RUN pip wheel --no-cache-dir --wheel-dir /wheels ".[flower]"

FROM python:3.11-slim
LABEL org.opencontainers.image.title="offline-ingestor" \
      org.opencontainers.image.description="Ingest NeXus files into SciCat exactly once (Celery worker over Redis)" \
      org.opencontainers.image.licenses="BSD-3-Clause"
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    OFFLINE_INGESTOR_CONFIG=/etc/offline-ingestor/config.yml
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels \
    && groupadd --system --gid 10001 ingestor \
    && useradd --system --uid 10001 --gid ingestor --home-dir /var/lib/offline-ingestor --create-home ingestor
COPY --chown=root:root schemas /etc/offline-ingestor/schemas
USER 10001:10001
WORKDIR /var/lib/offline-ingestor
# Liveness: the worker touches queue.heartbeat_file every 10 s (no broker round trip).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["offline-ingestor", "health", "--liveness", "--max-age", "60"]
EXPOSE 9808
ENTRYPOINT ["offline-ingestor"]
CMD ["worker"]
