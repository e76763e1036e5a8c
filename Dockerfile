# The same image as scripts/image.sh, for those who build with Docker (or BuildKit, podman,
# buildah) and can pull base images. scripts/image.sh needs neither and is what the tests run;
# tests/image.rs checks that both describe the same user, entrypoint and paths.
#
#   docker build -t ghcr.io/alertcall/alertcall:0.1.0 \
#     --build-arg VERSION=0.1.0 --build-arg REVISION=$(git rev-parse HEAD) .

FROM docker.io/library/rust:1.89-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin alertcall \
 && strip target/release/alertcall

# distroless cc: glibc, libgcc and the CA bundle of Debian 12 (what the binary was linked against
# in the stage above), with the nonroot user 65532 and no shell.
FROM gcr.io/distroless/cc-debian12:nonroot
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG SOURCE=https://github.com/alertcall/alertcall
LABEL org.opencontainers.image.source=$SOURCE \
      org.opencontainers.image.version=$VERSION \
      org.opencontainers.image.revision=$REVISION \
      org.opencontainers.image.title=alertcall
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
COPY --from=build /src/target/release/alertcall /usr/local/bin/alertcall
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/alertcall"]
