# cxbackup: one image for the operator and the worker Jobs (entrypoint `cxbackup`).
# hack/build-image.sh builds the same image without Docker (debootstrap, chroot, umoci);
# tests/unit/test_dockerfile.py keeps the two in step: suite, packages, user, venv, lock, entrypoint.
# Stage 1 builds the project's wheel, stage 2 the native media transfer (cxbackup-fetch); the last is Debian's
# python3 with a venv holding requirements.lock (installed with --require-hashes), that wheel and that
# program, and no build tools.
FROM debian:bookworm-slim AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
RUN python3 -m venv /build \
    && /build/bin/pip wheel --no-cache-dir --no-deps --wheel-dir /dist /src

# The native media transfer (cxbackup-fetch, Go): a static binary, as hack/build-fetch.sh builds it.
FROM golang:1.26-bookworm AS fetch
WORKDIR /src
COPY native/fetch ./
RUN CGO_ENABLED=0 GOFLAGS=-buildvcs=false go build -trimpath -ldflags "-s -w" -o /out/cxbackup-fetch .

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 cxbackup \
    && useradd --system --no-log-init --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin cxbackup
COPY requirements.lock /tmp/requirements.lock
COPY --from=build /dist /tmp/dist
RUN python3 -m venv /opt/cxbackup \
    && /opt/cxbackup/bin/pip install --no-cache-dir --only-binary=:all: --no-deps --require-hashes \
        -r /tmp/requirements.lock \
    && /opt/cxbackup/bin/pip install --no-cache-dir --no-index --no-deps /tmp/dist/cxbackup-*.whl \
    && ln -s /opt/cxbackup/bin/cxbackup /usr/local/bin/cxbackup \
    && rm -rf /tmp/requirements.lock /tmp/dist
COPY --from=fetch /out/cxbackup-fetch /opt/cxbackup/bin/cxbackup-fetch
ENV PATH=/opt/cxbackup/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
USER 10001:10001
ENTRYPOINT ["cxbackup"]
CMD ["operator"]
