"""Reproducer for the report in dask-gateway-gc-deadlock.md: a synchronous dask_gateway.Gateway
that is garbage-collected on its event loop's own thread blocks that thread for ever.

    python docs/upstream/dask_gateway_gc_deadlock.py     # dask-gateway 2026.3.0: "DEADLOCK ..."

No gateway server is needed: the Gateway objects never connect.
"""

import asyncio
import gc
import os
import threading

from dask_gateway import Gateway

keeper = Gateway(address="http://127.0.0.1:9")  # starts the loop thread (LoopRunner)
loop = keeper.loop


def make_garbage() -> None:
    class Cycle:
        pass

    cycle = Cycle()
    cycle.me = cycle  # only the cyclic collector frees it, on whichever thread it runs next
    cycle.gateway = Gateway(address="http://127.0.0.1:9", loop=loop)  # shares the running loop


def collect_on_the_loop_thread() -> None:
    gc.collect()  # Gateway.__del__ -> close() -> sync() -> future.result() on the loop's own thread
    print("collected on", threading.current_thread().name)


gc.disable()  # the collection happens where the script says, not at random
make_garbage()
loop.add_callback(collect_on_the_loop_thread)
probe = asyncio.run_coroutine_threadsafe(asyncio.sleep(0, result="the loop still answers"), loop.asyncio_loop)
try:
    print(probe.result(timeout=10))
except TimeoutError:
    print("DEADLOCK: the event loop thread is blocked in Gateway.__del__ (no answer in 10 s)")
    os._exit(1)
