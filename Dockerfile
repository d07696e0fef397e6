# One image for every shiploop service and the agents, for builders with a
# registry (FROM golang and debian). Without one, scripts/images.sh builds
# the same image (shiploop:local) and its NATS and PostgreSQL siblings from
# Debian packages; docker-compose.yml runs those.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/shiploop ./cmd/shiploop
# nats-server at the version shiploop embeds and is tested with (pkg/go.mod),
# so this image can run the NATS of the suite too (entrypoint nats-server).
RUN version=$(awk '$1 == "github.com/nats-io/nats-server/v2" {print $2}' pkg/go.mod) && \
    test -n "$version" && \
    CGO_ENABLED=0 GOWORK=off GOBIN=/out go install -trimpath "github.com/nats-io/nats-server/v2@$version"

FROM debian:bookworm-slim
# git and Mercurial for clones and mirrors (agents and builds), ssh for ssh:// URLs.
RUN apt-get update && apt-get install -y --no-install-recommends git mercurial openssh-client ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/shiploop /out/nats-server /usr/local/bin/
RUN useradd --create-home --uid 10001 shiploop && \
    install -d -o 10001 -g 10001 /var/lib/shiploop /var/lib/shiploop-agent /data
USER shiploop
WORKDIR /home/shiploop
ENTRYPOINT ["shiploop"]
CMD ["up", "--http-listen", "0.0.0.0:8080", "--grpc-listen", "0.0.0.0:9090"]
