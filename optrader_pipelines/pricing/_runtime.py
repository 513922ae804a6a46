"""How the engine runs its kernels: float64, fixed padded shapes, all cores, persistent compile cache.

* ``jax_enable_x64``: every kernel is float64.
* On the CPU, JAX is given one host device per core (``--xla_force_host_platform_device_count``,
  set only when JAX has not been initialised yet and the user has not set it) and a kernel runs
  as ``shard_map`` over those devices, each device walking its half in cache-sized chunks with
  a ``fori_loop`` (see :data:`CPU_CHUNK`). XLA:CPU otherwise materialises every intermediate of
  a fused kernel as a full array, which makes a Black-Scholes kernel memory-bound at about a
  third of this speed.
* On the CPU, LLVM is told to prefer 512-bit vectors (``--xla_cpu_prefer_vector_width=512``;
  XLA's default is 256). Where the CPU has AVX-512 the compute-bound kernels then run on twice
  the lanes: on this machine's AMD EPYC the American price is 1.4-1.6 times faster and the IV
  about 1.1 times, with bitwise the same results; where it has no AVX-512 the setting changes
  nothing. As with the device count, a value the user put in ``XLA_FLAGS`` wins.
* On the CPU a kernel's outputs are written into its previous call's output buffers (donated, see
  :class:`_Kernel`) and copied out of each device's buffer in place into result arrays whose
  memory is recycled once the caller drops them (:class:`_ResultPool`): fresh multi-megabyte
  buffers cost a page fault per 4 KiB on first touch, and at 1M contracts those faults (in XLA's
  outputs and in JAX's own assembly of a sharded result) were as long as the Black-Scholes kernel
  itself.
* On a GPU the kernel runs on one device over the whole padded array.
* Inputs are padded to one of :data:`PAD_SIZES` (longer inputs run in slices of the largest), so a
  new chain length never triggers a compilation. On the CPU an expensive kernel (the American
  ones, hundreds of European evaluations per contract) declares ``cpu_slices``, a short ladder of
  sizes: the input runs in pieces of the largest size that fits what is left, and the last piece
  in the smallest, so 5,000 contracts cost 5,120 evaluations rather than 16,384, while a large
  input still runs in few calls (a call's dispatch costs about a millisecond).
* Compiled kernels are kept in a persistent cache (``OPTRADER_JAX_CACHE``, default
  ``~/.cache/optrader/jax``; ``off`` disables it), so a new process does not recompile.
* Traced kernels are kept there too (``exported/``, :mod:`jax.export`): tracing the American
  kernels' nested derivatives takes seconds that the compile cache does not save (the Greeks
  kernel 4.7 s, the IV 2.7 s, in every new process: the daily run, each Dagster run). A kernel
  is exported once per padded size, input types, device count and version of this package's
  code and of JAX (older versions' files are removed); every process then runs the same
  deserialized module, so results do not depend on which process traced it. Any failure to read
  or write it falls back to tracing.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path


def _xla_cpu_flags(current: str, cores: int) -> str:
    """XLA_FLAGS with the engine's CPU settings added, each only where the user has not set it."""
    flags = [current] if current else []
    if "xla_force_host_platform_device_count" not in current:
        flags.append(f"--xla_force_host_platform_device_count={max(1, cores)}")
    if "xla_cpu_prefer_vector_width" not in current:
        flags.append("--xla_cpu_prefer_vector_width=512")
    return " ".join(flags)


if "jax" not in sys.modules:
    os.environ["XLA_FLAGS"] = _xla_cpu_flags(os.environ.get("XLA_FLAGS", "").strip(), os.cpu_count() or 1)

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402
from jax.sharding import Mesh, NamedSharding, PartitionSpec  # noqa: E402

# A ladder of powers of 4. 16,384 was added in session 14: a chain of 5,000-16,000 contracts (one
# underlying's full chain) padded to 65,536 before, and Black-Scholes + Greeks took 3.1-3.6 ms
# there against 1.1-1.3 ms at 16,384 (the IV 12-13.5 against 2.9-3.8 ms); numpy at 16,000: 1.4-1.8.
PAD_SIZES = (4_096, 16_384, 65_536, 262_144, 1_048_576)
# Contracts per step of a device's loop, unless the kernel sets ``kernel.chunk``. XLA:CPU splits a
# loop fusion across the intra-op threads once its estimated cost passes a threshold, and with one
# device per core two devices' split fusions then contend for the same cores; a step of 256
# contracts keeps every fusion of the Black-Scholes and implied-vol kernels whole, and its
# intermediates in L1/L2. Those kernels set 256 (measured there); the American kernels, whose
# steps are far heavier, set their own.
CPU_CHUNK = 32_768


