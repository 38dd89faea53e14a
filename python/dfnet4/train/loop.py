"""The training loop: compiled AdamW step, validation, metrics, plots, checkpoints, signals, resume;
the stages of runs started from trained weights (`--init`: dfnet4.train.init, stages, distill)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import signal
import threading
import time
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
from mlx.utils import tree_flatten
from tqdm import tqdm

from dfnet4.atomic_io import DiskFullError, free_bytes, remove_stale_temps, write_text_atomic
from dfnet4.data.builtin import ensure_builtin
from dfnet4.data.cache import AudioCache
from dfnet4.data.loader import BatchLoader, validation_set
from dfnet4.data.mixer import Mixer
from dfnet4.memory import configure_buffer_cache, parse_cache_limit
from dfnet4.model.config import resumed_model
from dfnet4.train import checkpoint as ckpt
from dfnet4.train import distributed
from dfnet4.train import stages as st
from dfnet4.train.config import RunConfig
from dfnet4.train.distill import Distiller, set_trainable, stage_trainable
from dfnet4.train.init import freeze_batchnorm, load_source, shared_fields, transplant
from dfnet4.train.losses import total_loss
from dfnet4.train.metrics import MetricsLog, score_clips, si_sdr
from dfnet4.train.runlock import RunLock
from dfnet4.train.runtime import build_model, runtime_header


class TrainingInterrupted(Exception):
    """Raised when a run stops on SIGINT/SIGTERM, after the checkpoint of its last step is written.
    `checkpoint` is the checkpoint of the step it stopped at, None if it stopped before the first
    step of a new run (then there is nothing to resume)."""

    def __init__(self, signum: int, checkpoint: Path | None, out: Path, step: int):
        if checkpoint is None:
            text = (f"interrupted by signal {signum} before the first step; no checkpoint was written, "
                    "so there is nothing to resume: start the run again")
        else:
            text = (f"interrupted by signal {signum} at step {step}; checkpoint {checkpoint}; continue with "
                    f"--resume --out {out}")
        super().__init__(text)
        self.signum, self.checkpoint = signum, checkpoint


def effective_warmup(warmup_steps: int, total_steps: int) -> int:
    """The warm-up actually used: a warm-up longer than half the run (e.g. the default 100 steps in a
    30-step run) would leave no time at the peak rate, so it is cut to a tenth of the run."""
    if warmup_steps > total_steps // 2:
        return total_steps // 10
    return warmup_steps


def lr_schedule(cfg, total_steps: int):
    """Linear warm-up from lr/warmup to lr, then cosine decay to min_lr at the last step."""
    warmup = effective_warmup(cfg.warmup_steps, total_steps)
    decay = optim.cosine_decay(cfg.lr, max(1, total_steps - warmup), end=min(cfg.min_lr, cfg.lr))
    if warmup == 0:
        return decay
    return optim.join_schedules([optim.linear_schedule(cfg.lr / warmup, cfg.lr, warmup), decay], [warmup])


def step_seed(seed: int, step: int) -> int:
    return (int(seed) * 1_000_003 + int(step)) % (1 << 63)


def open_data(cfg: RunConfig, dist, log) -> AudioCache:
    d = cfg.data
    if d.cache_dir:
        return AudioCache(d.cache_dir)
    root = d.builtin_dir or None
    if dist.is_main:
        path = ensure_builtin(root, d.builtin_speech, d.builtin_noise, progress=True)
        dist.barrier()
    else:
        dist.barrier()  # rank 0 generates; the others use its set
        path = ensure_builtin(root, d.builtin_speech, d.builtin_noise, progress=False)
    log(f"data: built-in synthetic set {path}")
    return AudioCache(path)


class Trainer:
    def __init__(self, cfg: RunConfig, resume: bool = False, progress: bool = True, log=print,
                 interrupt_at_step: int | None = None):
        """`interrupt_at_step` (for tests) requests a stop after that step exactly as a signal would."""
        cfg.validate()
        self.cfg, self.resume, self.progress = cfg, resume, progress
        self.dist = distributed.init(cfg.train.dist_timeout)
        self.log = log if self.dist.is_main else (lambda *a, **k: None)
        self.interrupt_at_step = interrupt_at_step
        self.stop_signal: int | None = None
        self.out = Path(cfg.train.out)
        c = cfg.train.compile
        self.compiled = (mx.default_device().type == mx.gpu) if c == "auto" else bool(c)
        self.ckpt_dir = self.out / "checkpoints"
        self.checkpoint: Path | None = None  # the checkpoint of the current step, once written or loaded
        self.space_warned = False

    # ---------------------------------------------------------------- setup
    def _setup(self):
        cfg, t = self.cfg, self.cfg.train
        resume_from = None
        if self.resume:
            found = ckpt.find_latest_valid(self.ckpt_dir, self.log) if self.ckpt_dir.is_dir() else None
            if found is None:
                self.log(f"dfnet4: --resume: no valid checkpoint in {self.ckpt_dir}, starting from scratch")
            else:
                resume_from = found
                # sizes from the checkpoint (an old one's flat keys moved into their tables); the fused
                # switches (same weights either way) may change
                model = resumed_model(found[1]["model_config"], cfg.model)
                if model != cfg.model:
                    self.log("dfnet4: --resume: using the model config stored in the checkpoint")
                cfg.model = model
        elif self.ckpt_dir.is_dir() and ckpt.candidates(self.ckpt_dir):
            raise ValueError(f"--out: {str(self.out)!r} already holds checkpoints; pass --resume to continue "
                             "that run or choose another --out")

        self.buffer_cache_bytes = configure_buffer_cache(parse_cache_limit(t.buffer_cache_gib))
        self.teacher = None  # the source model of a transplant, while a distillation stage needs it
        self.init_state = self._init_state(resume_from)
        mx.random.seed(t.seed)
        self.model = build_model(cfg.model)
        if resume_from is None and cfg.init.source:
            self._start_from_source()
        # runs from trained weights keep their BatchNorms frozen (train.init.freeze_batchnorm)
        self.frozen_batchnorm = bool(cfg.init.source)
        self._train_mode()
        self.cache = open_data(cfg, self.dist, self.log)
        self.mixer = Mixer(self.cache, cfg.data.mix, t.seed)
        self.loader = BatchLoader(self.mixer, t.batch_size, cfg.data.samples_per_epoch, self.dist.rank,
                                  self.dist.size, cfg.data.prefetch)
        bpe = self.loader.batches_per_epoch
        self.stages = st.plan(cfg, self.init_state["distill"], t.steps if t.steps > 0 else t.epochs * bpe)
        self.total_steps = self.stages[-1].end
        for stage in self.stages:
            warmup = effective_warmup(t.warmup_steps, stage.steps)
            if warmup != t.warmup_steps:
                self.log(f"dfnet4: warm-up of {t.warmup_steps} steps is over half of the {stage.steps}-step "
                         f"{stage.label}; using {warmup} steps")
        self.step, self.epoch, self.batch = 0, 0, 0
        self.last_valid: dict | None = None
        self.stage: st.Stage | None = None
        opt_state = self._restore(*resume_from) if resume_from is not None else None
        self._enter_stage(st.stage_at(self.stages, self.step), opt_state)
        self._check_space_for_checkpoints()
        if self.dist.broadcast_int(self.step) != self.step:
            raise RuntimeError("ranks resumed from different checkpoints; RUN_DIR must be shared by all ranks")
        self.valid, self.valid_pairs = [], None
        if cfg.data.valid_dir:
            from dfnet4.evaluate.validation import PairedValidation

            self.valid_pairs = PairedValidation(cfg.data.valid_dir)
            self.log(f"data: validation on the {len(self.valid_pairs.items)} pairs of {cfg.data.valid_dir}")
        else:
            self.valid = validation_set(self.mixer, cfg.data.valid_samples, t.batch_size)
        self.metrics = MetricsLog(self.out / "metrics.jsonl", enabled=self.dist.is_main)
        if self.dist.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            for where in (self.out, self.ckpt_dir):  # temp files and directories left by killed runs
                remove_stale_temps(where, log=lambda m: self.log(f"dfnet4: {m}"))
            write_text_atomic(self.out / "config.toml", cfg.to_toml())
            if resume_from is not None:
                self.metrics.truncate_after(self.step)  # records after the checkpoint are recomputed
            elif self.metrics.path.is_file():
                self.metrics.path.unlink()  # a fresh run (an earlier attempt never checkpointed)

    def _restore(self, path: Path, state: dict) -> dict | None:
        """Weights and position of the checkpoint; -> its optimizer state if it belongs to the stage
        that continues (at a stage boundary the next stage starts with a fresh optimizer)."""
        params, opt_state = ckpt.load_arrays(path)
        try:  # strict: every parameter present, nothing extra, same shapes
            self.model.load_weights(tree_flatten(params), strict=True)
        except ValueError as exc:
            raise ckpt.CheckpointError(f"{path}: the weights do not fit the model: {exc}") from exc
        self.step = state["step"]
        self.epoch, self.batch = state["data_position"]["epoch"], state["data_position"]["batch"]
        self.last_valid = state.get("last_valid")
        self.checkpoint = path
        self.log(f"dfnet4: resumed from {path} (step {self.step}, epoch {self.epoch}, batch {self.batch})")
        saved_stage = state.get("stage", st.TRAIN)  # checkpoints from before stages: one "train" stage
        return opt_state if saved_stage == st.stage_at(self.stages, self.step).name else None

    # ---------------------------------------------------------------- --init and stages
    def _init_state(self, resume_from) -> dict:
        """{"source", "distill"}: where the weights came from and whether the run transplants. A new
        run loads the source here (self.source, used by _start_from_source); a resumed run reads
        this from its checkpoint."""
        source = self.cfg.init.source
        if resume_from is not None:
            state = resume_from[1].get("init", {"source": "", "distill": False})
            if state["source"] != source:
                raise ValueError(f"--init: this run started from {state['source'] or 'its own initialisation'!r}; "
                                 f"--resume cannot change it to {source or 'none'!r}")
            return state
        if not source:
            return {"source": "", "distill": False}
        self.source = load_source(source)  # (model, description)
        source_cfg = self.source[0].config
        # model fields the run does not set come from the source (a shape that differs is an error)
        self.cfg.model = {**shared_fields(source_cfg), **self.cfg.model}
        return {"source": source, "distill": source_cfg.backbone != self.cfg.model.get("backbone")}

    def _start_from_source(self) -> None:
        (model, name), self.source = self.source, None
        report = transplant(self.model, model, name)
        for line in report.lines():
            self.log(f"dfnet4: {line}")
        if self.dist.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            write_text_atomic(self.out / "init.json", json.dumps(report.to_dict(), indent=1))
        if report.needs_distillation:
            self.teacher = model

    def _train_mode(self) -> None:
        self.model.train()
        if self.frozen_batchnorm:
            freeze_batchnorm(self.model)

    def _enter_stage(self, stage: st.Stage, opt_state: dict | None = None) -> None:
        """Trainable parameters, loss and a fresh AdamW (or the checkpoint's) for `stage`."""
        self.stage = stage
        if stage.name == st.TRAIN:
            set_trainable(self.model, lambda name: True)
            self._stage_loss = self._loss_fn
            self.teacher = None  # the last stage: no more distillation
        else:
            if self.teacher is None:  # a resumed transplant: the source again, as the teacher
                self.teacher, _ = load_source(self.init_state["source"])
            distiller = Distiller(self.model, self.teacher, self.cfg.init, self.cfg.loss)
            number = 1 if stage.name == st.STAGE1 else 2
            set_trainable(self.model, stage_trainable(number, self.cfg.init))
            self._stage_loss = distiller.loss_fn(number)
        self._train_mode()
        schedule = lr_schedule(dataclasses.replace(self.cfg.train, lr=stage.lr), stage.steps)
        self.optimizer = optim.AdamW(learning_rate=schedule, weight_decay=stage.weight_decay)
        if opt_state is not None:
            self.optimizer.state = opt_state
        self.optimizer.init(self.model.trainable_parameters())  # marks it initialised; keeps loaded values

    def _check_space_for_checkpoints(self) -> None:
        """Before the first step: stop now if not even one checkpoint fits on the disk, and warn if
        fewer than the kept number plus one do (checkpoints are written before old ones are pruned)."""
        if not self.dist.is_main:
            return
        needed = ckpt.estimate_bytes(self.model.parameters(), self.optimizer.state)
        available = free_bytes(self.ckpt_dir)
        if available is None:
            return
        if available < needed:
            raise DiskFullError(self.ckpt_dir, needed, available, "for the checkpoints in")
        if available < (self.cfg.train.keep_checkpoints + 1) * needed:
            self._warn_space(f"low disk space: {available / 2**20:.1f} MiB free for {self.ckpt_dir}, each "
                             f"checkpoint needs {needed / 2**20:.1f} MiB and {self.cfg.train.keep_checkpoints} are kept")

    def _warn_space(self, message: str) -> None:
        if not self.space_warned:  # once per run
            self.space_warned = True
            tqdm.write(f"dfnet4: warning: {message}")

    # ---------------------------------------------------------------- compute
    def _forward(self, model, clean, noisy):
        """Spectra of both signals at the model's STFT size, the model, and the loss."""
        from dfnet4 import dsp

        n, hop = model.config.fft_size, model.config.hop_size
        clean_spec, noisy_spec = dsp.stft(clean, n, hop), dsp.stft(noisy, n, hop)
        enh_spec, aux = model(noisy_spec)
        enh_audio = dsp.istft(enh_spec, clean.shape[-1], n, hop)
        loss, parts = total_loss(enh_spec, clean_spec, noisy_spec, enh_audio, clean, aux.get("lsnr"), self.cfg.loss)
        return loss, parts, enh_audio

    def _loss_fn(self, model, clean, noisy):
        loss, parts, _ = self._forward(model, clean, noisy)
        return loss, parts

    def _make_step(self):
        """The optimizer step of the current stage (its loss, trainable parameters and optimizer)."""
        value_and_grad = nn.value_and_grad(self.model, self._stage_loss)
        clip, dist = self.cfg.train.clip_grad, self.dist

        def step(clean, noisy):
            (loss, parts), grads = value_and_grad(self.model, clean, noisy)
            grads = dist.average_gradients(grads)
            grads, norm = optim.clip_grad_norm(grads, clip)
            self.optimizer.update(self.model, grads)
            return loss, parts, norm

        if not self.compiled:
            return step
        state = [self.model.state, self.optimizer.state, mx.random.state]
        return mx.compile(step, inputs=state, outputs=state)

    def validate(self) -> dict:
        """Loss and SI-SDR (enhanced and noisy input) on the fixed validation set; PESQ/STOI if available.
        With --valid-dir: the real pairs, every file scored with dfnet4-eval's metrics."""
        self.model.eval()
        try:
            if self.valid_pairs is not None:
                return self.valid_pairs.score(self._enhance_one)
            return self._validate_mixtures()
        finally:
            self._train_mode()

    def _enhance_one(self, clean_np: np.ndarray, noisy_np: np.ndarray) -> tuple[float, np.ndarray]:
        loss, _, enh = self._forward(self.model, mx.array(clean_np[None]), mx.array(noisy_np[None]))
        mx.eval(loss, enh)
        return loss.item(), np.array(enh[0])

    def _validate_mixtures(self) -> dict:
        losses, enhanced, cleans, noisys = [], [], [], []
        for clean_np, noisy_np in self.valid:
            clean, noisy = mx.array(clean_np), mx.array(noisy_np)
            loss, _, enh = self._forward(self.model, clean, noisy)
            mx.eval(loss, enh)
            losses.append(loss.item() * clean.shape[0])
            enhanced.append(np.array(enh))
            cleans.append(clean_np)
            noisys.append(noisy_np)
        enhanced, cleans, noisys = np.concatenate(enhanced), np.concatenate(cleans), np.concatenate(noisys)
        result = {"loss": float(np.sum(losses) / len(cleans)),
                  "si_sdr": float(np.mean(si_sdr(enhanced, cleans))),
                  "si_sdr_noisy": float(np.mean(si_sdr(noisys, cleans)))}
        result.update(score_clips(enhanced, cleans, self.mixer.sample_rate, self.cfg.train.metrics_clips))
        return result

    # ---------------------------------------------------------------- bookkeeping
    def save_checkpoint(self) -> Path | None:
        if not self.dist.is_main:  # rank 0 writes it
            self.checkpoint = self.ckpt_dir / ckpt.checkpoint_name(self.step)
            return None
        state = {
            "epoch": self.epoch,
            "data_position": {"epoch": self.epoch, "batch": self.batch},
            # MLX cannot set an arbitrary RNG key, so the global RNG is re-seeded from (seed, step)
            # before every step: the key is recorded, the stream is a function of the step.
            "rng": {"scheme": "reseed(seed, step) before each step", "seed": self.cfg.train.seed,
                    "key": np.array(mx.random.state[0]).tolist()},
            # the run's [model] table is what resume rebuilds from; the expanded config is for reference
            "model_config": self.cfg.model,
            "model_config_full": self.model.config.to_dict(),
            "run_config": self.cfg.to_dict(),
            "total_steps": self.total_steps,
            "world_size": self.dist.size,
            "last_valid": self.last_valid,
            # the stage whose optimizer state this is, and where the weights came from (--init)
            "stage": self.stage.name,
            "init": self.init_state,
        }
        self.checkpoint = ckpt.save(self.ckpt_dir, self.step, self.model.parameters(), self.optimizer.state, state,
                                    keep=self.cfg.train.keep_checkpoints, warn=self._warn_space)
        return self.checkpoint

    def _run_validation(self) -> None:
        if self.dist.is_main:
            t0 = time.time()
            self.last_valid = self.validate()
            self.metrics.write(kind="valid", step=self.step, epoch=self.epoch, stage=self.stage.name,
                               seconds=time.time() - t0, **self.last_valid)
            v = self.last_valid
            extra = "".join(f", {k.upper()} {v[k]:.3f}" for k in ("pesq", "stoi") if k in v)
            tqdm.write(f"valid @ step {self.step}: loss {v['loss']:.4f}, SI-SDR {v['si_sdr']:.2f} dB "
                       f"(noisy {v['si_sdr_noisy']:.2f} dB){extra}")
            self._plot()
        self.dist.barrier()

    def _plot(self) -> None:
        try:
            from dfnet4.train.plot import plot_curves  # matplotlib only once a plot is due

            plot_curves(self.metrics.read(), self.out / "curves.png",
                        title=f"dfnet4 {self.cfg.model.get('backbone')}")
        except Exception as exc:  # a plotting problem must never kill a training run
            tqdm.write(f"dfnet4: could not write the plot: {exc}")

    def _bar_label(self) -> str:
        backbone = self.cfg.model.get("backbone")
        return f"train {backbone}" if len(self.stages) == 1 else f"{backbone} {self.stage.label}"

    def _on_signal(self, signum, frame):
        if self.stop_signal is not None:  # second signal: the user insists
            raise KeyboardInterrupt
        self.stop_signal = signum
        if self.dist.is_main:
            tqdm.write(f"dfnet4: signal {signum} received: saving a checkpoint after this step")

    # ---------------------------------------------------------------- main
    def run(self) -> dict:
        # only one writer per run directory (rank 0 writes; the other ranks only read it)
        with RunLock(self.out, log=self.log) if self.dist.is_main else contextlib.nullcontext():
            self._setup()
            handlers = {}
            if threading.current_thread() is threading.main_thread():
                for s in (signal.SIGINT, signal.SIGTERM):
                    handlers[s] = signal.signal(s, self._on_signal)
            try:
                return self._loop()
            finally:
                for s, h in handlers.items():
                    signal.signal(s, h)

    def _loop(self) -> dict:
        cfg, t = self.cfg, self.cfg.train
        header = runtime_header(cfg.model, self.dist.size)
        header.update(compiled_step=self.compiled, buffer_cache_bytes=self.buffer_cache_bytes, total_steps=self.total_steps, batches_per_epoch=self.loader.batches_per_epoch,
                      batch_size=t.batch_size, segment_seconds=cfg.data.mix.segment_seconds,
                      parameters=sum(v.size for _, v in tree_flatten(self.model.trainable_parameters())),
                      start_step=self.step, data=str(self.cache.directory), init=self.init_state["source"] or None,
                      stages=[{"stage": s.name, "start": s.start, "steps": s.steps, "lr": s.lr} for s in self.stages])
        self.metrics.write(kind="header", step=self.step, **header)
        self.log("dfnet4-train: " + ", ".join(f"{k}={v}" for k, v in header.items()))
        self.log(f"dfnet4-train: run dir {self.out} (metrics.jsonl, curves.png, checkpoints/)")
        step_fn = self._make_step()
        bar = tqdm(total=self.total_steps, initial=self.step, desc=self._bar_label(), unit="step",
                   disable=not (self.progress and self.dist.is_main), dynamic_ncols=True)
        losses: list[float] = []
        samples_per_step = t.batch_size * self.dist.size
        if self.step == 0 and t.validate_at_start:  # the untrained baseline, for the curves
            self._run_validation()
        while self.step < self.total_steps and self.stop_signal is None:
            epoch_done = False
            for b, clean, noisy in self.loader.iterate(self.epoch, self.batch):
                stage = st.stage_at(self.stages, self.step)
                if stage != self.stage:  # the next stage begins: its parameters, loss and optimizer
                    self._enter_stage(stage)
                    step_fn = self._make_step()
                    bar.set_description(self._bar_label())
                    if self.dist.is_main:
                        tqdm.write(f"dfnet4: step {self.step}: {stage.label} begins ({stage.steps} steps, lr {stage.lr:g})")
                t0 = time.perf_counter()
                mx.random.seed(step_seed(t.seed, self.step))  # e.g. dropout: same stream after a resume
                with self.dist.communication(f"step {self.step + 1} (gradient averaging)"):
                    loss, parts, norm = step_fn(mx.array(clean), mx.array(noisy))
                    mx.eval(loss, parts, norm, self.model.state, self.optimizer.state)
                dt = time.perf_counter() - t0
                self.step += 1
                self.batch = b + 1
                if self.batch == self.loader.batches_per_epoch:
                    self.epoch, self.batch, epoch_done = self.epoch + 1, 0, True
                # one collective per step: the mean loss, and whether any rank got a signal (so that
                # all ranks stop at the same step and rank 0's checkpoint is consistent)
                loss_v, stop_any = self.dist.mean_and_any(loss.item(), self.stop_signal is not None)
                if stop_any and self.stop_signal is None:
                    self.stop_signal = signal.SIGTERM
                if not math.isfinite(loss_v):
                    raise FloatingPointError(f"loss became {loss_v} at step {self.step}; lower --lr or --clip-grad")
                losses.append(loss_v)
                lr = float(self.optimizer.learning_rate.item())
                bar.update(1)
                bar.set_postfix(loss=f"{loss_v:.4f}", lr=f"{lr:.2e}", sps=f"{samples_per_step / dt:.1f}")
                if self.step % t.log_every == 0 or self.step == self.total_steps:
                    self.metrics.write(kind="train", step=self.step, epoch=self.epoch, stage=self.stage.name, loss=loss_v, lr=lr,
                                       grad_norm=float(norm.item()), samples_per_sec=samples_per_step / dt,
                                       seconds=dt, **{k: float(v.item()) for k, v in parts.items()})
                if self.interrupt_at_step is not None and self.step == self.interrupt_at_step:
                    self.stop_signal = signal.SIGINT
                finished = self.step >= self.total_steps
                if epoch_done or finished or (t.val_every and self.step % t.val_every == 0):
                    self._run_validation()
                if epoch_done or finished or self.stop_signal is not None or (
                        t.checkpoint_every and self.step % t.checkpoint_every == 0):
                    path = self.save_checkpoint()
                    if path is not None and (finished or self.stop_signal is not None):
                        tqdm.write(f"dfnet4: checkpoint {path}")
                if epoch_done or finished or self.stop_signal is not None:
                    break
        bar.close()
        if self.dist.is_main:
            self._plot()
        ranks_finished = self.dist.finished()  # every rank got here (else DistributedError)
        summary = {"rank": self.dist.rank, "step": self.step, "epoch": self.epoch, "losses": losses, "last_valid": self.last_valid,
                   "out": str(self.out), "ranks_finished": ranks_finished, "world_size": self.dist.size}
        if self.stop_signal is not None:
            raise TrainingInterrupted(self.stop_signal, self.checkpoint, self.out, self.step)
        if self.dist.is_main:
            write_text_atomic(self.out / "summary.json",
                              json.dumps({k: v for k, v in summary.items() if k != "losses"}, indent=1))
        return summary
