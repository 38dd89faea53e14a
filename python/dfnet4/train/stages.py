"""The stages of a run, in optimizer steps: a transplant's two distillation stages, then the run's own training.

A run without --init, or one whose source has the run's backbone (fine-tuning), has one stage,
"train". A transplant (`--init` from a source of another backbone) first distils the new temporal
parts ("stage1": each part against its counterpart in the source), then the whole model
("stage2": against the source's enhanced output, mixed with the clean target), then trains as
usual for train.steps / train.epochs (which may be 0 then). Each stage has its own AdamW (the
trainable parameters differ) with the run's schedule shape (warm-up, cosine decay to min_lr) at
its own peak rate; the distillation stages use no weight decay (it would pull the transplanted
weights away from the source they are taught to match).
"""

from __future__ import annotations

from dataclasses import dataclass

STAGE1, STAGE2, TRAIN = "stage1", "stage2", "train"
LABELS = {STAGE1: "stage 1 (parts)", STAGE2: "stage 2 (model)", TRAIN: "train"}


@dataclass(frozen=True)
class Stage:
    name: str
    start: int  # the run's step count when the stage begins
    steps: int
    lr: float  # peak learning rate
    weight_decay: float

    @property
    def end(self) -> int:
        return self.start + self.steps

    @property
    def label(self) -> str:
        return LABELS[self.name]


def plan(cfg, distill: bool, train_steps: int) -> list[Stage]:
    """The non-empty stages of run config `cfg`; `distill`: the run transplants (needs stages 1 and 2)."""
    i, t = cfg.init, cfg.train
    wanted = [(STAGE1, i.stage1_steps, i.stage1_lr, 0.0), (STAGE2, i.stage2_steps, i.stage2_lr, 0.0)] if distill else []
    wanted.append((TRAIN, train_steps, t.lr, t.weight_decay))
    out, start = [], 0
    for name, steps, lr, weight_decay in wanted:
        if steps > 0:
            out.append(Stage(name, start, steps, lr, weight_decay))
            start += steps
    if not out:
        raise ValueError("train.steps: every stage of this run has 0 steps (init.stage1_steps, "
                         "init.stage2_steps, train.steps/train.epochs): nothing to train")
    return out


def stage_at(stages: list[Stage], step: int) -> Stage:
    """The stage that trains the step after `step` completed steps (the last stage once all are done)."""
    return next((s for s in stages if step < s.end), stages[-1])
