"""The one exception type that reaches the user as a single line (no traceback)."""


class UserError(Exception):
    """Something the user can fix; str(exc) is the whole message: what is wrong and how to fix it."""
