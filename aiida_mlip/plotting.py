"""Every plot the package writes is drawn in matplotlib's default style.

A library imported into the same process may change matplotlib's global ``rcParams`` (mace-torch,
for one, sets ``font.size`` to 8 when its command-line modules are imported); the same records must
give the same picture in a daemon worker, a notebook or a test.
"""

from __future__ import annotations

import functools


def in_default_style(function):
    """Run ``function`` (which draws and saves a figure) under ``matplotlib.style.context("default")``."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        import matplotlib.style

        with matplotlib.style.context("default"):
            return function(*args, **kwargs)

    return wrapper
