"""Where the networks run on a CPU: PyTorch itself (the default), or OpenVINO for a CPU user who wants the answer
sooner.

``compiled(net, size, runtime)`` returns the network as it runs on that runtime, a module that takes and gives
torch tensors, so the rest of the pipeline does not change: on ``"torch"``, or on any other device than the CPU, the
network itself (the same code path on a GPU); on ``"openvino"``, the network converted by OpenVINO (``pip install
'spinemorph[openvino]'``) for inputs of ``size``² and any batch, compiled for as many threads as torch uses. A
conversion takes 1-3 s; its result is kept in the user's cache folder, keyed by the weights, so the next load of the
same weights reads it in a fraction of that.

Measured with ``bench/runtime.py`` on 60 calibration simulations (4500, 4600, 4700), one thread of this project's
2-core CPU: per film, stage 1 0.102 to 0.078 s, stage 2 0.085 to 0.069 s, the landmarks 0.113 to 0.084 s; the same
grade and flags on all 477 vertebrae, heights within 0.063 mm of torch's at the 99th percentile (docs/SPEED.md).
Only a deterministic network can be compiled: one that samples (MC dropout for active learning) stays in torch.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
import warnings
import weakref
from pathlib import Path

import numpy as np
import torch
from torch import nn

__all__ = ["RUNTIMES", "runtime_on", "compiled", "compiled_model", "CompiledNetwork", "cache_folder"]

log = logging.getLogger(__name__)

#: The runtimes a CPU network can run on: PyTorch, or OpenVINO.
RUNTIMES = ("torch", "openvino")


def cache_folder() -> Path:
    """Return where converted networks are kept: $SPINEMORPH_CACHE, else $XDG_CACHE_HOME/spinemorph, else
    ~/.cache/spinemorph; a subfolder per runtime version."""
    base = os.environ.get("SPINEMORPH_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / \
        "spinemorph"
    return Path(base)


def _fingerprint(net: nn.Module, size: int) -> str:
    """Return a key of a network's class, weights and input size (20 hex digits)."""
    digest = hashlib.sha256(f"{type(net).__module__}.{type(net).__qualname__}:{size}".encode())
    for name, tensor in net.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:20]


class CompiledNetwork(nn.Module):
    """A network compiled by OpenVINO for the CPU, called like the torch module it came from: (B, 1, S, S) float
    tensor in, its output tensor out (any batch, the side ``S`` it was compiled for). Safe to call from several
    threads at once (one inference request per thread)."""

    def __init__(self, model, threads: int) -> None:
        super().__init__()
        import openvino as ov

        self._compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": threads,
                                                                "INFERENCE_PRECISION_HINT": "f32"})
        self._local = threading.local()
        self.key: tuple[str, int, int] | None = None  # (converted file, side, threads), set by ``compiled``

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self._compiled.create_infer_request()
        request.infer([np.ascontiguousarray(x.detach().cpu().numpy(), np.float32)])
        return torch.from_numpy(request.get_output_tensor(0).data.copy())


def runtime_on(runtime: str, device: str | torch.device = "cpu") -> str:
    """Return the runtime the networks of ``runtime`` (``RUNTIMES``) really run on with ``device``: torch off the
    CPU, whatever was asked."""
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}, not {runtime!r}.")
    return runtime if torch.device(device).type == "cpu" else "torch"


#: What this process compiled: by torch network (a lookup per call, no hashing) and by converted file (networks of
#: the same weights loaded twice, e.g. by two served models sharing a bundle's companions, share one). Neither
#: keeps a network alive that nothing else holds.
_BY_NETWORK: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_BY_FILE: weakref.WeakValueDictionary = weakref.WeakValueDictionary()
_LOCK = threading.Lock()


def compiled(net: nn.Module, size: int, runtime: str = "torch", device: str | torch.device = "cpu") -> nn.Module:
    """Return ``net`` (eval mode) as it runs on ``runtime`` (``RUNTIMES``) for inputs (B, 1, ``size``, ``size``):
    the network itself for "torch" or a device other than the CPU, else a ``CompiledNetwork``, made once per
    network and weights in this process."""
    if runtime_on(runtime, device) == "torch":
        return net
    try:
        import openvino as ov
    except ImportError:
        raise RuntimeError("runtime=openvino needs the openvino package: pip install 'spinemorph[openvino]' "
                           "(`make setup` installs it), or use runtime=torch.") from None
    threads = max(torch.get_num_threads(), 1)
    with _LOCK:
        done = _BY_NETWORK.get(net)
        if done is not None and done.key[1:] == (size, threads):
            return done
        net = net.eval()
        version = re.sub(r"[^\w.-]+", "_", ov.__version__)  # "2026.4.1-22982-...-releases/2026/4"
        path = cache_folder() / f"openvino-{version}" / f"{_fingerprint(net, size)}.xml"
        done = _BY_FILE.get((str(path), size, threads))
        if done is None:
            done = CompiledNetwork(_converted(net, size, path), threads)
            done.key = (str(path), size, threads)
            _BY_FILE[done.key] = done
            log.info("Compiled a network for OpenVINO (%s)", path.name)
        _BY_NETWORK[net] = done
        return done


def _converted(net: nn.Module, size: int, path: Path):
    """Return ``net`` converted by OpenVINO: read from ``path`` when an earlier run kept it there, else converted
    and kept there."""
    import openvino as ov

    if path.is_file():
        return ov.Core().read_model(path)
    with torch.no_grad(), warnings.catch_warnings():  # the side is fixed: a traced padding branch is right
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        model = ov.convert_model(net, example_input=torch.zeros(2, 1, size, size), input=[(-1, 1, size, size)])
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.stem}.{os.getpid()}.{threading.get_ident()}.xml")
        ov.save_model(model, tmp, compress_to_fp16=False)
        tmp.with_suffix(".bin").replace(path.with_suffix(".bin"))
        tmp.replace(path)
    except OSError as err:  # a read-only home: convert again next time
        log.warning("Could not keep the converted network in %s (%s).", path.parent, err)
    return model


def compiled_model(model: tuple[nn.Module, object] | None, runtime: str = "torch",
                   device: str | torch.device = "cpu") -> tuple[nn.Module, object] | None:
    """Return a (network, spec) pair with the network as ``compiled`` gives it for its spec's input side, or None
    for None."""
    if model is None:
        return None
    net, spec = model
    return compiled(net, spec.preprocessing.size, runtime, device), spec