log = logging.getLogger(__name__)
_EXPORT_DIR: Path | None = None
EXPORTS = {"loaded": 0, "exported": 0, "failed": 0}  # this process's exported-kernel cache use


def _configure_cache() -> None:
    global _EXPORT_DIR
    where = os.environ.get("OPTRADER_JAX_CACHE", str(Path.home() / ".cache" / "optrader" / "jax"))
    if where.lower() in ("", "off", "0", "none"):
        return
    try:
        Path(where).mkdir(parents=True, exist_ok=True)
    except OSError:
        return
    jax.config.update("jax_compilation_cache_dir", where)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    _EXPORT_DIR = Path(where) / "exported"


_configure_cache()


@lru_cache(maxsize=None)
def _code_version() -> str:
    """A digest of this package's source and the JAX version: a changed kernel is re-exported."""
    digest = hashlib.sha256(f"{jax.__version__} {jax.lib.__version__}".encode())
    for path in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:20]


class _Exportable:
    """A jitted kernel that, on its first call, runs from the exported-kernel cache: the module
    deserialized from disk when it is there, else traced, exported and written there first.

    Its first ``n_in`` arguments are the inputs, the rest the donated output carriers
    (:class:`_Kernel`): the cache key is the inputs', and :meth:`out_shapes` reads the outputs'
    shapes from the cached module, so a process that finds its kernels on disk traces nothing."""

    def __init__(self, jitted, name: str, size: int, sharding, n_in: int, donate: tuple = ()) -> None:
        self.jitted, self.name, self.size, self.sharding = jitted, name, size, sharding
        self.n_in, self.donate = n_in, donate
        self._call = None

    def __call__(self, *args):
        if self._call is None:
            self._call = self._resolve(args)
        return self._call(*args)

    def _jit(self, exported):
        return jax.jit(exported.call, donate_argnums=self.donate, keep_unused=True)

    def _path(self, inputs) -> Path:
        signature = [self.name, str(self.size), platform(), str(len(devices()))]
        signature += [f"{a.dtype.str}{tuple(a.shape)}" for a in inputs]
        key = hashlib.sha256("|".join(signature).encode()).hexdigest()[:12]
        return _EXPORT_DIR / f"{self.name}-{self.size}-{key}-{_code_version()}.jaxexport"

    @staticmethod
    def _drop_other_versions(path: Path) -> None:
        """Remove this kernel's files from other code versions, so the cache holds one per kernel."""
        stem = path.name.rsplit("-", 1)[0]
        for old in path.parent.glob(f"{stem}-*.jaxexport"):
            if old != path:
                old.unlink(missing_ok=True)

    def _load(self, inputs):
        """The cached module for these inputs, or None (absent, unreadable, or no cache)."""
        if _EXPORT_DIR is None:
            return None
        path = self._path(inputs)
        if not path.exists():
            return None
        try:
            from jax import export

            exported = export.deserialize(bytearray(path.read_bytes()))
        except Exception as exc:  # a damaged or foreign file: traced again and replaced
            log.warning("exported kernel %s unreadable (%s); tracing it again", path.name, exc)
            return None
        EXPORTS["loaded"] += 1
        return exported

    def out_shapes(self, inputs, traced):
        """The outputs' shapes and dtypes: from the cached module when there is one (which then
        serves the calls too), else ``traced()``."""
        if self._call is None:
            exported = self._load(inputs)
            if exported is not None:
                self._call = self._jit(exported)
                return [jax.ShapeDtypeStruct(a.shape, a.dtype) for a in exported.out_avals]
        return traced()

    def compile(self, specs) -> None:
        """Resolve and compile now (``specs``: the inputs' and carriers' ``ShapeDtypeStruct``s):
        the exported module loaded or traced, and the executable read from the compile cache or
        compiled. The jitted callable keeps it, so the first call finds it ready."""
        if self._call is None:
            self._call = self._resolve(specs)
        self._call.lower(*specs).compile()

    def _resolve(self, args):
        if _EXPORT_DIR is None:
            return self.jitted
        exported = self._load(args[:self.n_in])
        if exported is not None:
            return self._jit(exported)
        try:
            from jax import export

            path = self._path(args[:self.n_in])
            specs = [jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=self.sharding) for a in args]
            exported = export.export(self.jitted)(*specs)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
            tmp.write_bytes(exported.serialize())
            os.replace(tmp, path)  # atomic: a concurrent reader sees the old file or the whole new one
            self._drop_other_versions(path)
            EXPORTS["exported"] += 1
            return self._jit(exported)
        except Exception as exc:
            EXPORTS["failed"] += 1
            log.warning("kernel %s not exported (%s); it is traced in every process", self.name, exc)
            return self.jitted


