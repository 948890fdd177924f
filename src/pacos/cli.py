"""The `pacos` command: argument parsing only; each stage registers its subcommands from its own cli module."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from pacos import __version__
from pacos.errors import PacosError

# Each module defines `register(subparsers)`; kept import-light (no torch at import time).
COMMAND_MODULES = (
    "pacos.data.cli",
    "pacos.models.cli",
    "pacos.train.cli",
    "pacos.infer.cli",
    "pacos.export.cli",
    "pacos.infer.chat",
    "pacos.serve.cli",
    "pacos.eval.cli",
    "pacos.eval.perplexity_cli",
    "pacos.self_instruct.cli",
    "pacos.demo",
)


# Unexpected errors exit apart from user errors (PacosError: 2) and command verdicts (e.g. validate: 1).
INTERNAL_ERROR_EXIT = 70  # EX_SOFTWARE in sysexits.h


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pacos",
        description="The Stanford Alpaca recipe end to end: data, fine-tuning, inference, evaluation.",
    )
    parser.add_argument("--version", action="version", version=f"pacos {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback of an unexpected error (also: PACOS_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    # Idle OpenMP threads sleep instead of spinning: with another busy process on a small machine (a server
    # and its client, a test and the command it runs) spinning threads made a training step ~15x slower.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        # `pacos` or `pacos data` alone: show the relevant help.
        (getattr(args, "_parser", None) or parser).print_help()
        return 2
    try:
        result = args.func(args)
    except PacosError as e:
        print(f"pacos: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("pacos: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `pacos ... | head`: the reader left; stop quietly, as other command-line tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit's flush cannot fail again
        return 141  # 128 + SIGPIPE, what a shell reports for a command killed by a closed pipe
    except Exception as e:  # a bug, not a user error: one line, the traceback on request
        if args.debug or os.environ.get("PACOS_DEBUG"):
            raise
        detail = str(e).splitlines()[0][:300] if str(e) else ""
        print(f"pacos: internal error: {type(e).__name__}{': ' + detail if detail else ''} "
              "(rerun with `pacos --debug ...` for the traceback, and please report it)", file=sys.stderr)
        return INTERNAL_ERROR_EXIT
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
