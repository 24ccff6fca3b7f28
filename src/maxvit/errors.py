"""The one exception type that the CLI turns into a one-line error and a non-zero exit."""


class UserError(Exception):
    """Bad input from the user (missing file, wrong name, invalid option).

    `maxvit` prints ``error: <message>`` on one line and exits with status 2; library users
    catch it like any exception.
    """
