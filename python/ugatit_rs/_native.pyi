"""Type stubs for the Rust extension module (the public classes in ugatit_rs wrap these)."""

import os
from collections.abc import Callable, Sequence

import torch

__version__: str
NETWORK_NAMES: list[str]
CYCLEGAN_NETWORK_NAMES: list[str]
MODELS: list[str]
IMAGE_EXTENSIONS: list[str]
DEMO_SIZES: tuple[int, int]
DEMO_MAX_IMAGES: int
CHECKPOINT_FORMAT: str

class StateDictError(ValueError): ...

Triple = tuple[torch.Tensor, torch.Tensor, torch.Tensor]

class Network:
    """The module surface both native networks share."""

    def forward(self, x: torch.Tensor) -> Triple: ...
    def forward_for_export(self, x: torch.Tensor) -> Triple: ...
    def named_tensors(self) -> list[tuple[str, torch.Tensor, bool]]: ...
    def load_tensors(self, tensors: dict[str, torch.Tensor], strict: bool) -> tuple[list[str], list[str]]: ...
    def set_training(self, training: bool) -> None: ...
    @property
    def training(self) -> bool: ...
    def to_device(self, device: str) -> None: ...
    @property
    def device(self) -> str: ...
    def num_parameters(self) -> int: ...
    @property
    def config(self) -> dict[str, object]: ...

class Generator(Network):
    def __init__(
        self,
        ngf: int = 64,
        n_blocks: int = 4,
        img_size: int = 256,
        light: bool = False,
        input_nc: int = 3,
        output_nc: int = 3,
        device: str = "cpu",
        variant: str = "pytorch",
        init_weights: bool = True,
    ) -> None: ...

class Discriminator(Network):
    def __init__(
        self, ndf: int = 64, n_layers: int = 7, input_nc: int = 3, device: str = "cpu", variant: str = "pytorch"
    ) -> None: ...
    def min_input_size(self) -> int: ...

class CycleGenerator(Network):
    def __init__(
        self, ngf: int = 64, n_blocks: int = 9, input_nc: int = 3, output_nc: int = 3, device: str = "cpu"
    ) -> None: ...

class PatchDiscriminator(Network):
    def __init__(self, ndf: int = 64, n_layers: int = 3, input_nc: int = 3, device: str = "cpu") -> None: ...
    def min_input_size(self) -> int: ...

class ExportedGenerator:
    """A TorchScript export loaded with ``tch::CModule``."""

    def __init__(self, path: str | os.PathLike) -> None: ...
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]: ...

class TfCheckpoint:
    """A TensorFlow tensor-bundle checkpoint, read one tensor at a time."""

    def __init__(self, path: str | os.PathLike) -> None: ...
    @property
    def prefix(self) -> str: ...
    def entries(self) -> list[tuple[str, int, list[int]]]: ...
    def read(self, name: str, layout: str = "same") -> torch.Tensor: ...
    def shape_as(self, name: str, layout: str) -> list[int]: ...
    def convert(
        self, plan: Sequence[tuple[str, str, str]], out: str | os.PathLike, metadata: Sequence[tuple[str, str]]
    ) -> None: ...

def tf_checkpoint_prefix(path: str | os.PathLike) -> str: ...

class TrainConfig:
    dataset: str
    light: bool
    iteration: int
    batch_size: int
    print_freq: int
    save_freq: int
    keep_checkpoints: int
    decay_flag: bool
    lr: float
    weight_decay: float
    adv_weight: float
    cycle_weight: float
    identity_weight: float
    cam_weight: float
    ch: int
    n_res: int
    img_size: int
    result_dir: str
    device: str
    resume: bool
    seed: int
    num_workers: int
    fused_discriminator: bool
    eval_freq: int
    eval_images: int
    model: str
    pool_size: int
    lambda_identity: float
    variant: str
    init_from: str
    precision: str
    channels_last: bool
    cuda_graph: bool
    def __init__(
        self,
        dataset: str = "",
        light: bool = False,
        iteration: int = 1_000_000,
        batch_size: int = 1,
        print_freq: int = 1000,
        save_freq: int = 100_000,
        keep_checkpoints: int = 0,
        decay_flag: bool = True,
        lr: float = 1e-4,
        weight_decay: float = 1e-4,
        adv_weight: float = 1.0,
        cycle_weight: float = 10.0,
        identity_weight: float = 10.0,
        cam_weight: float = 1000.0,
        ch: int = 64,
        n_res: int = 4,
        img_size: int = 256,
        result_dir: str = "results",
        device: str = "cuda",
        resume: bool = False,
        seed: int = 0,
        num_workers: int = 2,
        fused_discriminator: bool = False,
        eval_freq: int = 0,
        eval_images: int = 100,
        model: str = "ugatit",
        pool_size: int = 50,
        lambda_identity: float = 0.5,
        variant: str = "pytorch",
        init_from: str = "",
        precision: str = "fp32",
        channels_last: bool = False,
        cuda_graph: bool = False,
    ) -> None: ...
    def validate(self) -> None: ...
    def to_dict(self) -> dict[str, object]: ...

