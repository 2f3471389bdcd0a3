# cowbird container image: one static binary, run as root (it owns, chowns
# and chmods the files it manages, as the Python Cowbird does).
#   docker build --build-arg VERSION=1.2.3 -t cowbird:1.2.3 .
# The build and its checks are tested by deploy/deploy_test.go.

FROM golang:1.26-alpine AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/cowbird ./cmd/cowbird

# distroless/static: CA certificates, tzdata and /tmp, no shell, no wget.
# Its default user is root, which cowbird needs.
FROM gcr.io/distroless/static-debian12
COPY --from=build /out/cowbird /usr/local/bin/cowbird
# Same config path as the Python image, so birdhouse-deploy mounts still apply.
ENV COWBIRD_CONFIG_PATH=/opt/local/src/cowbird/config/cowbird.yml
# The state database (event journal, monitor registrations, actions).
VOLUME /var/lib/cowbird
EXPOSE 7000
HEALTHCHECK --interval=60s --timeout=5s --start-period=30s --retries=3 CMD ["/usr/local/bin/cowbird", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/cowbird"]
CMD ["serve", "--data-dir", "/var/lib/cowbird"]
