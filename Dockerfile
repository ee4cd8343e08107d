# syntax=docker/dockerfile:1
# watchkeeper's container image: serve (and every other command) on Debian slim, as a user
# without privileges, with git for `serve --git` and `plan --base`.
#
#   docker build -t watchkeeper:0.1.0 .
#   docker run -d -p 8080:8080 -v watchkeeper:/var/lib/watchkeeper -e WATCHKEEPER_TOKEN=… \
#     watchkeeper:0.1.0 serve --git https://git.example.com/monitoring.git --branch main
#
# State (the SQLite database, the git checkout) lives under data/ in /var/lib/watchkeeper,
# the working directory: mount a volume there. `docker stop` sends SIGTERM; serve stops its
# tasks and checkpoints the database.

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
# The registry and the target directory are cache mounts: a rebuild after a source change
# compiles watchkeeper, not its dependencies. The binary is copied out of the mount. Debug
# line tables are stripped (symbols stay, for backtraces): about 26 MB instead of 127 MB.
ENV CARGO_PROFILE_RELEASE_STRIP=debuginfo
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin watchkeeper \
    && cp target/release/watchkeeper /usr/local/bin/watchkeeper

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates git \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --home-dir /var/lib/watchkeeper --create-home --shell /usr/sbin/nologin watchkeeper
COPY --from=build /usr/local/bin/watchkeeper /usr/local/bin/watchkeeper
USER 10001:10001
WORKDIR /var/lib/watchkeeper
VOLUME /var/lib/watchkeeper
# Inside a container the API must listen on every interface to be reachable through -p.
ENV WATCHKEEPER_LISTEN=0.0.0.0:8080
EXPOSE 8080
ENTRYPOINT ["watchkeeper"]
CMD ["--help"]
