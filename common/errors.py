"""``UserError``, which the command line prints as one line (no traceback), and its kinds."""


class UserError(Exception):
    """Bad input or a missing resource the user can fix; printed without a traceback."""


class WeightsUnavailable(UserError):
    """Pretrained weights that are neither cached nor downloadable here."""


class BackendUnavailable(UserError):
    """A backend whose framework is not installed or does not import."""


class DivergedError(UserError):
    """Training produced a loss or an image that is not finite (NaN or infinity), usually an lr too large."""

    def __init__(self, step: int | None, what: str):
        self.step = step
        where = f"at step {step}" if step is not None else "after the last step"
        super().__init__(f"diverged {where}: {what} is not finite; try a smaller lr")