@lru_cache(maxsize=None)
def devices() -> tuple:
    """The devices a kernel is spread over: all host devices on the CPU, the first accelerator
    otherwise. Fixed once JAX has started (kept: ``jax.devices()`` costs tens of microseconds, and
    every call of a kernel asks)."""
    devs = jax.devices()
    return tuple(devs) if devs[0].platform == "cpu" else (devs[0],)


def platform() -> str:
    return devices()[0].platform


def bucket(n: int) -> int:
    for size in PAD_SIZES:
        if n <= size:
            return size
    return PAD_SIZES[-1]


def pieces(kernel, n: int) -> list[tuple[int, int, int]]:
    """(start, stop, padded size) of each call that runs ``n`` contracts through ``kernel``: the
    kernel's ``cpu_slices`` ladder on the CPU when it has one (the largest size that the rest
    fills, the smallest for the last piece), else slices of the bucket of ``n``."""
    ladder = sorted(getattr(kernel, "cpu_slices", ()) or ())
    if not ladder or platform() != "cpu":
        size = bucket(n)
        return [(start, min(start + size, n), size) for start in range(0, max(n, 1), size)]
    out, start = [], 0
    while True:
        left = n - start
        size = max([s for s in ladder if s <= left], default=ladder[0])
        out.append((start, min(start + size, n), size))
        start += size
        if start >= n:
            return out


@lru_cache(maxsize=None)
def _tile_body(kernel, chunk: int):
    """One loop body per kernel and chunk: chunk ``i`` of the inputs through ``kernel``, its results
    written in place into the outputs (the donated carriers, see :class:`_Kernel`). JAX caches a
    traced body by function object, so every padded size of a kernel reuses the first size's trace
    (the American kernels' nested autodiff takes seconds to trace)."""
    def body(i, state):
        inputs, outputs = state
        tiles = tuple(jax.lax.dynamic_slice_in_dim(a, i * chunk, chunk) for a in inputs)
        results = kernel(*tiles)
        outputs = tuple(jax.lax.dynamic_update_slice_in_dim(o, res.astype(o.dtype), i * chunk, 0)
                        for o, res in zip(outputs, results))
        return inputs, outputs
    return body


