"""The exceptions the CLI turns into one line and a non-zero exit: bad input, and a training run
stopped by a signal."""


class UserError(ValueError):
    """Bad input from the user (missing file, wrong name, invalid option, impossible geometry).

    `maxvit` prints ``error: <message>`` on one line and exits with status 2. For library users
    it is a ``ValueError``, what Python code raises for a bad argument (the model code raises
    it too, e.g. for an input size its stages cannot divide).
    """


class Interrupted(Exception):
    """Training stopped on a signal after checkpointing; `maxvit` prints the message (what was
    saved and how to resume) and exits with `exit_code` (130 for SIGINT, 143 for SIGTERM)."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code
