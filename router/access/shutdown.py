"""How thinkgate is served so that SIGTERM is graceful.

uvicorn already does the right thing on SIGTERM/SIGINT when told the deadline:
it closes the listening sockets (no new connections), asks every keep-alive
connection to close after its current response, waits for in-flight requests
and streams, and after `timeout_graceful_shutdown` cancels what is left. The
cancellation reaches the response's generator, which closes the upstream stream
(the Upstream protocol requires that closing the iterator cancels the request),
so no upstream work outlives the process. Lifespan shutdown (closing clients,
Redis) runs after the drain.
"""

from __future__ import annotations

from typing import Any

from router.config import ServerSettings


def uvicorn_options(server: ServerSettings) -> dict[str, Any]:
    """Keyword arguments for `uvicorn.Config(app, **uvicorn_options(settings.server))`."""
    return {
        "host": server.host,
        "port": server.port,
        "log_level": server.log_level,
        "lifespan": "on",
        "timeout_graceful_shutdown": server.drain_s,  # the drain deadline for requests and streams
        "timeout_keep_alive": 5,
        "access_log": False,  # the decision log records requests; never headers (keys)
        "server_header": False,
        "proxy_headers": False,
    }
