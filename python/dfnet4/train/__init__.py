"""Training: run config, losses, the loop, checkpoints, metrics, plots, data parallelism."""

from dfnet4.train.config import DataConfig, RunConfig, TrainConfig
from dfnet4.train.losses import LossConfig

__all__ = ["DataConfig", "LossConfig", "RunConfig", "TrainConfig", "train"]


def train(config: RunConfig, resume: bool = False, progress: bool = True, **kwargs) -> dict:
    """Run training as configured; returns a summary (final step, per-step losses, last validation)."""
    from dfnet4.train.loop import Trainer

    return Trainer(config, resume=resume, progress=progress, **kwargs).run()
