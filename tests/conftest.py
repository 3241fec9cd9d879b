import os
import sys

import pytest
import torch

# tests/reference is imported as the package `reference`.
sys.path.insert(0, os.path.dirname(__file__))

import ugatit_rs as ug  # noqa: E402
from reference.networks import Discriminator as RefDiscriminator  # noqa: E402
from reference.networks import ResnetGenerator as RefGenerator  # noqa: E402


def randomize_norm_params(module: torch.nn.Module, seed: int) -> None:
    """Moves rho / ILN gamma / beta away from their constant initial values, so that parity
    tests exercise both the instance- and layer-norm paths and the affine terms."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            if leaf == "rho":
                p.copy_(torch.rand(p.shape, generator=gen))
            elif leaf in ("gamma", "beta") and p.dim() == 4:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5 + (1.0 if leaf == "gamma" else 0.0))


def generator_pair(light, img_size, n_blocks, ngf=8, seed=0, device="cpu"):
    """An oracle generator and a ugatit-rs generator holding the same weights."""
    torch.manual_seed(seed)
    ref = RefGenerator(3, 3, ngf=ngf, n_blocks=n_blocks, img_size=img_size, light=light)
    randomize_norm_params(ref, seed + 1)
    ref = ref.to(device)
    ours = ug.Generator(ngf=ngf, n_blocks=n_blocks, img_size=img_size, light=light, device=device)
    ours.load_state_dict(ref.state_dict())
    return ref, ours


def discriminator_pair(n_layers, ndf=8, seed=0, device="cpu"):
    torch.manual_seed(seed)
    ref = RefDiscriminator(3, ndf=ndf, n_layers=n_layers).to(device)
    ours = ug.Discriminator(ndf=ndf, n_layers=n_layers, device=device)
    ours.load_state_dict(ref.state_dict())
    return ref, ours


def max_abs(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.detach() - b.detach()).abs().max().item()


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| / max |b| (0 when both are zero)."""
    scale = b.detach().abs().max().item()
    diff = max_abs(a, b)
    return diff / scale if scale > 0 else diff


@pytest.fixture(params=["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
def device(request):
    if request.param == "cuda":
        # Parity is about float32 math: TF32 convolutions/matmuls (cuDNN's default) round the
        # oracle and us differently, and their error compounds through deep nets past 1e-4.
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    return request.param
