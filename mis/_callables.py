"""User callables named in a configuration: ``"package.module:function"`` → the function.

A configuration may name the user's own parts (``model.factory``, ``train.fn``,
``data.loader``, a ``quant.methods`` entry): :func:`resolve_callable` imports the module with
:func:`importlib.import_module` and reads the attribute — never ``eval`` — and checks that the
object is callable and accepts the documented call, so that a typo fails when the
configuration is read, with a message naming the key, not deep inside a job.

A configuration that names callables runs their code: it is trusted like a script (as
Hydra's ``_target_`` is).

Objects handed over from Python (:func:`mis.audit_model`) are not importable by name; they are
kept in this process under ``"object:<module>.<qualname>"`` (:func:`object_spec`), which
resolves only in the process that registered them.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from collections.abc import Callable

from mis.exceptions import MisValueError

__all__ = ["OBJECT_PREFIX", "is_callable_spec", "object_spec", "resolve_callable", "spec_label"]

OBJECT_PREFIX = "object:"
_OBJECTS: dict[str, Callable] = {}


def is_callable_spec(value) -> bool:
    """True for a string that names a callable (``"pkg.module:fn"`` or an object spec)."""
    return isinstance(value, str) and ":" in value


def spec_label(spec: str) -> str:
    """A spec as reports show it: ``"pkg.mod:fn"`` as is, an object spec without its prefix."""
    return spec.removeprefix(OBJECT_PREFIX)


def object_spec(obj: Callable, key: str) -> str:
    """Keep ``obj`` in this process and return the spec that resolves to it.

    The spec is ``"object:<module>.<qualname>"``: the same function gives the same spec in
    every run of a script, so that an interrupted audit resumes.
    """
    if not callable(obj):
        raise MisValueError(f"{key} must be callable; got {type(obj).__name__}")
    name = f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', type(obj).__name__)}"
    spec = OBJECT_PREFIX + name
    _OBJECTS[spec] = obj
    return spec


def _import_module(module: str, key: str, spec: str):
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name != module.split(".")[0] or "" in sys.path or os.getcwd() in sys.path:
            raise MisValueError(
                f"{key} = {spec!r}: cannot import module {module!r} ({exc})"
            ) from None
    # the console script `mis` does not put the working directory on sys.path, as
    # `python -m` and `python script.py` do: a module next to the config is still found
    sys.path.append(os.getcwd())
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        raise MisValueError(
            f"{key} = {spec!r}: cannot import module {module!r} ({exc}; searched the "
            "installed packages and the working directory)"
        ) from None


def resolve_callable(
    spec, key: str, *, args: tuple | None = None, kwargs: dict | None = None, call: str = ""
) -> Callable:
    """The callable that ``spec`` names, checked to accept ``fn(*args, **kwargs)``.

    Parameters
    ----------
    spec : str or callable
        ``"package.module:function"`` (the attribute may be dotted: ``"pkg.mod:Class.make"``),
        an ``"object:..."`` spec from :func:`object_spec`, or the callable itself.
    key : str
        The configuration key, for messages (``"model.factory"``).
    args, kwargs
        Placeholder arguments of the documented call; :func:`inspect.Signature.bind` must
        accept them (nothing is called). Both None (default): the signature is not checked.
    call : str
        The documented call, for the message (``"fit(model, x, y, config, seed)"``).

    Raises
    ------
    MisValueError
        Malformed spec, module not found, attribute missing, not callable, or a signature
        that does not accept the documented call — each naming ``key``.
    """
    if callable(spec):
        fn = spec
    else:
        if not is_callable_spec(spec):
            raise MisValueError(
                f"{key} must name a callable as 'package.module:function'; got {spec!r}"
            )
        if spec.startswith(OBJECT_PREFIX):
            if spec not in _OBJECTS:
                raise MisValueError(
                    f"{key} = {spec!r} names a Python object handed to mis.audit_model in "
                    "another process; run it from that script (workers = 0), or name an "
                    "importable function as 'package.module:function'"
                )
            fn = _OBJECTS[spec]
        else:
            module, _, attr = spec.partition(":")
            if not module or not attr:
                raise MisValueError(
                    f"{key} must name a callable as 'package.module:function'; got {spec!r}"
                )
            fn = _import_module(module, key, spec)
            for part in attr.split("."):
                if not hasattr(fn, part):
                    raise MisValueError(
                        f"{key} = {spec!r}: module {module!r} has no attribute {attr!r}"
                    )
                fn = getattr(fn, part)
    if not callable(fn):
        raise MisValueError(f"{key} = {spec!r} is not callable (a {type(fn).__name__})")
    if args is None and kwargs is None:
        return fn
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):  # some builtins have no signature: accept them
        return fn
    try:
        sig.bind(*(args or ()), **(kwargs or {}))
    except TypeError as exc:
        raise MisValueError(
            f"{key} = {spec if isinstance(spec, str) else getattr(fn, '__name__', fn)!r} has "
            f"the wrong signature {sig}: it must accept {call or 'the documented call'} ({exc})"
        ) from None
    return fn
