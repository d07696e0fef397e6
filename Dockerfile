# One image for every shiploop service and the agents.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY . .
RUN go build -trimpath -ldflags "-s -w" -o /out/shiploop ./cmd/shiploop

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends git ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/shiploop /usr/local/bin/shiploop
RUN useradd --create-home --uid 10001 shiploop
USER shiploop
WORKDIR /home/shiploop
ENTRYPOINT ["shiploop"]
CMD ["up", "--http-listen", "0.0.0.0:8080", "--grpc-listen", "0.0.0.0:9090"]
