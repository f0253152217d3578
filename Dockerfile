# Lanyard in a container: build with the Rust image, run on Debian slim as a non-root user.
#   docker build -t lanyard .
#   docker run -p 8443:8443 -v lanyard-data:/data lanyard
#   (certificates you bring: add -v /path/to/certs:/certs:ro)
FROM rust:1-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends libssl-dev pkg-config && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# The whole tree but what .dockerignore leaves out (build output, data, secrets, git): the
# build reads askama.toml, fonts/, migrations/, profiles/ and data-apple/ besides the sources.
COPY . .
# Only the server (-p lanyard): the workspace's load generator, bench/, is not built or shipped.
RUN cargo build --release --locked -p lanyard && cp target/release/lanyard /usr/local/bin/lanyard

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates libssl3 curl && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin lanyard \
 && mkdir -p /data /certs && chown lanyard /data && chmod 0700 /data
COPY --from=build /usr/local/bin/lanyard /usr/local/bin/lanyard
USER lanyard
WORKDIR /data
ENV LANYARD_DATA_DIR=/data \
    LANYARD_CERTS_DIR=/certs \
    LANYARD_LISTEN=0.0.0.0:8443 \
    LANYARD_LOG_FORMAT=json
VOLUME ["/data"]
EXPOSE 8443
# The server's certificate is made by its own CA; the health check only asks if the process is up.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD curl -fsk https://localhost:8443/healthz || curl -fs http://localhost:8443/healthz || exit 1
CMD ["lanyard","serve"]