class _Kernel:
    """One kernel compiled at one padded size: the callable, the input sharding (None off the CPU)
    and, on the CPU, the output carriers.

    A call's outputs are fresh XLA allocations, and at 1M contracts their first touch (a page fault
    per 4 KiB) was a third of a Black-Scholes kernel's time. On the CPU the kernel therefore takes
    its previous call's output buffers as extra, donated arguments ("carriers"), and the loop over
    chunks writes each chunk's results into them in place; :func:`run` copies the results out
    before the next call. (``lax.map`` would instead fill a fresh stacked output with zeros and copy
    it once per output before its loop: at 1M contracts that cost the Black-Scholes kernel 3 ms of
    its 13, and the implied vol 2 ms.) The memory held is one set of outputs per kernel and size,
    like the staging pool's inputs. The first carriers' shapes come from the exported module, or
    from tracing the kernel on one chunk when there is none."""

    def __init__(self, fn, sharding, traced_out_shapes=None, size: int = 0, in_dtypes: tuple = ()) -> None:
        self.fn, self.sharding, self.traced_out_shapes = fn, sharding, traced_out_shapes
        self.size, self.in_dtypes = size, in_dtypes
        self.carriers: list | None = None
        self.layout: list[tuple[int, int]] | None = None  # (shard number, first element), see _copy_out
        self._carrier_shapes: list = []
        self.prepared = False
        self.pending = None  # the future of a background preparation (see prepare())
        self._lock = threading.Lock()  # one preparation, whichever thread comes first

    def prepare(self) -> None:
        """Everything a first call does before it computes: on the CPU, read (or trace and export)
        the kernel, get its executable from the compile cache (or compile it) and make the first
        carriers. A kernel of the American engine takes 1.3-1.5 s here, nearly all of it XLA
        rebuilding the executable's HLO from the cache, on one core; :func:`prepare` runs it in a
        background thread. Safe from any thread: a call waits for a preparation in progress."""
        if self.prepared:
            return
        with self._lock:
            if self.prepared:
                return
            if self.sharding is not None:
                specs = [jax.ShapeDtypeStruct((self.size,), np.dtype(d), sharding=self.sharding) for d in self.in_dtypes]
                shapes = (self.fn.out_shapes(specs, self.traced_out_shapes) if isinstance(self.fn, _Exportable)
                          else self.traced_out_shapes())
                if isinstance(self.fn, _Exportable):
                    self.fn.compile(specs + [jax.ShapeDtypeStruct(o.shape, o.dtype, sharding=self.sharding)
                                             for o in shapes])
                self._carrier_shapes = [jax.ShapeDtypeStruct(o.shape, o.dtype) for o in shapes]
                self.carriers = self._new_carriers()
            self.prepared = True

    def _new_carriers(self) -> list:
        return [jax.device_put(np.zeros(o.shape, o.dtype), self.sharding) for o in self._carrier_shapes]

    def __call__(self, inputs: list) -> list:
        if self.sharding is None:
            return list(jax.block_until_ready(self.fn(*inputs)))
        self.prepare()
        carriers, self.carriers = self.carriers, None  # donated: gone even if the call fails
        if carriers is None:  # the last call failed after donating them
            carriers = self._new_carriers()
        out = list(jax.block_until_ready(self.fn(*inputs, *carriers)))
        self.carriers = out  # these become the next call's carriers
        if self.layout is None:
            self.layout = _layout(out[0])
        return out


@lru_cache(maxsize=None)
def _compiled(kernel, size: int, in_dtypes: tuple, n_out: int) -> _Kernel:
    """The kernel compiled (or loaded from the export cache on its first call) at one padded size,
    for inputs of ``in_dtypes`` (numpy dtype strings) and ``n_out`` outputs."""
    n_in = len(in_dtypes)
    devs = devices()
    nd = len(devs)
    # only this package's kernels are exported: their code is what the cache key digests
    name = f"{kernel.__module__.rsplit('.', 1)[-1]}.{kernel.__name__}"
    own = kernel.__module__.startswith(f"{__package__}.")

    def wrap(jitted, tag, sharding, donate=()):
        return _Exportable(jitted, tag, size, sharding, n_in, donate) if own else jitted

    if devs[0].platform != "cpu" or size % nd:
        return _Kernel(wrap(jax.jit(kernel), name, None), None, size=size, in_dtypes=in_dtypes)
    per_device = size // nd
    chunk = min(getattr(kernel, "chunk", CPU_CHUNK), per_device)
    def traced_out_shapes():
        chunk_out = jax.eval_shape(kernel, *[jax.ShapeDtypeStruct((chunk,), d) for d in in_dtypes])
        return [jax.ShapeDtypeStruct((size,), o.dtype) for o in chunk_out]

    body = _tile_body(kernel, chunk)

    def local(*arrays):
        inputs, carriers = arrays[:n_in], arrays[n_in:]
        _, out = jax.lax.fori_loop(0, per_device // chunk, body, (inputs, carriers))
        return out

    mesh = Mesh(np.array(devs), ("d",))
    spec = PartitionSpec("d")
    donate = tuple(range(n_in, n_in + n_out))
    fn = jax.jit(jax.shard_map(local, mesh=mesh, in_specs=(spec,) * (n_in + n_out), out_specs=(spec,) * n_out),
                 donate_argnums=donate, keep_unused=True)
    sharding = NamedSharding(mesh, spec)
    return _Kernel(wrap(fn, f"{name}-c{chunk}", sharding, donate), sharding, traced_out_shapes, size, in_dtypes)


def _threads(pools: dict, workers: int, name: str) -> ThreadPoolExecutor:
    """This process's pool from ``pools`` (keyed by process id: a forked child makes its own
    threads, the parent's do not exist there), made on first use."""
    pid = os.getpid()
    pool = pools.get(pid)
    if pool is None:
        pool = pools[pid] = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)
    return pool


