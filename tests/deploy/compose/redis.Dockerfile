# Redis for the compose test: Debian's redis-server on the same local base as the
# gateway's image (this machine cannot pull redis:7.4). Like the official image, it
# turns protected mode off when started with arguments and no config file: the other
# containers of the compose network must reach it.
ARG BASE=localhost/thinkgate-base:bookworm
FROM ${BASE}
RUN apt-get update && apt-get install -y --no-install-recommends redis-server && rm -rf /var/lib/apt/lists/*
RUN printf '#!/bin/sh\nif [ "$1" = redis-server ]; then shift; exec redis-server --protected-mode no "$@"; fi\nexec "$@"\n' > /usr/local/bin/redis-entry \
    && chmod 755 /usr/local/bin/redis-entry
USER redis
ENTRYPOINT ["/usr/local/bin/redis-entry"]
CMD ["redis-server"]
