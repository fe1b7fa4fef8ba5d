"""The `mlprism` command line. Exit codes: 0 ok, 1 a pipeline or check failed,
2 user error (spec or command line), 3 internal error (a bug: please report)."""

from __future__ import annotations

import argparse
import functools
import importlib
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from mlprism.diagnostics import Diagnostic, DiagnosticError, Severity

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3

#: Command modules, each with register(subparsers). Heavy imports stay inside their handlers.
COMMAND_MODULES = (
    "mlprism._internal.cli.core",       # validate, compile, graph, plugins, schema
    "mlprism._internal.cli.local",      # run, status, explain, logs, runs, fingerprint
    "mlprism._internal.cli.lifecycle",  # models, serve, monitor
    "mlprism._internal.cli.docker",     # build
    "mlprism._internal.cli.project",    # init, diff
)

#: The module of COMMAND_MODULES that registers each command: a command line naming one builds that
#: module's parsers only (importing and building all of them costs more than a small validate).
#: A test holds this equal to what the modules register.
COMMANDS = {
    **dict.fromkeys(("validate", "compile", "graph", "plugins", "schema"), "mlprism._internal.cli.core"),
    **dict.fromkeys(("run", "status", "explain", "fingerprint", "logs", "runs"), "mlprism._internal.cli.local"),
    **dict.fromkeys(("models", "serve", "tracking", "monitor"), "mlprism._internal.cli.lifecycle"),
    "build": "mlprism._internal.cli.docker",
    **dict.fromkeys(("init", "diff"), "mlprism._internal.cli.project"),
}


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse's own errors become diagnostics
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    """The whole command line: every command of every module in COMMAND_MODULES."""
    return _build(COMMAND_MODULES)


def parser_for(argv: Sequence[str]) -> argparse.ArgumentParser:
    """A parser that parses `argv` as :func:`build_parser`'s does, built from the modules it needs.

    `mlprism --version` needs no command; `mlprism COMMAND ...` (after `-p NAME` and `--debug` only)
    needs COMMAND's module. Anything else (help, an unknown command, abbreviated options) gets the
    whole parser, so every message that lists commands is the same.
    """
    if argv[:1] == ["--version"]:
        return _build(())
    i = 0
    while i < len(argv):
        word = argv[i]
        if word == "--debug" or (word.startswith("-p") and len(word) > 2):
            i += 1
        elif word == "-p":
            i += 2
        elif word.startswith("-") or word not in COMMANDS:
            break
        else:
            return _build((COMMANDS[word],))
    return build_parser()


@functools.cache   # argparse parsers are reusable; building ~30 subparsers costs more than a validate
def _build(modules: tuple[str, ...]) -> argparse.ArgumentParser:
    from mlprism._version import __version__

    parser = _Parser(prog="mlprism", description="Compile one ML pipeline spec to many targets, or run it here.")
    parser.add_argument("--version", action="version", version=f"mlprism {__version__}")
    parser.add_argument("-p", dest="plugin_options", action="append", default=[], metavar="NAME",
                        help="load plugin NAME, or `no:NAME` to skip it (repeatable)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of internal errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in modules:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:    # not written yet in this checkout
                continue
            raise
        module.register(sub)
    return parser


def print_diagnostics(diags: Sequence[Diagnostic], as_json: bool = False, stream: Any = None) -> None:
    if as_json:
        try:
            print(json.dumps({"ok": not any(d.is_error for d in diags),
                              "diagnostics": [d.to_dict() for d in diags]}, indent=2), flush=True)
        except BrokenPipeError:     # the reader went away (`| head`): the exit code still tells
            from mlprism.runtime.display import to_devnull
            to_devnull(sys.stdout)
        return
    stream = stream or sys.stderr
    for d in diags:
        print(d.render(), file=stream)


def _cwd_exists() -> bool:
    try:
        os.getcwd()
    except OSError:
        return False
    return True


def console_main() -> None:
    """The `mlprism` command (and `python -m mlprism`): :func:`main`, then the process exits.

    What the command built (a 10,000-step IR, its source maps) is frozen first: the
    interpreter's last collection as it shuts down would walk all of it once more (0.17-0.29 s
    after a 10,000-step compile, 0.04 s frozen). Nothing is skipped: exit handlers, buffered
    files and finalizers run as usual. Only this entry point does it; a caller of main() keeps
    its collector as it was.
    """
    import gc

    try:
        code = main()
    finally:                # also when argparse exits by itself (--version, --help)
        gc.freeze()
    sys.exit(code)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("MLPRISM_DEBUG") == "1"
    as_json = "--json" in argv
    try:
        parser = parser_for(argv)
        args, extra = parser.parse_known_args(argv)
        if extra:  # overrides after options (`compile SPEC -t T params.x=1`): argparse cannot intermix them
            if not hasattr(args, "overrides") or any(e.startswith("-") for e in extra):
                raise UsageError(f"unrecognized arguments: {' '.join(extra)}")
            args.overrides = [*args.overrides, *extra]
        if not getattr(args, "handler", None):
            build_parser().print_help()
            return EXIT_USAGE
        return int(args.handler(args) or 0)
    except UsageError as exc:
        print_diagnostics([Diagnostic("MLP002", str(exc), None, "run `mlprism --help` (or `mlprism COMMAND --help`)")],
                          as_json)
        return EXIT_USAGE
    except DiagnosticError as exc:
        print_diagnostics(exc.diagnostics, as_json)
        return EXIT_USAGE if any(d.is_error for d in exc.diagnostics) else EXIT_OK
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_OK
    except Exception as exc:
        if debug:
            raise
        if isinstance(exc, FileNotFoundError) and not _cwd_exists():
            print_diagnostics([Diagnostic("MLP002", "the current directory no longer exists (it was deleted after "
                                          "this shell entered it)", None,
                                          "cd to an existing directory, e.g. the project's, and run again")], as_json)
            return EXIT_USAGE
        print_diagnostics([Diagnostic("MLP001", f"internal error: {type(exc).__name__}: {exc}", None,
                                      "this is a bug: rerun with --debug and report the traceback",
                                      Severity.ERROR)], as_json)
        return EXIT_INTERNAL