_LOADERS: dict[int, ThreadPoolExecutor] = {}
_PREPARING = threading.Lock()


def prepare(kernel, n: int, in_dtypes, n_out: int) -> list:
    """Start preparing, in background threads, the compiled kernels that running ``n`` contracts
    through ``kernel`` will use (:meth:`_Kernel.prepare`: one per padded size of :func:`pieces`);
    returns their futures. A caller that knows which kernels come next (``greeks_table``: the
    American IV and Greeks) starts them here and does other work meanwhile; a call that comes
    before its preparation is done waits for it, and one whose preparation failed tries again
    itself (so the error, if any, is raised there). The pool has one thread fewer than the machine
    has cores (at least one). Off the CPU a preparation does nothing: the first call compiles."""
    dtypes = tuple(np.dtype(d).str for d in in_dtypes)
    kernels = [_compiled(kernel, size, dtypes, n_out) for size in sorted({size for *_, size in pieces(kernel, n)})]
    # one core fewer than the machine has: the caller goes on with its own work meanwhile
    pool = _threads(_LOADERS, max(1, (os.cpu_count() or 1) - 1), "optrader-load")
    futures = []
    for k in kernels:
        with _PREPARING:
            if k.prepared:
                continue
            # one background preparation per kernel at a time (another would hold a thread waiting)
            if k.pending is None or (k.pending.done() and k.pending.exception() is not None):
                k.pending = pool.submit(k.prepare)
            futures.append(k.pending)
    return futures


def _aligned_empty(size: int, dtype, align: int = 64) -> np.ndarray:
    """An uninitialised array whose data starts on a multiple of ``align`` bytes (64: JAX's CPU
    client then uses the host memory in place instead of copying it on ``device_put``)."""
    dtype = np.dtype(dtype)
    raw = np.empty(size * dtype.itemsize + align, dtype=np.uint8)
    offset = (-raw.ctypes.data) % align
    return raw[offset:offset + size * dtype.itemsize].view(dtype)


_ALIGN = 64


class _StagingPool:
    """Reusable aligned host buffers for padded kernel inputs, one set per (size, dtype, slot).

    Fresh multi-megabyte allocations cost a page fault per 4 KiB on first touch, which at 1M
    contracts is a third of the kernel's own time; the pool touches each page once per process.
    A lock serialises the kernels that use it (a device computes one kernel at a time anyway)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._buffers: dict[tuple[int, str, int], np.ndarray] = {}
        self._on_device: dict[tuple[int, object], object] = {}  # (id of a buffer, sharding) -> jax.Array

    def buffer(self, size: int, dtype, slot: int) -> np.ndarray:
        key = (size, np.dtype(dtype).str, slot)
        buf = self._buffers.get(key)
        if buf is None:
            buf = self._buffers[key] = _aligned_empty(size, dtype)
        return buf

    def device_arrays(self, arrays: list[np.ndarray], sharding) -> list:
        """``arrays`` as JAX arrays on ``sharding``. A pool buffer's JAX array is made once and kept:
        it reads the buffer in place (checked when it is made), so each call sees what was staged
        into the buffer since, without the ~0.1 ms per input that ``device_put`` costs. Anything
        else, or a buffer JAX copied, is put again at every call."""
        out: list = [None] * len(arrays)
        todo = []
        for i, a in enumerate(arrays):
            kept = self._on_device.get((id(a), sharding))
            if kept is not None:
                out[i] = kept
            else:
                todo.append(i)
        if todo:
            put = jax.device_put([arrays[i] for i in todo], sharding)
            pool = {id(b) for b in self._buffers.values()}
            for i, arr in zip(todo, put):
                out[i] = arr
                if id(arrays[i]) in pool and _reads_in_place(arr, arrays[i]):
                    self._on_device[(id(arrays[i]), sharding)] = arr
        return out


def _reads_in_place(arr, host: np.ndarray) -> bool:
    """Whether every shard of the JAX array ``arr`` is ``host``'s own memory (not a copy)."""
    try:
        for shard in arr.addressable_shards:
            start = shard.index[0].start or 0
            if shard.data.unsafe_buffer_pointer() != host.ctypes.data + start * host.dtype.itemsize:
                return False
    except Exception:  # a platform without host pointers: never kept
        return False
    return True


