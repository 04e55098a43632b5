"""Loader registry: file suffix -> thin adapter that builds an :class:`hw_sim.ir.Graph`.

A loader is a module in this package that defines

* ``SUFFIXES``: the lower-case file suffixes it reads, e.g. ``(".h5", ".keras")``;
* ``load(path: str, safe_mode: bool = True) -> Graph``: raising
  :class:`hw_sim.errors.HwSimError` on bad input; with ``safe_mode`` it must not run code
  stored in the file (Keras ``Lambda`` layers).

Modules are discovered by name, so a new format (e.g. ``tflite.py`` with
``SUFFIXES = (".tflite",)``) plugs in by adding its module; no registry edit is needed.
Loader modules must import their framework lazily (inside ``load``) so that discovery
stays cheap. :func:`register_loader` adds a loader at run time (e.g. from a plug-in).
"""

from __future__ import annotations

import importlib
import inspect
import os
import pkgutil
from collections.abc import Callable

from hw_sim.errors import HwSimError
from hw_sim.ir import Graph

__all__ = ["load_graph", "register_loader", "supported_suffixes"]

LoaderFn = Callable[..., Graph]

_REGISTRY: dict[str, LoaderFn] = {}
_BROKEN: dict[str, str] = {}
_DISCOVERED = False


def register_loader(suffixes: tuple[str, ...] | list[str], load: LoaderFn) -> None:
    """Register ``load`` for files ending in any of ``suffixes`` (case-insensitive)."""
    for suffix in suffixes:
        _REGISTRY[suffix.lower()] = load


def _discover() -> None:
    global _DISCOVERED
    if _DISCOVERED:
        return
    _DISCOVERED = True
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_"):
            continue
        try:
            module = importlib.import_module(f"{__name__}.{info.name}")
        except Exception as exc:  # a broken plug-in must not break the other formats
            _BROKEN[info.name] = f"{type(exc).__name__}: {exc}"
            continue
        suffixes = getattr(module, "SUFFIXES", None)
        load = getattr(module, "load", None)
        if suffixes and callable(load):
            for suffix in suffixes:
                _REGISTRY.setdefault(suffix.lower(), load)


def supported_suffixes() -> list[str]:
    """File suffixes some loader reads."""
    _discover()
    return sorted(_REGISTRY)


def _call_loader(load: LoaderFn, path: str, safe_mode: bool) -> Graph:
    """``load(path, safe_mode=...)``, or ``load(path)`` for a loader without that argument."""
    try:
        accepts = "safe_mode" in inspect.signature(load).parameters
    except (TypeError, ValueError):
        accepts = False
    return load(path, safe_mode=safe_mode) if accepts else load(path)


def load_graph(path: str | os.PathLike, safe_mode: bool = True) -> Graph:
    """Load a model file into the IR with the loader registered for its suffix.

    ``safe_mode=False`` lets a loader run code stored in the file (Keras ``Lambda`` layers).
    """
    path = os.fspath(path)
    if not os.path.lexists(path):
        raise HwSimError(f"model file not found: {path}")
    if os.path.isdir(path):
        raise HwSimError(f"expected a model file, got a directory: {path}")
    _discover()
    lower = path.lower()
    for suffix in sorted(_REGISTRY, key=len, reverse=True):
        if lower.endswith(suffix):
            return _call_loader(_REGISTRY[suffix], path, safe_mode)
    hint = f" (loaders that failed to import: {_BROKEN})" if _BROKEN else ""
    raise HwSimError(
        f"no loader for {os.path.basename(path)!r}: supported suffixes are "
        f"{', '.join(supported_suffixes())}{hint}"
    )
