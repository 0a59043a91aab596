# The preforkd image: a static binary on distroless, run as a non-root user.
#
#   docker build --build-arg VERSION=1.0.0 -t registry.example.com/preforkd:1.0.0 .
#   docker run --rm -p 8080:8080 -p 9100:9100 registry.example.com/preforkd:1.0.0
#
# The demo serves on 8080; the master's /metrics and /healthz (200 while a
# worker is ready: the readiness probe) on 9100. For your own program built
# on server.Main, change the build's package path. The build line below is
# run as written by deploy's TestStaticBuild (which checks the binary is
# static and serves as uid 65532); no container runtime is needed for that.

FROM golang:1.26-bookworm AS build
ARG VERSION=dev
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 GOWORK=off go build -trimpath -tags osusergo,netgo -ldflags "-s -w -X main.version=${VERSION}" -o /out/preforkd ./cmd/preforkd
# The control socket's directory, owned by the user the image runs as.
RUN mkdir -p /out/run/preforkd

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/preforkd /usr/local/bin/preforkd
COPY --from=build --chown=65532:65532 /out/run/preforkd /run/preforkd
USER 65532:65532
# 8080: the workers' socket; 9100: the master's /metrics and /healthz.
EXPOSE 8080 9100
LABEL org.opencontainers.image.title="preforkd" \
      org.opencontainers.image.description="preforking server supervisor; GET :9100/healthz is the readiness probe"
ENTRYPOINT ["/usr/local/bin/preforkd"]
CMD ["-listen=http=tcp://0.0.0.0:8080", "-metrics=0.0.0.0:9100", "-control=/run/preforkd/ctl.sock"]
