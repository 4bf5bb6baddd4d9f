"""Run a function on several threads at once and collect what they raise (thread-safety tests)."""
from __future__ import annotations

import threading
from typing import Callable


def run_threads(fn: Callable[[int], object], n: int) -> list[BaseException]:
    """``fn(i)`` for i in 0..n-1, each on its own thread, all started before any is joined; the exceptions raised."""
    errors: list[BaseException] = []

    def target(i: int) -> None:
        try:
            fn(i)
        except BaseException as e:  # noqa: BLE001 - handed to the test, which asserts there are none
            errors.append(e)

    threads = [threading.Thread(target=target, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors
