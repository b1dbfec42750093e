"""`thinkgate serve | calibrate | replay | check-config`."""

from __future__ import annotations

import argparse
import logging
import sys


def _serve(args: argparse.Namespace) -> int:
    import os

    # Small numpy products (cache index, classifier) must not wake a BLAS thread
    # pool per call on a busy server: measured ~20 ms instead of ~20 us.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    import uvicorn

    from router import config
    from router.access.shutdown import uvicorn_options
    from router.build import build_app

    try:
        settings = config.load(args.config)
    except config.ConfigError as e:
        print(f"thinkgate: {e}", file=sys.stderr)
        return 2
    host = args.host or settings.server.host
    port = args.port if args.port is not None else settings.server.port
    logging.basicConfig(level=settings.server.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from router.access.auth import KeyStore, exposure

    try:
        keys = KeyStore.from_settings(settings.auth)
    except ValueError as e:  # a placeholder key, a malformed THINKGATE_API_KEYS
        print(f"thinkgate: cannot start: {e}", file=sys.stderr)
        return 2
    refusal, lines = exposure(keys, settings.auth, host)
    for line in lines:  # loudly, before anything else: what this gateway leaves open
        print(f"thinkgate: {line}", file=sys.stderr, flush=True)
    if refusal is not None:
        print(f"thinkgate: cannot start: {refusal}", file=sys.stderr)
        return 2
    # each upstream call is logged once, by thinkgate.upstream (whatever client made it);
    # httpx's own per-request lines would repeat some of them and not others
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        app = build_app(settings)
    except Exception as e:  # start-up failures (missing model package, ...) get one clear line
        print(f"thinkgate: cannot start: {e}", file=sys.stderr)
        return 1
    print(f"thinkgate: serving on http://{host}:{port}/v1 (models: {', '.join(settings.routes)})", file=sys.stderr, flush=True)
    uvicorn.run(app, **{**uvicorn_options(settings.server), "host": host, "port": port, "log_level": "warning"})
    return 0


def _check_config(args: argparse.Namespace) -> int:
    from router import config

    try:
        settings = config.load(args.config)
    except config.ConfigError as e:
        print(f"thinkgate: {e}", file=sys.stderr)
        return 2
    art = settings.classifier.artifact
    if art:  # serve would start the model servers, then fail on it: say so now
        from policies.difficulty import ArtifactError, resolve

        try:
            path = resolve(art)
        except ArtifactError as e:
            print(f"thinkgate: classifier.artifact: {e}", file=sys.stderr)
            return 2
        if not (path / "meta.json").is_file():
            print(f"thinkgate: classifier.artifact: {path} has no meta.json (train one with `thinkgate calibrate train`)", file=sys.stderr)
            return 2
    print(f"ok: {len(settings.models)} models, aliases: {', '.join(settings.routes)}")
    for name, rs in settings.routes.items():  # which threshold wins (README "Which threshold applies")
        if rs.pin is None and rs.threshold is not None and art:
            print(f"note: route '{name}' sets threshold {rs.threshold:g}; it overrides the artifact's (remove it to use the artifact's)")
    if settings.rules:  # in the order they are tried (policies.rules precedence)
        from policies.rules import ordered

        print(f"rules: {', '.join(r.name for r in ordered(settings.rules))}")
    if settings.routing.conversation != "independent":
        print(f"conversations: {settings.routing.conversation}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # calibrate and replay own their argument parsing
    if argv and argv[0] == "calibrate":
        from calibrate.cli import main as calibrate_main

        return int(calibrate_main(argv[1:]) or 0)
    if argv and argv[0] == "replay":
        from router.decisions.replay import main as replay_main

        return int(replay_main(argv[1:]) or 0)

    parser = argparse.ArgumentParser(prog="thinkgate", description="OpenAI-compatible gateway that routes between a fast and a reasoning model")
    sub = parser.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve", help="run the gateway")
    s.add_argument("--config", help="YAML config (default: the embedded CPU-only default)")
    s.add_argument("--host", help="address to listen on (default: server.host in the config, 127.0.0.1)")
    s.add_argument("--port", type=int, help="port to listen on (default: server.port in the config, 8000)")
    s.set_defaults(fn=_serve)
    c = sub.add_parser("check-config", help="validate a config file and exit")
    c.add_argument("--config", help="YAML config to check (default: the embedded CPU-only default)")
    c.set_defaults(fn=_check_config)
    sub.add_parser("calibrate", help="train the difficulty classifier and choose thresholds (see `thinkgate calibrate -h`)")
    sub.add_parser("replay", help="re-score logged decisions under other thresholds (see `thinkgate replay -h`)")
    if not argv:  # bare `thinkgate`: what it can do, not an argparse complaint
        parser.print_help()
        return 0
    args = parser.parse_args(argv)
    return int(args.fn(args))


if __name__ == "__main__":
    raise SystemExit(main())
