# syntax=docker/dockerfile:1
#
# metaguard worker image: a build stage that compiles the TypeScript and the native module
# (Rust, napi-rs, liblz4), and a slim runtime stage that runs `metaguard worker` as a non-root user.
#
#   docker build -t metaguard .
#   docker run --init --env-file /etc/metaguard/default.env -p 9464:9464 --stop-timeout 45 metaguard
#   docker run --rm --entrypoint metaguard metaguard queue stats --queue-config '{"backend":"redis",...}'
#
# Configure it like the systemd service: METAGUARD_* variables (systemd/worker.env.example), or flags
# after the image name (`docker run metaguard --threads 4`). Give `docker stop` / Compose
# stop_grace_period / Kubernetes terminationGracePeriodSeconds more than METAGUARD_SHUTDOWN_TIMEOUT_S
# (30 s): Docker's default of 10 s cuts the drain short. Operator's guide: docs/operations.md.

# The current Node.js LTS line (24, "Krypton"); 22 is supported too (README: Install).
ARG NODE_VERSION=24

# Debian bookworm's own cargo (1.65 with rustc 1.63) cannot build the crate (Cargo.lock v4, let-else,
# OsStr::as_encoded_bytes), so the toolchain comes from the official Rust image of the same Debian
# release (same glibc as the node images).
FROM rust:1-bookworm AS rust

# ---- build: TypeScript -> dist/, native/metaguard.<platform>.node, production node_modules ---------
FROM node:${NODE_VERSION}-bookworm AS build
# liblz4-dev ships liblz4.a, which native/build.rs links statically: the .node then needs only libc.
# gcc (the linker cargo uses) is already in this image.
RUN apt-get update \
 && apt-get install -y --no-install-recommends liblz4-dev \
 && rm -rf /var/lib/apt/lists/*
COPY --from=rust /usr/local/cargo /usr/local/cargo
COPY --from=rust /usr/local/rustup /usr/local/rustup
ENV RUSTUP_HOME=/usr/local/rustup \
    CARGO_HOME=/usr/local/cargo \
    PATH=/usr/local/cargo/bin:$PATH
WORKDIR /src
# Dependencies first, so source edits reuse this layer.
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund --ignore-scripts
COPY tsconfig.json tsconfig.build.json ./
COPY scripts/ scripts/
COPY src/ src/
COPY bin/ bin/
COPY native/ native/
COPY examples/ examples/
# The crate has no crate dependencies, so cargo needs no network here (native/README.md).
RUN npm run build \
 && npm run build:native \
 && npm prune --omit=dev

# ---- runtime --------------------------------------------------------------------------------------
FROM node:${NODE_VERSION}-bookworm-slim AS runtime
# liblz4-1 for a native module linked with METAGUARD_LZ4_LINK=dylib (the default build links liblz4
# statically and needs only libc). A fixed numeric UID lets Kubernetes' runAsNonRoot verify it.
RUN apt-get update \
 && apt-get install -y --no-install-recommends liblz4-1 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 metaguard \
 && useradd --system --uid 10001 --gid metaguard --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin metaguard \
 && install -d -o metaguard -g metaguard -m 0700 /var/cache/metaguard
WORKDIR /opt/metaguard
# Root-owned and read-only for the worker: it writes only its cache (and /tmp).
COPY --from=build /src/package.json ./
COPY --from=build /src/node_modules/ node_modules/
COPY --from=build /src/dist/ dist/
COPY --from=build /src/bin/ bin/
# Built-in tasks (`--task top_k`, `metaguard demo`) load their modules from examples/ at run time.
COPY --from=build /src/examples/ examples/
# Fails the build when build:native produced no binary, rather than shipping a JS-codec-only image.
COPY --from=build /src/native/*.node native/
# `metaguard` on PATH; then prove the CLI starts and the native module loads in this slim image.
RUN ln -s /opt/metaguard/bin/metaguard.js /usr/local/bin/metaguard \
 && metaguard --version \
 && node -e "import('/opt/metaguard/dist/src/codec/native.js').then((m) => m.loadNativeBinding())"

ENV NODE_ENV=production \
    METAGUARD_CACHE_DIR=/var/cache/metaguard \
    METAGUARD_METRICS=1 \
    METAGUARD_METRICS_HOST=0.0.0.0 \
    METAGUARD_METRICS_PORT=9464
# Inside the container the metrics server binds 0.0.0.0 so `-p 9464:9464` can publish it; the health
# check itself asks over loopback. /healthz is 200 while the backend connection is up.
EXPOSE 9464
USER 10001:10001
# SIGTERM drains (finish or hand back in-flight batches within METAGUARD_SHUTDOWN_TIMEOUT_S), exit 0.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.METAGUARD_METRICS_PORT || 9464) + '/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
ENTRYPOINT ["metaguard", "worker"]
