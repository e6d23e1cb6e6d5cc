# cxbackup: one image for the operator and the worker Jobs (entrypoint `cxbackup`).
# Stage 1 builds a wheel and its dependencies; stage 2 is a slim runtime with no build tools.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin cxbackup
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links=/wheels cxbackup && rm -rf /wheels
USER 10001:10001
ENTRYPOINT ["cxbackup"]
CMD ["operator"]
