"""Memory per configuration: the measured peak, the analytic KV cache and the weights' bytes.

:class:`MemorySpan` measures the peak memory of a span of work (one configuration):

* **GPU** (a CUDA device): ``torch.cuda.reset_peak_memory_stats`` at the start, then
  ``torch.cuda.max_memory_allocated`` (tensors) and ``max_memory_reserved`` (the caching
  allocator's segments, what the process holds) at the end. Exact: the allocator counts
  every allocation. ``peak_bytes`` is the allocated peak (weights included);
  ``increase_bytes`` is it minus the allocated bytes at the start.
* **CPU**: the process's resident set (RSS). Two methods, both from the kernel:

  - ``vmhwm``: writing ``5`` to ``/proc/self/clear_refs`` resets the kernel's RSS
    high-water mark (Linux >= 4.0, ``man 5 proc``), and ``VmHWM`` of
    ``/proc/self/status`` read at the end is the span's peak. Exact to the kernel's
    accounting (pages, 4 KiB; the mark is updated lazily, so a peak can read a few
    hundred KiB low). NOTE: the mark is per process, so another thread allocating
    during the span counts too. The mark is read through ``getrusage``'s
    ``ru_maxrss`` (~1 us; it is the same mark) unless ``ru_maxrss`` also holds an
    exited thread's older, higher mark (checked at the span's start), then from
    ``VmHWM`` (~8 us: the kernel formats the whole status file).
  - ``sampled`` (when ``clear_refs`` is not writable, or asked for): a daemon thread
    reads ``/proc/self/statm`` every ``interval_s`` (default 1 ms) and keeps the
    largest RSS; a peak shorter than the interval can be missed (it reads low, never
    high). Each read costs tens of microseconds (45 us measured on a loaded
    2-core VM), a few percent of one core at the default 1 ms.

  ``peak_bytes`` is the peak RSS (the whole process: interpreter, libraries, weights);
  ``increase_bytes`` is the peak minus the RSS at the start of the span (activations,
  KV cache, workspaces: what the configuration added).

Analytic figures: :func:`kv_cache_bytes` = layers x KV heads x head dim x 2 (K and V) x
dtype bytes x tokens, per sample, from the model's config at the current knobs (the
adapter's ``kv_cache_bytes(tokens)``: the reference model's config, or a Hugging Face
text config through :mod:`knoblab.models.kv`), and :func:`weights_bytes`.

Example:
    >>> with MemorySpan("cpu") as span:
    ...     x = b"x" * 50_000_000  # written: resident
    >>> span.result.increase_bytes >= 45_000_000
    True
"""

from __future__ import annotations

import functools
import os
import resource
import threading
from dataclasses import asdict, dataclass
from typing import Any

import torch

from knoblab.models.kv import hf_kv_bytes_per_token, kv_bytes_per_token, module_bytes

__all__ = [
    "MemoryResult",
    "MemorySpan",
    "cached_tokens",
    "hf_kv_bytes_per_token",
    "kv_bytes_per_token",
    "kv_cache_bytes",
    "module_bytes",
    "rss_bytes",
    "weights_bytes",
]

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


@dataclass(frozen=True)
class MemoryResult:
    """What a :class:`MemorySpan` measured (bytes).

    Attributes:
        peak_bytes: GPU: the allocated peak; CPU: the peak resident set of the process.
        increase_bytes: ``peak_bytes`` minus its value at the span's start.
        reserved_peak_bytes: GPU only: the caching allocator's reserved peak (else None).
        method: ``cuda_max_memory_allocated``, ``vmhwm`` or ``sampled``.
        resolution: how fine the method is, in words (for the record's environment).
        device: the device measured.
    """

    peak_bytes: int
    increase_bytes: int
    reserved_peak_bytes: int | None
    method: str
    resolution: str
    device: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Proc:
    """This process's ``/proc/self`` files, opened once and read with ``os.pread``.

    The runner opens a span per batch: opening ``status``, ``statm`` and ``clear_refs``
    each time cost ~45 us a span; a kept descriptor costs ~1 us (``statm``, ``clear_refs``)
    and ~8 us (``status``, which the kernel formats on every read). The descriptors are
    per process: a forked child (``/proc/self`` was resolved at open) opens its own.
    """

    def __init__(self) -> None:
        self.pid = -1
        self.fds: dict[str, int] = {}

    def fd(self, name: str, flags: int = os.O_RDONLY) -> int:
        if self.pid != os.getpid():  # first use, or a forked child: not the parent's files
            self.fds, self.pid = {}, os.getpid()
        fd = self.fds.get(name)
        if fd is None:
            fd = self.fds[name] = os.open(f"/proc/self/{name}", flags | os.O_CLOEXEC)
        return fd

    def read(self, name: str) -> bytes:
        return os.pread(self.fd(name), 4096, 0)