_POOL = _StagingPool()
# An aligned input of a whole padded size is used in place (no copy) from this size on; below it,
# copying it into the kept buffer is cheaper than the ~0.3 ms that putting a new array costs.
_IN_PLACE_MIN = 262_144


def _staged(a: np.ndarray, start: int, stop: int, size: int, fill, slot: int, copies: list) -> np.ndarray:
    """``a[start:stop]`` padded with ``fill`` to ``size`` in aligned memory: a view of ``a`` when it
    already is and ``size`` is at least :data:`_IN_PLACE_MIN`, else the kept buffer of ``slot``,
    whose filling is appended to ``copies`` (for :func:`_copy_all`)."""
    piece = a[start:stop]
    if size >= _IN_PLACE_MIN and stop - start == size and piece.flags.c_contiguous and piece.ctypes.data % _ALIGN == 0:
        return piece
    buf = _POOL.buffer(size, a.dtype, slot)
    m = stop - start
    copies.append((buf[:m], piece))
    if m < size:
        copies.append((buf[m:], fill))
    return buf


# Copies of at least this many elements in all (16 MB of float64) are split across the cores, one
# contiguous part of every array per thread (numpy releases the GIL while it copies). At 1M
# contracts the staging of the inputs and the copy of the outputs take ~10 ms each on one core,
# bound by one core's memory bandwidth more than the machine's (six 8 MB copies: 12.6 ms on one
# thread, 8.7-9.2 ms on two, 2-core AMD EPYC); Black-Scholes at 1M, interleaved in one process:
# 1.04-1.07x faster. Smaller calls lose more to the hand-off than they gain (65,536: 0.89x).
_PARALLEL_MIN = 2_000_000
_COPIERS: dict[int, ThreadPoolExecutor] = {}


def _copiers() -> ThreadPoolExecutor | None:
    cores = os.cpu_count() or 1
    if cores < 2 or platform() != "cpu":
        return None
    return _threads(_COPIERS, cores, "optrader-copy")


def _copy_all(copies: list) -> None:
    """Do every ``(destination, source)`` copy of ``copies`` (a source may be a scalar fill), on all
    cores when they are large (:data:`_PARALLEL_MIN`)."""
    for d, s in copies:
        if np.ndim(s) and len(s) != len(d):  # a part-wise copy would not notice
            raise ValueError(f"copy of {len(s)} values into {len(d)}")
    pool = _copiers() if sum(len(d) for d, _ in copies) >= _PARALLEL_MIN else None
    if pool is None:
        for d, s in copies:
            d[...] = s
        return
    parts = pool._max_workers

    def part(j: int) -> None:
        for d, s in copies:
            lo, hi = len(d) * j // parts, len(d) * (j + 1) // parts
            d[lo:hi] = s if np.ndim(s) == 0 else s[lo:hi]

    for done in [pool.submit(part, j) for j in range(parts)]:
        done.result()  # re-raises a copy's error here


