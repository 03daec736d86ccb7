# syntax=docker/dockerfile:1.7
# clamd and freshclam from Debian 12 (same major version as the development machines), non-root.
#   docker build -f deploy/docker/clamd.Dockerfile -t webmail-clamd:1.4.6 deploy/docker
# The same image runs both containers of the clamd pod: `clamd` and the `freshclam` sidecar
# (deploy/base/clamd.yaml); configuration comes from the ConfigMap `clamd-config`.
FROM debian:12.12-slim
ARG CLAMAV_VERSION=1.4.6+dfsg-0+deb12u1
# A fixed uid/gid, created before the package would create a dynamic one, so runAsUser can name it.
RUN groupadd --system --gid 10002 clamav \
 && useradd --system --uid 10002 --gid clamav --home-dir /var/lib/clamav --shell /usr/sbin/nologin clamav \
 && apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      clamav-daemon=${CLAMAV_VERSION} clamav-freshclam=${CLAMAV_VERSION} clamav=${CLAMAV_VERSION} \
      clamdscan=${CLAMAV_VERSION} ca-certificates \
 && rm -rf /var/lib/apt/lists/* /var/lib/clamav/* \
 && install -d -o clamav -g clamav /var/lib/clamav /run/clamav
USER 10002:10002
EXPOSE 3310
CMD ["clamd", "--foreground", "--config-file=/etc/clamav-k8s/clamd.conf"]