_PROC = _Proc()


def rss_bytes() -> int:
    """The process's resident set now, from ``/proc/self/statm`` (its second field, pages)."""
    return int(_PROC.read("statm").split()[1]) * _PAGE


def _status_bytes(*fields: str) -> dict[str, int]:
    """``fields`` of ``/proc/self/status`` (kB there) in bytes, from one read."""
    text = _PROC.read("status")
    out = {}
    for key in fields:
        at = text.find(b"\n" + key.encode() + b":")
        if at >= 0:
            out[key] = int(text[at + len(key) + 2 :].split(None, 2)[0]) * 1024
    missing = [k for k in fields if k not in out]
    if missing:
        raise OSError(f"/proc/self/status has no {', '.join(missing)}")
    return out


def _status_kib(field: str) -> int:
    return _status_bytes(field)[field]


#: How far ``ru_maxrss`` may read above the resident set at a span's start (the kernel's
#: counters are updated lazily) and still be taken as the reset mark.
_RU_SLACK = 256 * 1024


def _rusage_now() -> tuple[int, float]:
    """(``ru_maxrss`` in bytes (Linux reports KiB), this process's CPU seconds: user +
    system, all threads) from one ``getrusage(RUSAGE_SELF)``."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_maxrss * 1024, ru.ru_utime + ru.ru_stime


#: Whether this process may reset its high-water mark: checked once (it does not change),
#: so that a span costs one write and one read here (the runner opens one per batch).
_HWM_OK: bool | None = None


def _reset_hwm() -> bool:
    """Reset the kernel's RSS high-water mark; False when this kernel or sandbox refuses."""
    global _HWM_OK
    if _HWM_OK is False:
        return False
    try:
        os.write(_PROC.fd("clear_refs", os.O_WRONLY), b"5")
        if _HWM_OK is None:
            _status_kib("VmHWM")
    except OSError:
        _HWM_OK = False
        return False
    _HWM_OK = True
    return True


@functools.lru_cache(maxsize=16)
def _device(device: str | torch.device) -> tuple[torch.device, bool]:
    """(the device, whether it is a CUDA device here): parsed once, not per span (the
    runner opens one per unit; ``torch.cuda.is_available()`` alone costs ~0.5 us)."""
    dev = torch.device(device)
    return dev, dev.type == "cuda" and torch.cuda.is_available()


