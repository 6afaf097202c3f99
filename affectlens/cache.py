"""One locked cache for loaded models, used by every loader (whisper, face, CLIP, openSMILE,
the speech-emotion pipeline, MiniLM, the LLM backends); ``loaded()`` lists what is in memory
(``affectlens doctor``), ``evict``/``clear_all`` free it.

``functools.lru_cache`` holds no lock while the function runs, so two threads that ask for the
same model first (the parallel tool branches, the warm-up thread and a tool) each load a copy.
Here the first caller of a key loads it while later callers of that key wait for it; callers
of other keys are not held up. A load that raises is not cached (the next call tries again).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from functools import update_wrapper
from typing import Any, Generic, TypeVar

T = TypeVar("T")

_ALL: list[ModelCache] = []


class ModelCache(Generic[T]):
    """A least-recently-used cache of at most ``maxsize`` loaded models, keyed on the
    arguments (or on ``key(*args, **kwargs)``); at most one load per key at a time."""

    def __init__(
        self,
        load: Callable[..., T],
        maxsize: int,
        key: Callable[..., Hashable] | None = None,
        describe: Callable[[Hashable], str] = lambda k: repr(k)[:120],
    ):
        self._load, self.maxsize, self._key = load, maxsize, key
        self.describe = describe  # a key for people (never a secret: doctor prints it)
        self.name = f"{load.__module__}.{load.__qualname__}"
        self._items: OrderedDict[Hashable, T] = OrderedDict()
        self._loading: dict[Hashable, threading.Lock] = {}
        self._lock = threading.Lock()
        self.loads = 0  # how many times ``load`` ran (tests, diagnostics)
        update_wrapper(self, load)
        _ALL.append(self)

    def key(self, *args: Any, **kwargs: Any) -> Hashable:
        if self._key is not None:
            return self._key(*args, **kwargs)
        return (args, tuple(sorted(kwargs.items())))

    def __call__(self, *args: Any, **kwargs: Any) -> T:
        key = self.key(*args, **kwargs)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            pending = self._loading.setdefault(key, threading.Lock())
        with pending:  # one loader per key; the others wait here, then find it cached
            with self._lock:
                if key in self._items:
                    return self._items[key]
            try:
                value = self._load(*args, **kwargs)
                with self._lock:
                    self.loads += 1
                    self._items[key] = value
                    while len(self._items) > self.maxsize:
                        self._items.popitem(last=False)
            finally:
                with self._lock:
                    self._loading.pop(key, None)
        return value

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def keys(self) -> list[Hashable]:
        """What is loaded, least recently used first."""
        with self._lock:
            return list(self._items)

    def evict(self, *args: Any, **kwargs: Any) -> bool:
        """Drop one model (freed when its last user lets go); False when it was not loaded."""
        with self._lock:
            return self._items.pop(self.key(*args, **kwargs), None) is not None

    def cache_clear(self) -> None:
        with self._lock:
            self._items.clear()


def model_cache(maxsize: int = 1) -> Callable[[Callable[..., T]], ModelCache[T]]:
    """Decorator: ``@model_cache(maxsize=2)`` on a loader function."""
    return lambda load: ModelCache(load, maxsize)


def clear_all() -> None:
    """Drop every cached model (frees memory; the next use loads again)."""
    for cache in _ALL:
        cache.cache_clear()


def loaded() -> list[tuple[str, str]]:
    """(loader, which model) for every model in memory in this process."""
    return [(c.name, c.describe(k)) for c in _ALL for k in c.keys()]
