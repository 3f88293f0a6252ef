"""``python -m trainship.serving``: serve a model, or write its load cache.

Every option's default comes from the environment (``ServingSettings``); a flag overrides.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from trainship.serving.loading import prepare_load_cache, set_keras_backend
from trainship.serving.settings import ServingSettings
from trainship.serving.workers import serve


def parser(env: ServingSettings) -> argparse.ArgumentParser:
    """The command line; ``env`` gives its defaults."""
    parser = argparse.ArgumentParser(prog="trainship.serving")
    parser.add_argument("--model-dir", required=True, type=Path)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--workers", type=int, default=env.workers or os.cpu_count() or 1,
                        help="processes (default: one per core)")
    parser.add_argument("--max-batch-rows", type=int, default=env.max_batch_rows,
                        help="rows per predict call; 1 turns batching off")
    parser.add_argument("--max-wait-ms", type=float, default=env.max_wait_ms,
                        help="how long a batch waits at most for requests on their way "
                             "(being parsed, or the next one of a client just answered)")
    parser.add_argument("--load-cache", type=Path, default=env.load_cache,
                        help="a pickle of the loaded model, used when it was made for this "
                             "model and environment (written when missing and writable)")
    parser.add_argument("--keep-warning-filters", action=argparse.BooleanOptionalAction,
                        default=env.keep_warning_filters,
                        help="keep the warning filters libraries add on import (slower "
                             "scikit-learn ensembles; see trainship.serving.warnings)")
    parser.add_argument("--debug", action=argparse.BooleanOptionalAction, default=env.debug,
                        help="error documents of /invocations carry the traceback "
                             "(stack_trace); never by default")
    parser.add_argument("--auth-file", type=Path, default=env.auth_file,
                        help="the model's auth file: POST /invocations needs one of its "
                             "tokens (trainship.serving.auth_file); default: "
                             "TRAINSHIP_SERVING_AUTH_FILE; unset: no token needed")
    parser.add_argument("--prepare-load-cache", action="store_true",
                        help="load the model, write --load-cache and exit (the image build)")
    return parser


def main(argv: list[str]) -> int:
    try:
        settings = ServingSettings.from_env()
    except ValueError as exc:  # a malformed variable: a usage error naming it
        parser(ServingSettings()).error(str(exc))
    cli = parser(settings)
    args = cli.parse_args(argv)
    set_keras_backend(args.model_dir)
    if args.prepare_load_cache:
        if args.load_cache is None:
            cli.error("--prepare-load-cache needs --load-cache")
        prepare_load_cache(args.model_dir, args.load_cache)
        return 0
    return serve(args.model_dir, args.host, args.port, workers=args.workers,
                 max_batch_rows=args.max_batch_rows, max_wait_ms=args.max_wait_ms,
                 load_cache=args.load_cache, keep_warning_filters=args.keep_warning_filters,
                 model_info=settings.model_info(), debug=args.debug,
                 auth_file=args.auth_file)
