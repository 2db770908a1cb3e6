"""`python -m app`: start the development server on HOST:PORT from the environment or `.env`."""

from __future__ import annotations

import sys

from . import ConfigError, create_app


def main() -> int:
    try:
        app = create_app()
    except ConfigError as e:
        print(f"Configuration error: {e}", file=sys.stderr)
        return 2
    settings = app.config["SETTINGS"]
    mode = (
        "demo mode (no OPENAI_API_KEY)"
        if settings.demo
        else f"upstream {settings.openai_base_url or 'api.openai.com'}"
    )
    print(
        f"Serving on http://{settings.host}:{settings.port} — {mode}, data in {settings.data_dir}", flush=True
    )
    app.run(host=settings.host, port=settings.port, threaded=True, use_reloader=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
