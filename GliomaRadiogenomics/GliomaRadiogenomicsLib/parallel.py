"""Process pools that work under every start method (fork on Linux, spawn on macOS / Windows and in embedded
interpreters, forkserver from Python 3.14): no code here forces ``fork``.

Large read-only inputs go into a module-level dict (``shared``): forked workers inherit it (no copy); spawned ones
receive it once each through the pool initializer (never once per task).

GLIOMA_MP_START_METHOD=spawn|forkserver|fork overrides the platform's default (the tests run spawn on Linux).
"""
from __future__ import annotations

import importlib
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from typing import Callable, Optional, Tuple

Shared = Tuple[str, str, dict]  # (module name, dict attribute, values)


def start_method() -> str:
    """GLIOMA_MP_START_METHOD when set (and available here), else this platform's default start method."""
    wanted = os.environ.get("GLIOMA_MP_START_METHOD", "").strip()
    if wanted:
        if wanted not in multiprocessing.get_all_start_methods():
            raise ValueError(f"GLIOMA_MP_START_METHOD={wanted}: not available here "
                             f"({', '.join(multiprocessing.get_all_start_methods())})")
        return wanted
    return multiprocessing.get_start_method(allow_none=True) or multiprocessing.get_context().get_start_method()


def _init(shared: Optional[Shared], initializer: Optional[Callable[[], None]]) -> None:
    if shared is not None:
        module, attr, values = shared
        getattr(importlib.import_module(module), attr).update(values)
    if initializer is not None:
        initializer()


def process_pool(n: int, initializer: Optional[Callable[[], None]] = None,
                 shared: Optional[Shared] = None) -> ProcessPoolExecutor:
    """A ProcessPoolExecutor of ``n`` workers; ``shared`` = (module, dict name, values): the values are in that
    module's dict in every worker (set in the parent too: the caller clears it afterwards)."""
    method = start_method()
    if shared is not None:
        module, attr, values = shared
        getattr(importlib.import_module(module), attr).update(values)  # fork inherits it from here
        if method == "fork":
            shared = None
    return ProcessPoolExecutor(n, mp_context=multiprocessing.get_context(method), initializer=_init,
                               initargs=(shared, initializer))
