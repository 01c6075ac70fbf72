"""The float side of the exactness boundary (docs/DESIGN.md, "Float entropy parameters -> integers").

Encoder and decoder must derive bit-identical mixture parameters from ẑ and the decoded anchors, or the integer
tables differ and the streams do not decode. Within one build on one kind of machine that holds if the path

    ẑ → h_s → T1 → PEN1                  (anchors)
    [T1, ctx(ŷ anchors)] → PEN2          (non-anchors)

runs in float64 on the CPU, on one intra-op thread, with deterministic algorithms and without oneDNN: results then
depend neither on the caller's thread count, nor on the batch size, nor on the device used for g_a/g_s.
Exactness across machines or platforms is not promised (that needs integer networks).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from .context import split
from .pen import MixtureTensors


@contextmanager
def exact_mode() -> Iterator[None]:
    """1 intra-op thread, deterministic algorithms, oneDNN off; the previous settings are restored afterwards.

    These are process-wide torch settings: do not run other torch work concurrently in other Python threads.
    """
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    mkldnn = torch.backends.mkldnn.enabled
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    torch.backends.mkldnn.enabled = False
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = mkldnn
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
        torch.set_num_threads(threads)


class EntropyParamNet(nn.Module):
    """Float64 CPU copy of h_s, ctx, pen_anchor and pen_nonanchor; every method runs under ``exact_mode``.

    Inputs may be on any device and of any float dtype; they are moved to the CPU as float64 (ẑ and ŷ hold integers,
    which float32 and float64 represent alike). Outputs are float64 CPU tensors.
    """

    def __init__(self, h_s: nn.Module, ctx: nn.Module, pen_anchor: nn.Module, pen_nonanchor: nn.Module) -> None:
        super().__init__()
        for name, module in (("h_s", h_s), ("ctx", ctx), ("pen_anchor", pen_anchor), ("pen_nonanchor", pen_nonanchor)):
            self.add_module(name, copy.deepcopy(module).to("cpu", torch.float64).eval().requires_grad_(False))

    @staticmethod
    def _cpu64(t: Tensor) -> Tensor:
        return t.detach().to("cpu", torch.float64).contiguous()

    @torch.no_grad()
    def hyper(self, z_hat: Tensor) -> Tensor:
        """T1 = h_s(ẑ): (B, 2M, 4·hz, 4·wz)."""
        with exact_mode():
            return self.h_s(self._cpu64(z_hat))

    @torch.no_grad()
    def anchor(self, t1: Tensor) -> MixtureTensors:
        """PEN1(T1): GLLMM at all positions (only anchors are used)."""
        with exact_mode():
            return self.pen_anchor(self._cpu64(t1))

    @torch.no_grad()
    def nonanchor(self, t1: Tensor, y_anchor_hat: Tensor) -> MixtureTensors:
        """PEN2([T1, ctx(ŷ anchors)]): GMM at all positions (only non-anchors are used).

        Non-anchor values of y_anchor_hat are zeroed here, so passing the full ŷ gives the same result.
        """
        with exact_mode():
            anchors, _ = split(self._cpu64(y_anchor_hat))
            return self.pen_nonanchor(self._cpu64(t1), self.ctx(anchors))
