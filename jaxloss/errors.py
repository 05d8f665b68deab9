"""User-facing errors of jaxloss."""

from __future__ import annotations


class InputError(ValueError):
    """Bad input from the user (a setting, a file, a data set): the message names it, says what
    was wrong and how to fix it. Command lines print it as an error, without a traceback."""


class FormulaError(ValueError):
    """A formula text that cannot be read, or a loss that does not fit its branch or capacity.

    Attributes:
      text: the formula as given (None when the error is not about a text).
      position: 0-based character offset of the problem in ``text`` (None when it has no position).
      reason: what was wrong and what was expected, without the position display.
    """

    def __init__(self, reason: str, text: str | None = None, position: int | None = None):
        self.reason = reason
        self.text = text
        self.position = position
        super().__init__(self._render())

    def _render(self) -> str:
        if self.text is None:
            return self.reason
        if self.position is None:
            return f"{self.reason}\n  in formula: {self.text}"
        return (f"{self.reason} (at position {self.position})\n"
                f"  {self.text}\n  {' ' * self.position}^")


class Interrupted(KeyboardInterrupt):
    """A search stopped by SIGTERM (Ctrl-C raises KeyboardInterrupt itself): work in flight is
    recorded nowhere, and ``--resume`` continues from the last checkpoint."""
