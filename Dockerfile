# Builds the deferwatch binary and runs it on a slim Debian base.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY backend backend
COPY migrations migrations
COPY templates templates
COPY static static
RUN cargo build --release --locked --bin deferwatch

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home /var/lib/deferwatch --create-home deferwatch
COPY --from=build /src/target/release/deferwatch /usr/local/bin/deferwatch
USER deferwatch
WORKDIR /var/lib/deferwatch
ENV DEFERWATCH_LISTEN=0.0.0.0:8421
EXPOSE 8421
HEALTHCHECK --interval=15s --timeout=3s CMD curl -fsS http://127.0.0.1:8421/healthz || exit 1
ENTRYPOINT ["deferwatch"]
CMD ["serve"]
