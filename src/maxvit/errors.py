"""The one exception type that the CLI turns into a one-line error and a non-zero exit."""


class UserError(ValueError):
    """Bad input from the user (missing file, wrong name, invalid option, impossible geometry).

    `maxvit` prints ``error: <message>`` on one line and exits with status 2. For library users
    it is a ``ValueError``, what Python code raises for a bad argument (the model code raises
    it too, e.g. for an input size its stages cannot divide).
    """
