# Two base images only (rust, debian); nothing else is pulled from a registry.
FROM rust:1.89-bookworm AS build
WORKDIR /src
# Dependencies first, against a stub crate: this layer is rebuilt only when Cargo.toml or
# Cargo.lock change, not on every source change.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src \
 && echo 'fn main() {}' > src/main.rs \
 && echo '' > src/lib.rs \
 && cargo build --release --locked --bin protocol-graph \
 && rm -rf src target/release/deps/protocol_graph* target/release/deps/libprotocol_graph* \
      target/release/protocol-graph* target/release/.fingerprint/protocol-graph-*
COPY src ./src
COPY assets ./assets
COPY fixtures ./fixtures
RUN cargo build --release --locked --bin protocol-graph

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin gateway
COPY --from=build /src/target/release/protocol-graph /usr/local/bin/protocol-graph
USER 10001:10001
# Both `serve` and `sandbox` listen here, so `docker run -p 8080:8080 … sandbox` is reachable.
ENV LISTEN_ADDR=0.0.0.0:8080
EXPOSE 8080
# The slim image has no curl: the binary probes its own /healthz.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["protocol-graph", "health"]
ENTRYPOINT ["protocol-graph"]
CMD ["serve"]
