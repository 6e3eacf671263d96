"""Progress bars (tqdm) for the command line; ``quiet`` turns every one of them off."""

from __future__ import annotations

import sys

__all__ = ["Progress"]

_LABELS = {"calibration": "calibration batches", "compile": "compiling layer variants",
           "evaluation": "search evaluations"}


class Progress:
    """One bar per stage: :meth:`phase_hook` for the build phases, :meth:`bar` otherwise."""

    def __init__(self, quiet: bool = False):
        self.quiet = quiet
        self._bars: dict = {}

    def bar(self, iterable=None, *, total: int | None = None, desc: str = ""):
        """A tqdm bar (a plain iterator when quiet)."""
        if self.quiet:
            return _Silent(iterable)
        from tqdm import tqdm

        return tqdm(iterable, total=total, desc=desc, file=sys.stderr, leave=False,
                    dynamic_ncols=True)

    def phase_hook(self, stage: str, done: int, total: int | None) -> None:
        """``BuildContext.progress``: advance (or open) the stage's bar."""
        if self.quiet:
            return
        bar = self._bars.get(stage)
        if bar is None or bar.disable:
            bar = self._bars[stage] = self.bar(total=total, desc=_LABELS.get(stage, stage))
        bar.update(done - bar.n)
        if total is not None and done >= total:
            self.close(stage)

    def close(self, stage: str | None = None) -> None:
        for key in [stage] if stage else list(self._bars):
            bar = self._bars.pop(key, None)
            if bar is not None:
                bar.close()


class _Silent:
    """What :meth:`Progress.bar` returns when quiet: iterates, ignores updates."""

    def __init__(self, iterable=None):
        self.iterable = iterable
        self.n = 0
        self.disable = True

    def __iter__(self):
        return iter(self.iterable if self.iterable is not None else ())

    def update(self, n: int = 1) -> None:
        self.n += n

    def set_postfix_str(self, *_args, **_kwargs) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
