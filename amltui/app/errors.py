"""The one error type for a request the user must change: what is wrong, and how to fix it.

The service layer (amltui/app/service/) raises it; the command line prints it as ``error: …`` with exit code 2
(amltui/cli/common.py ``user_errors``) and the dashboard shows it in a notification. Domain errors that are the
user's to fix (ConfigError, FilterError, GpuError, …) are translated into it where the service meets them.
"""

from __future__ import annotations


class UserError(ValueError):
    """A request that cannot be done as asked. ``str()`` gives the message and, when known, the fix."""

    def __init__(self, message: str, fix: str | None = None, *, code: int = 2) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix
        self.code = code  # the command line's exit code: 2 = change the request, 1 = it was tried and failed

    def __str__(self) -> str:
        return f"{self.message}; {self.fix}" if self.fix else self.message
