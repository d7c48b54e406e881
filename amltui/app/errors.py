"""The one error type for a request the user must change: what is wrong, and how to fix it.

The service layer (amltui/app/service/) raises it; the command line prints it as ``error: …`` with exit code 2
(amltui/cli/common.py ``user_errors``) and the dashboard shows it in a notification. Domain errors that are the
user's to fix (ConfigError, FilterError, GpuError, …) are translated into it where the service meets them.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from core.config import ConfigError
from core.errors import DataNotFoundError, TrainingFailed

# What a user-triggered run operation may raise that is the user's to fix (printed without a traceback).
RunFailure = (DataNotFoundError, TrainingFailed, ConfigError, FileNotFoundError, ValueError)


class UserError(ValueError):
    """A request that cannot be done as asked. ``str()`` gives the message and, when known, the fix."""

    def __init__(self, message: str, fix: str | None = None, *, code: int = 2) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix
        self.code = code  # the command line's exit code: 2 = change the request, 1 = it was tried and failed

    def __str__(self) -> str:
        return f"{self.message}; {self.fix}" if self.fix else self.message


def did_you_mean(word: str, options: Iterable[str]) -> str:
    """"did you mean 'ml_sa'? " for a near miss of one of ``options`` ('-' for '_' counts as one), else "".

    The one suggestion every "unknown key/value" message uses: it ends in a space so it can sit before the list
    of valid choices. Options are shown as text (a Status shows as ``'done'``, not as the enum).
    """
    names = [str(option) for option in options]
    close = [o for o in names if o == word.replace("-", "_")] or difflib.get_close_matches(word, names, 3, 0.6)
    return f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
