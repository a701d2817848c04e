"""Errors a user can act on: printed as one line by the CLI, never as a traceback."""

from __future__ import annotations


class UserError(Exception):
    """Something the user can fix: the message says what failed and what to do.

    ``exit_code`` follows ansible-playbook where a counterpart exists (1: error, 5: bad options,
    250: unexpected error) so scripts written for ansible-playbook keep working.
    """

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class BadOptions(UserError):
    """A command line that cannot mean what it says: exit 5, ansible-playbook's code for
    bad options (2 means host failures)."""

    EXIT_CODE = 5

    def __init__(self, message: str) -> None:
        super().__init__(message, exit_code=self.EXIT_CODE)


def yaml_position(exc: Exception) -> str:
    """' at line L, column C' of a YAML error, when the parser knows where it was."""
    mark = getattr(exc, "problem_mark", None)
    return f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