class _ResultPool:
    """Recycled memory for large results (2 MiB and more).

    A fresh multi-megabyte array costs its pages' first touch: the kernel zeroes each page as it
    faults it in. At 1M contracts, copying six outputs into fresh arrays took 6.0 ms against 2.7 ms
    into memory touched before, a sixth of the Black-Scholes call. A result is therefore an array
    over a block of this pool, and the block comes back to the pool when the array and every view
    of it are gone: the array's base is a memoryview, so numpy makes each view of it keep the array
    itself alive, and a finalizer on the array returns the block. Results never share memory with
    a live result. Free blocks are kept up to ``keep`` bytes and released beyond that. A block
    starts on a 2 MiB boundary and spans whole 2 MiB pages, so the transparent huge pages numpy
    asks for cover it (a first touch then faults a page per 2 MiB rather than per 4 KiB)."""

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self.lock = threading.RLock()  # a finalizer may run inside a critical section of its thread
        self.free: dict[int, list[memoryview]] = {}
        self.free_bytes = 0

    def array(self, n: int, dtype) -> np.ndarray:
        dtype = np.dtype(dtype)
        nbytes = n * dtype.itemsize
        if nbytes < _HUGE_PAGE:
            return np.empty(n, dtype=dtype)
        size = -(-nbytes // _HUGE_PAGE) * _HUGE_PAGE
        block = None
        with self.lock:
            blocks = self.free.get(size)
            if blocks:
                block = blocks.pop()
                self.free_bytes -= size
        if block is None:
            block = memoryview(_aligned_empty(size, np.uint8, _HUGE_PAGE))
        out = np.frombuffer(block, dtype=dtype, count=n)
        weakref.finalize(out, self._release, block, size).atexit = False  # nothing to return at exit
        return out

    def _release(self, block: memoryview, size: int) -> None:
        with self.lock:
            if self.free_bytes + size <= self.keep:
                self.free.setdefault(size, []).append(block)
                self.free_bytes += size


_HUGE_PAGE = 1 << 21
_RESULTS = _ResultPool(keep=128 << 20)


def _result_array(n: int, dtype) -> np.ndarray:
    """An uninitialised, writable result array of its own (from :data:`_RESULTS` from 2 MiB on)."""
    return _RESULTS.array(n, dtype)


def _layout(array) -> list[tuple[int, int]]:
    """(number of the shard in ``array.addressable_data``, index of its first element) for each
    shard of a sharded output, in element order. The same for every output and every call of a
    compiled kernel, so it is read once: ``addressable_shards`` builds its index map anew on each
    fresh array, about 50 microseconds per output here."""
    return sorted(((i, shard.index[0].start or 0) for i, shard in enumerate(array.addressable_shards)),
                  key=lambda item: item[1])


def _copy_out(out, results: list[np.ndarray], start: int, m: int, layout, copies: list) -> None:
    """Append to ``copies`` the copy of the first ``m`` padded outputs into
    ``results[i][start:start + m]``. On the CPU each device's shard is read in place (``np.asarray``
    of a single-device CPU array is a view), in the order ``layout`` (:func:`_layout`) gives:
    JAX's own assembly of a sharded array costs a fresh array and twice the page faults."""
    for res, o in zip(results, out):
        if layout is None or len(layout) == 1:
            copies.append((res[start:start + m], np.asarray(o)[:m]))
            continue
        for number, first in layout:
            if first >= m:
                break
            view = np.asarray(o.addressable_data(number))
            take = min(len(view), m - first)
            copies.append((res[start + first:start + first + take], view[:take]))


def run(kernel, arrays: list[np.ndarray], pad_values: list, n_out: int) -> list[np.ndarray]:
    """Run an elementwise ``kernel`` (1-D arrays in, tuple of 1-D arrays out) over equal-length
    host arrays, padded to a fixed size with benign ``pad_values``; returns fresh host arrays."""
    n = len(arrays[0])
    in_dtypes = tuple(a.dtype.str for a in arrays)
    results: list[np.ndarray] | None = None
    with _POOL.lock:
        for start, stop, size in pieces(kernel, n):
            compiled = _compiled(kernel, size, in_dtypes, n_out)
            copies: list = []
            padded = [_staged(a, start, stop, size, fill, slot, copies)
                      for slot, (a, fill) in enumerate(zip(arrays, pad_values))]
            _copy_all(copies)
            if compiled.sharding is not None:
                padded = _POOL.device_arrays(padded, compiled.sharding)
            out = compiled(padded)
            if results is None:
                results = [_result_array(n, o.dtype) for o in out]
            copies = []
            _copy_out(out, results, start, stop - start, compiled.layout, copies)
            _copy_all(copies)
    return results


def as_arrays(*values, is_call) -> tuple[list[np.ndarray], np.ndarray]:
    """Broadcast scalars and arrays to one length as contiguous float64 (and a bool call flag)."""
    arrs = [np.asarray(a, dtype=np.float64).reshape(-1) for a in values]
    flags = np.asarray(is_call, dtype=bool).reshape(-1)
    n = max(a.size for a in [*arrs, flags])
    for a in [*arrs, flags]:
        if a.size not in (1, n):
            raise ValueError(f"input of {a.size} values does not broadcast to {n} contracts")
    def whole(a):
        return a if a.size == n and a.flags.c_contiguous else np.ascontiguousarray(np.broadcast_to(a, (n,)))
    return [whole(a) for a in arrs], whole(flags)
