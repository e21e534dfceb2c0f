"""What main() and the command modules share: exit codes, the parser class, usage errors."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import IO, Any, TypeAlias

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


class Parser(argparse.ArgumentParser):
    """argparse that exits 2 with one line, as every other usage error does."""

    def error(self, message: str) -> Any:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


#: The subparsers action every command module registers its subcommands with.
Commands: TypeAlias = "argparse._SubParsersAction[Parser]"

#: What ``set_defaults(handler=...)`` names: takes the parsed arguments, stdout, stderr;
#: returns the exit code.
Handler: TypeAlias = Callable[[argparse.Namespace, IO[str], IO[str]], int]


class UsageError(Exception):
    """Bad usage found after parsing: ``orchestrator: error: MESSAGE``, exit code 2."""