class TrainerBase:
    """What both native trainers share."""

    def step(
        self,
        real_a: torch.Tensor,
        real_b: torch.Tensor,
        grad_hook: Callable[[list[torch.Tensor]], None] | None = None,
    ) -> list[tuple[str, float]]: ...
    def step_lazy(
        self,
        real_a: torch.Tensor,
        real_b: torch.Tensor,
        grad_hook: Callable[[list[torch.Tensor]], None] | None = None,
    ) -> tuple[list[tuple[str, torch.Tensor]], float]: ...
    def prepare_replay(self) -> float: ...
    def step_kernels(self, real_a: torch.Tensor, real_b: torch.Tensor) -> list[tuple[str, torch.Tensor]]: ...
    def save_checkpoint(self, path: str, metadata: Sequence[tuple[str, str]] = ...) -> None: ...
    def load_checkpoint(self, path: str) -> int: ...
    def set_keep_gradients(self, keep: bool) -> None: ...
    @property
    def config(self) -> TrainConfig: ...
    @property
    def step_count(self) -> int: ...
    @property
    def lr(self) -> float: ...
    @property
    def device(self) -> str: ...

class Trainer(TrainerBase):
    def __init__(self, config: TrainConfig) -> None: ...
    @property
    def gen_a2b(self) -> Generator: ...
    @property
    def gen_b2a(self) -> Generator: ...
    @property
    def dis_ga(self) -> Discriminator: ...
    @property
    def dis_gb(self) -> Discriminator: ...
    @property
    def dis_la(self) -> Discriminator: ...
    @property
    def dis_lb(self) -> Discriminator: ...

class CycleGanTrainer(TrainerBase):
    def __init__(self, config: TrainConfig) -> None: ...
    @property
    def pool_sizes(self) -> tuple[int, int]: ...
    @property
    def gen_a(self) -> CycleGenerator: ...
    @property
    def gen_b(self) -> CycleGenerator: ...
    @property
    def dis_a(self) -> PatchDiscriminator: ...
    @property
    def dis_b(self) -> PatchDiscriminator: ...

class DomainLoader:
    def __init__(
        self,
        folder: str,
        img_size: int,
        batch_size: int = 1,
        seed: int = 0,
        domain: int = 0,
        train: bool = True,
        strict: bool = False,
        num_workers: int = 2,
        resize: str = "bilinear",
    ) -> None: ...
    def next_batch(self) -> torch.Tensor: ...
    def __len__(self) -> int: ...
    def __iter__(self) -> DomainLoader: ...
    def __next__(self) -> torch.Tensor: ...
    def seek(self, k: int) -> None: ...
    @property
    def position(self) -> int: ...
    @property
    def num_images(self) -> int: ...
    @property
    def batches_per_epoch(self) -> int: ...
    def paths(self) -> list[str]: ...
    def skipped(self) -> list[tuple[str, str]]: ...

def load_image(path: str, img_size: int) -> torch.Tensor: ...
def read_checkpoint(path: str, prefix: str = "") -> list[tuple[str, torch.Tensor]]: ...
def read_checkpoint_metadata(path: str) -> list[tuple[str, str]]: ...
def is_torch_save(path: str) -> bool: ...
def zip_problem(path: str) -> tuple[str, str] | None: ...
def temporary_beside(path: str) -> str: ...
def remove_stale_temporaries(path: str) -> tuple[int, int]: ...
def write_checkpoint(
    path: str, tensors: Sequence[tuple[str, torch.Tensor]], metadata: Sequence[tuple[str, str]]
) -> None: ...
def list_images(folder: str) -> list[str]: ...
def inception_inputs_from_files(paths: Sequence[str], size: int = 299, protocol: str = "paper") -> torch.Tensor: ...
def inception_inputs_from_arrays(
    images: Sequence[torch.Tensor], size: int = 299, protocol: str = "paper"
) -> torch.Tensor: ...
def demo_image(domain: str, size: int = 96, seed: int = 0, index: int = 0) -> torch.Tensor: ...
def write_demo_dataset(root: str, n_train: int = 200, n_test: int = 20, size: int = 96, seed: int = 0) -> None: ...
def demo_scores(source: torch.Tensor, translated: torch.Tensor) -> tuple[float, float, float]: ...
def prepare_dataset(
    domains: Sequence[tuple[str, str]],
    output: str,
    size: int,
    fit: str,
    test_fraction: float,
    seed: int,
    min_size: int,
    workers: int,
    overwrite: bool = False,
    callback: Callable[[int, int], None] | None = None,
) -> dict[str, object]: ...
def set_compute(precision: str, channels_last: bool) -> tuple[str, bool]: ...
def check_device(name: str) -> str: ...
