"""The one exception type the command line turns into a one-line message."""


class UserError(Exception):
    """Bad input or a missing resource the user can fix; printed without a traceback."""


class WeightsUnavailable(UserError):
    """Pretrained weights that are neither cached nor downloadable here."""


class BackendUnavailable(UserError):
    """A backend whose framework is not installed or does not import."""
