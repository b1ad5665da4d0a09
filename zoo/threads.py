"""One BLAS thread for the zoo's numpy linear algebra.

The zoo's matrices are small (a probe's Gram matrix is at most a few hundred wide), where a
multi-threaded BLAS only adds overhead, and on a machine whose cores are busy it is ruinous:
OpenBLAS's default threads made one 260 x 260 solve take 0.53 s instead of 2.2 ms on this
2-core machine under load (``python -m benchmarks.blas_threads``), which turned the linear
probes of one compiled SSM into 77 s. :func:`one_blas_thread` limits numpy's BLAS to one thread
inside a ``with`` block (threadpoolctl; the previous limit comes back afterwards): the CLI,
``methods.run`` and the evaluation grid use it, so a user's own process keeps its settings.
"""

from __future__ import annotations

from threadpoolctl import threadpool_limits


def one_blas_thread():
    return threadpool_limits(limits=1, user_api="blas")
