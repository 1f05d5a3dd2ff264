"""The one exception type the command line turns into a one-line error."""


class UserError(Exception):
    """Bad input from the user (a missing file, invalid JSON, a wrong shape...).

    The CLI prints `coderl: error: <message>` and exits with status 2; no traceback.
    """
