"""`python -m app`: Werkzeug's development server on HOST:PORT from the environment or `.env`.

`make dev` runs it with `--reload`, restarting when code, templates, static files or translations
change. `make run` serves with gunicorn instead (gunicorn.conf.py); see the README.
"""

from __future__ import annotations

import argparse
import os
import sys

from . import ROOT, ConfigError, create_app
from .serving import banner, exit_with

# Besides Python modules (which the reloader always watches): what a page is made of.
WATCHED = ("templates", "static/css", "static/js", "translations")


def watched_files() -> list[str]:
    """The non-Python files whose change restarts the development server."""
    return [str(path) for folder in WATCHED for path in (ROOT / folder).rglob("*") if path.is_file()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app", description=__doc__.splitlines()[0])
    parser.add_argument("--reload", action="store_true", help="restart when a source file changes")
    args = parser.parse_args(argv)
    try:
        app = create_app()
    except ConfigError as e:
        exit_with(e)
    settings = app.config["SETTINGS"]
    # With --reload this runs in a watcher and again in each server it (re)starts: say it there.
    if not args.reload or os.environ.get("WERKZEUG_RUN_MAIN") == "true":
        print(banner(settings), flush=True)
    app.jinja_env.auto_reload = args.reload
    app.run(
        host=settings.host,
        port=settings.port,
        threaded=True,
        use_reloader=args.reload,
        extra_files=watched_files() if args.reload else None,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