class MemorySpan:
    """Peak memory of the work inside ``with`` (module docstring: methods and resolution).

    Args:
        device: the device the work runs on (``cpu``, ``cuda``, ``cuda:1``).
        method: CPU only: ``auto`` (``vmhwm`` when the kernel allows it, else
            ``sampled``), ``vmhwm`` or ``sampled``.
        interval_s: the sampling thread's period (``sampled`` only).
    """

    def __init__(
        self, device: str | torch.device = "cpu", *, method: str = "auto", interval_s: float = 0.001
    ):
        if method not in ("auto", "vmhwm", "sampled"):
            from knoblab.errors import ConfigError

            raise ConfigError("memory.method", method, "auto, vmhwm or sampled")
        self.device, self.cuda = _device(device)
        self.method = method
        self.interval_s = interval_s
        self.result: MemoryResult | None = None
        self._start = 0
        self._peak = 0
        self._stop: threading.Event | None = None  # the sampling thread's (made when sampled)
        self._thread: threading.Thread | None = None
        self._mode = ""
        self._rusage = False
        self._cpu0 = 0.0
        self._end: tuple[int, float] | None = None
        #: reads the sampling thread made so far (``sampled`` only)
        self.samples = 0
        #: this process's CPU seconds (all threads) inside the span, set at its end
        #: (``getrusage``: the runner's load record takes it from here, not from two more
        #: ``time.process_time`` calls per unit)
        self.cpu_s: float | None = None

    def __enter__(self) -> MemorySpan:
        if self.cuda:
            self._cpu0 = _rusage_now()[1]
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._start = torch.cuda.memory_allocated(self.device)
            self._mode = "cuda_max_memory_allocated"
            return self
        if self.method in ("auto", "vmhwm") and _reset_hwm():
            self._mode = "vmhwm"
            self._start = rss_bytes()
            # ru_maxrss = max(the mark just reset, the peak of exited threads): usable
            # when the latter is not above what is resident now.
            maxrss, self._cpu0 = _rusage_now()
            self._rusage = maxrss <= self._start + _RU_SLACK
            return self
        self._cpu0 = _rusage_now()[1]
        self._start = rss_bytes()
        if self.method == "vmhwm":
            from knoblab.errors import ConfigError

            raise ConfigError(
                "memory.method", "vmhwm", "sampled (/proc/self/clear_refs is not writable here)"
            )
        self._mode = "sampled"
        self._peak = self._start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="knoblab-rss", daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        assert self._stop is not None
        while not self._stop.wait(self.interval_s):
            self._peak = max(self._peak, rss_bytes())
            self.samples += 1

    def __exit__(self, *exc: Any) -> None:
        self.result = self._finish()
        end = self._end or _rusage_now()
        self.cpu_s = end[1] - self._cpu0

    def _finish(self) -> MemoryResult:
        dev = str(self.device)
        if self._mode == "cuda_max_memory_allocated":
            torch.cuda.synchronize(self.device)
            peak = torch.cuda.max_memory_allocated(self.device)
            return MemoryResult(
                peak,
                max(0, peak - self._start),
                torch.cuda.max_memory_reserved(self.device),
                self._mode,
                "exact (the caching allocator's counters)",
                dev,
            )
        if self._mode == "vmhwm":
            if self._rusage:  # the kernel's max(mark, RSS now), as VmHWM, in ~1 us
                self._end = _rusage_now()
                peak = self._end[0]
            else:
                now = _status_bytes("VmHWM", "VmRSS")  # one read: the mark and RSS now
                peak = max(now["VmHWM"], now["VmRSS"])
            return MemoryResult(
                peak,
                max(0, peak - self._start),
                None,
                "vmhwm",
                "kernel RSS high-water mark, page granularity (4 KiB), updated lazily",
                dev,
            )
        if self._stop is not None:
            self._stop.set()
        if self._thread is not None:
            self._thread.join()
        peak = max(self._peak, rss_bytes())
        return MemoryResult(
            peak,
            max(0, peak - self._start),
            None,
            "sampled",
            f"RSS sampled every {self.interval_s * 1000:g} ms from /proc/self/statm; "
            "shorter peaks can be missed",
            dev,
        )


# -- analytic figures -------------------------------------------------------------------
def cached_tokens(
    input_text_tokens: int | None, vision_tokens: int | None, output_tokens: int | None
) -> int | None:
    """Tokens a sample's KV cache holds at its end: input text + vision + output - 1
    (the last output token is never fed back)."""
    if input_text_tokens is None or output_tokens is None:
        return None
    return int(input_text_tokens) + int(vision_tokens or 0) + max(0, int(output_tokens) - 1)


def kv_cache_bytes(adapter: Any, tokens: int | None) -> int | None:
    """A sample's KV-cache bytes: the adapter's ``kv_cache_bytes(tokens)`` at its current
    knobs, for the sample's :func:`cached_tokens`; None when the adapter does not say or
    the count is unknown (a user adapter without the method)."""
    fn = getattr(adapter, "kv_cache_bytes", None)
    if not callable(fn) or tokens is None:
        return None
    return int(fn(int(tokens)))


def weights_bytes(adapter: Any) -> int | None:
    """The model's weights in bytes: the adapter's ``weights_bytes()``, else its ``model``'s
    parameters and buffers, else None."""
    fn = getattr(adapter, "weights_bytes", None)
    if callable(fn):
        return int(fn())
    model = getattr(adapter, "model", None)
    return module_bytes(model) if isinstance(model, torch.nn.Module) else None
