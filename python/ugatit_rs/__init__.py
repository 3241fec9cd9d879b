"""ugatit-rs: U-GAT-IT image-to-image translation with its compute in Rust on libtorch.

The networks are PyTorch-compatible: they take and return ``torch.Tensor`` on their device with no
copy, their ``state_dict()`` keys are the official ``UGATIT-pytorch`` ones, and autograd runs
through them, so they mix freely with ordinary PyTorch code.
"""

# torch must be imported before the native extension: the extension links against torch's own
# libraries and hands tensors to torch._C, which must be initialised first.
import torch

_REQUIRED_TORCH = "2.11."
if not torch.__version__.startswith(_REQUIRED_TORCH):
    raise ImportError(
        f"ugatit_rs was built against torch {_REQUIRED_TORCH}x (libtorch ABI), but torch "
        f"{torch.__version__} is installed; install torch==2.11.0"
    )

from . import convert, data, distributed, export, metrics, translate, viz  # noqa: E402, F401  (ug.metrics.kid, ...)
from ._compute import compute  # noqa: E402
from ._native import StateDictError, TrainConfig, __version__  # noqa: E402
from .models import Discriminator, Generator  # noqa: E402
from .trainer import NonFiniteLossError, RunInUseError, Trainer  # noqa: E402
from .translate import Translator  # noqa: E402

__all__ = [
    "Generator",
    "Discriminator",
    "TrainConfig",
    "Trainer",
    "Translator",
    "StateDictError",
    "compute",
    "NonFiniteLossError",
    "RunInUseError",
    "__version__",
]
