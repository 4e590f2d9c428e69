"""The parent's progress bars, drawn from its workers' "progress" messages (tools/worker.py)."""

from __future__ import annotations

import sys


class Bars:
    """One tqdm bar per run of one backend; call it with each message from the worker."""

    def __init__(self, name: str, quiet: bool = False):
        self.name, self.quiet = name, quiet
        self.bar = None
        self.run = None

    def __call__(self, message: dict) -> None:
        if self.quiet or message.get("event") != "progress":
            return
        run = tuple(message.get("run", (0, 1)))
        if run != self.run:  # a new run (--repeat): a new bar
            self.close()
            self.bar, self.run = self._bar(message["num_epochs"], run), run
        if message.get("losses"):
            shown = {**message["losses"], "lr": message["lr"]}
            self.bar.set_postfix_str(" ".join(f"{key} {_number(shown[key])}" for key in ("content", "style", "tv", "lr")),
                                     refresh=False)
        self.bar.update(message["step"] - self.bar.n)

    def _bar(self, num_epochs: int, run: tuple[int, int]):
        from tqdm import tqdm

        label = self.name if run[1] == 1 else f"{self.name} run {run[0] + 1}/{run[1]}"
        return tqdm(total=num_epochs, desc=f"{label:>14}", unit="step", file=sys.stderr, dynamic_ncols=True,
                    mininterval=0.5)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _number(value) -> str:
    return "nan" if value is None else f"{value:.3g}"  # a diverged step's NaN arrives as null
