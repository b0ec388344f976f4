"""``make serve``: the service in the foreground (Ctrl-C stops it).

    python -m gold.service [--env local] [--lakehouse DIR] [--host H] [--port P]

Exit codes: 0 stopped; 2 bad configuration, or no trained model in the lakehouse (the
message says how to train one).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time

from common.config import ConfigError, load_config, parse_override, with_cli_values
from common.log import setup_logging


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve the classifier over HTTP.")
    parser.add_argument("--env", default="local")
    parser.add_argument("--lakehouse", default=os.environ.get("FRUITS_LAKEHOUSE") or None)
    parser.add_argument("--host", default=os.environ.get("FRUITS_HOST") or None,
                        help="address to listen on (default serve.host: 127.0.0.1)")
    parser.add_argument("--port", type=int,
                        default=int(os.environ["FRUITS_PORT"]) if os.environ.get(
                            "FRUITS_PORT", "").isdigit() else None)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args(argv)
    if os.environ.get("FRUITS_PORT") and not os.environ["FRUITS_PORT"].isdigit():
        print(f"error: PORT must be a number, got {os.environ['FRUITS_PORT']!r}", file=sys.stderr)
        return 2
    setup_logging("INFO")
    started = time.perf_counter()
    try:
        overrides = dict(parse_override(t) for t in args.overrides)
        if args.host:
            overrides["serve.host"] = args.host
        if args.port is not None:
            overrides["serve.port"] = args.port
        config = with_cli_values(load_config(args.env, overrides), lakehouse=args.lakehouse)
        from gold.service.app import create_app

        app = create_app(config)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    import uvicorn

    host, port = config.serve.host, config.serve.port
    if host not in ("127.0.0.1", "localhost", "::1"):
        logging.getLogger("serve").warning(
            "listening on %s: reachable from other machines, as you chose", host)
    logging.getLogger("serve").info(
        "classifier %s loaded in %.1fs; http://%s:%d/ (API docs: /docs)",
        app.state.holder.classifier.version, time.perf_counter() - started,
        host if ":" not in host else f"[{host}]", port)
    uvicorn.run(app, host=host, port=port, access_log=False, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
