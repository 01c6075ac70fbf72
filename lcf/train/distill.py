"""Knowledge distillation of student decoders (paper Sec. III-D, Eq. 2; Sec. IV, Cfg. 1–4; Table III).

lcf ships **one entropy model and many synthesis transforms**: g_a, h_a, h_s, ctx, PEN1, PEN2 and the gains are
shared by every decoder, so any file decodes with any decoder and its bits never depend on the choice. A student
therefore replaces g_s only, and distillation freezes everything else (cheaper than the paper's joint training, and
every file already written stays decodable). Where the paper distils θ1 and θ2 (its students have their own entropy
parameters), lcf distils the reconstruction and the intermediate features of g_s instead::

    x ─ g_a·gain(q) ─ round ─ ŷ ─ ·inv_gain(q) ─┬─ teacher g_s ─ f1ᵀ ─ f2ᵀ ─ f3ᵀ ─ x̂ᵀ      frozen, no gradient
        frozen, no gradient                     └─ student g_s ─ f1ˢ ─ f2ˢ ─ f3ˢ ─ x̂ˢ      trained
                                                                 A1    A2    A3            1x1 adapters (training only)

    L = λ·255²·MSE(x, x̂ˢ) + λ3·L_KD,     L_KD = d(x̂ᵀ, x̂ˢ) + Σ_k d(f_kᵀ, A_k(f_kˢ))

f_k are the features entering the 2nd and 3rd up-sampling blocks and the last sub-pixel convolution (H/8, H/4,
H/2; ``lcf.nn.students``). A_k is a 1x1 convolution from the student's to the teacher's width where they differ
(identity otherwise); it is trained with the student and never exported. The rate terms of Eq. (1) are constant
(the encoder and entropy model are frozen) and left out. λ is per sample (one quality level per sample, as in
``lcf.train.loop``); λ3 = ``--kd-weight`` for the first ``--kd-steps`` steps, then 0 (the paper: 1 for 20k steps),
after which the teacher's g_s is no longer run. d is the MSE (the paper's choice) or, for the Table III ablation
(``--kd-loss softmax``), τ²·KL(softmax(aᵀ/τ) ‖ softmax(aˢ/τ)) over channels, averaged over positions.

A student of the teacher's shape (cfg1, the paper's Step 2) starts from the teacher's weights; a smaller one starts
from a channel-sliced teacher (``--init slice``: each tensor gets the teacher's leading slice; modules the teacher
has at another width, e.g. cfg2's first up-sampling block, start random) or from scratch (``--init scratch``).
``--init-run RUN`` warm-starts from the student of an earlier distillation run of the same shape (e.g. one distilled
from an earlier teacher checkpoint): far fewer steps than a sliced start when the teacher has only moved a little.

The run pins its teacher: the first call copies the teacher checkpoint's network into the run's checkpoint, and
every resumed call uses that copy, so a teacher that keeps training does not move under the student (``--teacher-run``
may name another distillation run, to distil several students from the same pinned teacher). Export checks that a
student's teacher is the exported model (``teacher_digest``).
"""

from __future__ import annotations

import argparse
import hashlib
import math
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lcf.errors import LcfError, TrainError
from lcf.manifest import DecoderArch
from lcf.nn import LcfModel, ModelConfig
from lcf.nn.students import (
    KINDS,
    build_decoder,
    feature_channels,
    init_from_teacher,
    parameter_count,
    student_arch,
    synthesis_features,
)
from lcf.train import checkpoint
from lcf.train.data import CropSampler, find_images, load_images
from lcf.train.loop import (  # load_teacher and CHECKPOINT_KIND live in loop, which reads any run's model
    CHECKPOINT_KIND,
    PRECISIONS,
    LevelWindow,
    learning_rate,
    load_teacher,
    prepare_run,
    restore_progress,
    rng_states,
)

KD_LOSSES = ("mse", "softmax")
INITS = ("auto", "teacher", "slice", "scratch")


@dataclass
class DistillConfig:
    teacher_run: str
    student: str  # recipe: cfg1 (teacher's shape), cfg2, cfg3, cfg4
    data: list[str]
    run: str
    name: str = ""  # decoder name to ship it as (default: the recipe)
    init: str = "auto"  # auto (teacher if same shape, else slice) | teacher | slice | scratch
    init_run: str = ""  # warm start: the student of this earlier distillation run (same shape)
    init_weights: str = ""  # warm start: the decoder of this name in a shipped weights folder
    crop: int = 128
    batch: int = 8
    lr: float = 1e-4
    lr_decay_at: float = 0.85  # fraction of --steps after which lr is halved
    steps: int = 200_000
    minutes: float = 60.0
    save_every: float = 300.0  # seconds
    kd_weight: float = 1.0  # λ3
    kd_steps: int = 20_000  # λ3 applies for the first kd_steps steps, then 0
    kd_loss: str = "mse"  # mse | softmax (Table III ablation)
    kd_temperature: float = 1.0  # τ of the softmax KD
    clip: float = 1.0
    seed: int = 0
    device: str = "cpu"
    precision: str = "fp32"  # fp32 (TF32 on CUDA) | bf16 (autocast; CUDA only)
    threads: int = 0  # torch intra-op threads; 0 = leave as is
    log_every: int = 50
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise TrainError(f"--precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.precision == "bf16" and not self.device.startswith("cuda"):
            raise TrainError("--precision bf16 is for CUDA devices; on the CPU distil in fp32")
        if self.init_run and self.init_weights:
            raise TrainError("give --init-run or --init-weights, not both")
        if self.init_weights and self.init != "auto":
            raise TrainError(f"--init-weights sets the initialisation itself; leave --init at auto (got {self.init!r})")
        if self.student not in KINDS[1:]:
            raise TrainError(f"--student must be one of {', '.join(KINDS[1:])}, got {self.student!r}")
        if self.kd_loss not in KD_LOSSES:
            raise TrainError(f"--kd-loss must be one of {KD_LOSSES}, got {self.kd_loss!r}")
        if self.init not in INITS:
            raise TrainError(f"--init must be one of {INITS}, got {self.init!r}")
        if self.init_run and self.init != "auto":
            raise TrainError(f"--init-run sets the initialisation itself; leave --init at auto (got {self.init!r})")
        self.name = self.name or self.student


# -- the loss -----------------------------------------------------------------------------------------------------


class FeatureAdapters(nn.ModuleList):
    """A_k: 1x1 convolutions from the student's feature widths to the teacher's (identity where equal)."""

    def __init__(self, student_widths: list[int], teacher_widths: list[int]) -> None:
        super().__init__(
            nn.Identity() if s == t else nn.Conv2d(s, t, 1) for s, t in zip(student_widths, teacher_widths, strict=True)
        )


def kd_distance(teacher: Tensor, student: Tensor, mode: str = "mse", tau: float = 1.0) -> Tensor:
    """Per-sample distance d(teacher, student), shape (B,): MSE, or τ²·KL of the channel softmaxes per position."""
    if mode == "mse":
        return (student - teacher).pow(2).flatten(1).mean(1)
    log_t = F.log_softmax(teacher / tau, dim=1)
    log_s = F.log_softmax(student / tau, dim=1)
    return tau**2 * (log_t.exp() * (log_t - log_s)).sum(1).flatten(1).mean(1)


@dataclass
class DistillTerms:
    loss: Tensor  # scalar to minimise
    mse: Tensor  # (B,) MSE(x, x̂ˢ) on [0, 1] pixels
    kd: Tensor  # (B,) L_KD (zeros when λ3 = 0)

    @property
    def psnr(self) -> Tensor:
        return -10.0 * torch.log10(self.mse.clamp_min(1e-10))


def distill_loss(
    x: Tensor,
    x_s: Tensor,
    feats_s: list[Tensor],
    lam: Tensor,
    lam3: float,
    x_t: Tensor | None = None,
    feats_t: list[Tensor] | None = None,
    adapters: Iterable[nn.Module] | None = None,
    mode: str = "mse",
    tau: float = 1.0,
) -> DistillTerms:
    """Eq. (2) without the (constant) rates: λ·255²·MSE(x, x̂ˢ) + λ3·L_KD, averaged over the batch."""
    mse = (x_s.float() - x.float()).pow(2).flatten(1).mean(1)
    kd = torch.zeros_like(mse)
    if lam3 > 0:
        if x_t is None or feats_t is None or adapters is None:
            raise ValueError("λ3 > 0 needs the teacher's output, its features and the adapters")
        kd = kd_distance(x_t.float(), x_s.float(), mode, tau)
        for f_t, f_s, adapt in zip(feats_t, feats_s, adapters, strict=True):
            kd = kd + kd_distance(f_t.float(), adapt(f_s).float(), mode, tau)
    per_sample = lam * 255.0**2 * mse + lam3 * kd
    return DistillTerms(per_sample.mean(), mse.detach(), kd.detach())


# -- teacher, student, checkpoint ------------------------------------------------------------------------------------


def teacher_g_s(model: LcfModel) -> nn.Sequential:
    """The teacher's g_s (``model.decoders["teacher"]``, built by lcf.nn.students.build_decoder as a Sequential)."""
    return cast(nn.Sequential, model.decoders["teacher"])


def teacher_digest(model: LcfModel) -> str:
    """SHA-256 (hex, 32 digits) of everything a student depends on: every tensor except the decoders'."""
    h = hashlib.sha256()
    for key, value in sorted(model.state_dict().items()):
        if key.startswith("decoders."):
            continue
        h.update(key.encode())
        h.update(value.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()[:32]


def _frozen(model: LcfModel) -> LcfModel:
    model.eval()
    model.requires_grad_(False)
    return model


def make_student(cfg: DistillConfig, teacher: LcfModel) -> tuple[DecoderArch, nn.Sequential, str]:
    """(arch, student g_s, how it was initialised) for ``cfg.student`` of ``teacher``'s widths."""
    c = teacher.config
    arch = student_arch(cfg.student, c.N, c.M)
    student = build_decoder(arch)
    init = cfg.init
    if cfg.init_run:
        earlier, _ = load_distilled(cfg.init_run)
        if not arch.same_network(earlier.arch):
            raise TrainError(f"--init-run {cfg.init_run} holds a {earlier.arch} student, not {arch}")
        student.load_state_dict(earlier.state)
        return (
            arch,
            student,
            (f"student of {cfg.init_run} ({earlier.steps} steps from teacher step {earlier.teacher_step})"),
        )
    if cfg.init_weights:
        return arch, student, _student_from_weights(cfg, arch, student)
    if init == "auto":
        init = "teacher" if arch.same_network(teacher.decoder_archs["teacher"]) else "slice"
    if init == "teacher":
        if not arch.same_network(teacher.decoder_archs["teacher"]):
            raise TrainError(f"--init teacher needs a student of the teacher's shape; {cfg.student} is {arch}")
        student.load_state_dict(teacher.decoders["teacher"].state_dict())
        how = "teacher weights"
    elif init == "slice":
        copied, left = init_from_teacher(student, arch, teacher_g_s(teacher), teacher.decoder_archs["teacher"])
        how = f"channel-sliced teacher ({copied} tensors copied or sliced, {left} random)"
    else:
        how = "scratch"
    return arch, student, how


def _student_from_weights(cfg: DistillConfig, arch: DecoderArch, student: nn.Sequential) -> str:
    """Load decoder ``cfg.name`` of the shipped weights at ``cfg.init_weights`` into ``student``; say what it was."""
    from lcf.weights import load_weights

    try:
        weights = load_weights(cfg.init_weights)
        info = weights.decoder_info(cfg.name)
        arrays = weights.decoder(cfg.name)
    except LcfError as exc:
        raise TrainError(f"--init-weights {cfg.init_weights}: {exc}") from None
    if info.arch is None or not arch.same_network(info.arch):
        raise TrainError(f"--init-weights {cfg.init_weights}: decoder {cfg.name!r} is {info.arch}, not {arch}")
    student.load_state_dict({k: torch.from_numpy(v.astype("float32")) for k, v in arrays.items()})
    steps = weights.manifest.info.get("students", {}).get(cfg.name, {}).get("distill_steps", "?")
    return f"decoder {cfg.name!r} of {cfg.init_weights} (model {weights.model_id.hex()[:8]}, {steps} distill steps)"


def distill(cfg: DistillConfig) -> dict:
    """Run (or resume) the distillation of one student; return the last logged metrics."""
    run, device = prepare_run(cfg.run, cfg.device, cfg.threads)
    torch.manual_seed(cfg.seed)

    ckpt = checkpoint.load_checkpoint(run, device) if checkpoint.exists(run) else None
    if ckpt is not None:
        if ckpt.get("kind") != CHECKPOINT_KIND:
            raise TrainError(f"{run} holds no distillation checkpoint; use another --run folder")
        if (ckpt["student"], ckpt["name"]) != (cfg.student, cfg.name):
            raise TrainError(
                f"{run} distils {ckpt['student']} as {ckpt['name']!r}, not {cfg.student} as "
                f"{cfg.name!r}; use another --run folder"
            )
        teacher = LcfModel(ModelConfig.from_dict(ckpt["model_config"])).to(device)
        teacher.load_state_dict(ckpt["teacher_model"])
        teacher_meta = ckpt["teacher_meta"]
        arch = DecoderArch.from_dict(ckpt["arch"])
        student = build_decoder(arch)
        how = ckpt["init"]
    else:
        teacher, teacher_meta = load_teacher(cfg.teacher_run, device)
        arch, student, how = make_student(cfg, teacher)
    teacher = _frozen(teacher)
    student = student.to(device).train()
    M = teacher.config.M
    adapters = FeatureAdapters(feature_channels(student, M), feature_channels(teacher_g_s(teacher), M))
    adapters = adapters.to(device)
    optimiser = torch.optim.Adam([*student.parameters(), *adapters.parameters()], lr=cfg.lr)
    files = find_images(cfg.data)
    sampler = CropSampler(load_images(files, cfg.crop), cfg.crop, cfg.batch, seed=cfg.seed)
    step = 0
    digest = teacher_digest(teacher)
    if ckpt is not None:
        student.load_state_dict(ckpt["student_state"])
        adapters.load_state_dict(ckpt["adapters"])
        step = restore_progress(ckpt, optimiser, sampler, files)
        print(f"resumed {cfg.name} from {run} at step {step}", flush=True)
    else:
        print(
            f"distilling {cfg.name} ({arch}, {parameter_count(student)} parameters, teacher "
            f"{parameter_count(teacher.decoders['teacher'])}) from {cfg.teacher_run} step {teacher_meta['step']}; "
            f"init: {how}",
            flush=True,
        )

    def save() -> None:
        checkpoint.save_checkpoint(
            run,
            {
                "kind": CHECKPOINT_KIND,
                "student": cfg.student,
                "name": cfg.name,
                "arch": arch.to_dict(),
                "init": how,
                "student_state": student.state_dict(),
                "adapters": adapters.state_dict(),
                "optimiser": optimiser.state_dict(),
                "step": step,
                "sampler": sampler.state(),
                "data_files": [str(f) for f in files],
                **rng_states(),
                "teacher_model": teacher.state_dict(),
                "teacher_meta": teacher_meta,
                "teacher_digest": digest,
                "model_config": teacher.config.to_dict(),
                "distill_config": asdict(cfg),
            },
        )

    g_t = teacher_g_s(teacher)
    lambdas = torch.tensor(teacher.config.levels, device=device)
    levels = len(teacher.config.levels)
    log_path = run / "log.jsonl"
    start = last_save = time.monotonic()
    window = LevelWindow(levels, device)
    last: dict = {}
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.precision == "bf16")

    while step < cfg.steps and (time.monotonic() - start) < cfg.minutes * 60:
        for group in optimiser.param_groups:
            group["lr"] = learning_rate(cfg, step)
        lam3 = cfg.kd_weight if step < cfg.kd_steps else 0.0
        x = sampler.next(device)
        level = torch.randint(1, levels + 1, (x.shape[0],), device=device)
        q = level.float()
        with torch.no_grad():
            # the coded latent in float32 (exactly what the files carry), then both g_s under the chosen precision
            y_in = torch.round(teacher.analyse(x, q)) * teacher.gain.inv_gain(q)
            with autocast:
                x_t, feats_t = synthesis_features(g_t, y_in) if lam3 > 0 else (None, None)
        with autocast:
            x_s, feats_s = synthesis_features(student, y_in)
        terms = distill_loss(
            x, x_s, feats_s, lambdas[level - 1], lam3, x_t, feats_t, adapters, cfg.kd_loss, cfg.kd_temperature
        )
        optimiser.zero_grad(set_to_none=True)
        terms.loss.backward()
        torch.nn.utils.clip_grad_norm_([*student.parameters(), *adapters.parameters()], cfg.clip)
        optimiser.step()
        step += 1

        window.add_per_level("psnr", level, terms.psnr)
        if x_t is not None:
            mse_t = (x_t.float().clamp(0, 1) - x).pow(2).flatten(1).mean(1)
            window.add_per_level("teacher_psnr", level, -10.0 * torch.log10(mse_t.clamp_min(1e-10)))
        window.add("loss", terms.loss)
        window.add("kd", terms.kd.mean())
        if step % cfg.log_every == 0:
            last = window.flush(
                log_path, step=step, lr=learning_rate(cfg, step), lam3=lam3, minutes=(time.monotonic() - start) / 60
            )
            if not math.isfinite(last["loss"]):
                raise TrainError(f"loss is not finite before step {step}; last checkpoint kept in {run}")
            summary = "  ".join(
                f"q{lv}:{last.get(f'psnr_q{lv}', math.nan):.2f}/{last.get(f'teacher_psnr_q{lv}', math.nan):.2f}dB"
                for lv in (1, 4, 7)
            )
            print(f"step {step}  loss {last['loss']:.4f}  kd {last['kd']:.5f}  student/teacher {summary}", flush=True)
        if time.monotonic() - last_save > cfg.save_every:
            save()
            last_save = time.monotonic()
    save()
    print(f"stopped at step {step}; checkpoint in {run}", flush=True)
    return last


# -- export ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DistilledDecoder:
    """A student as a distillation run left it: what export needs."""

    name: str
    arch: DecoderArch
    state: dict[str, Tensor]
    teacher_digest: str
    teacher_step: int
    steps: int
    run: str


def is_distill_checkpoint(ckpt: dict) -> bool:
    return ckpt.get("kind") == CHECKPOINT_KIND


def load_distilled(run: str | Path) -> tuple[DistilledDecoder, dict]:
    """(the student of a distillation run, the run's checkpoint: its pinned teacher is ``teacher_model``)."""
    ckpt = checkpoint.load_checkpoint(run)
    if not is_distill_checkpoint(ckpt):
        raise TrainError(f"{run} is not a distillation run (python -m lcf.train distill ...)")
    student = DistilledDecoder(
        ckpt["name"],
        DecoderArch.from_dict(ckpt["arch"]),
        ckpt["student_state"],
        ckpt["teacher_digest"],
        ckpt["teacher_meta"]["step"],
        ckpt["step"],
        str(run),
    )
    return student, ckpt


def attach_students(model: LcfModel, runs: list[str | Path]) -> dict[str, dict]:
    """Add the students of distillation ``runs`` to ``model`` as decoders; each must have been distilled from
    exactly this model (same encoder, gains and entropy model). Returns {name: info for the model card}."""
    digest = teacher_digest(model)
    info = {}
    for run in runs:
        student, _ = load_distilled(run)
        if student.teacher_digest != digest:
            raise TrainError(
                f"{run} distilled {student.name!r} from another teacher (teacher step {student.teacher_step}, digest "
                f"{student.teacher_digest}); the exported model's digest is {digest}. Distil again from this teacher, "
                f"or export with --run {run} to ship the teacher that student was distilled from."
            )
        model.add_decoder(student.name, student.arch).load_state_dict(student.state)
        info[student.name] = {
            "run": str(run),
            "distill_steps": student.steps,
            "arch": model.decoder_archs[student.name].to_dict(),
        }
    return info


# -- command line -----------------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``python -m lcf.train distill`` (one per DistillConfig field)."""
    parser.add_argument("--teacher-run", required=True, help="training run whose checkpoint is the teacher")
    parser.add_argument("--student", required=True, choices=KINDS[1:], help="student recipe (lcf.nn.students)")
    parser.add_argument("--data", nargs="+", required=True, help="folders of training images")
    parser.add_argument("--run", required=True, help="run folder of this student (checkpoint and log.jsonl)")
    helps = {
        "name": "decoder name to ship the student as (default: the recipe)",
        "init": "auto: the teacher's weights for cfg1, a channel-sliced teacher otherwise",
        "init_run": "warm start from the student of this earlier distillation run (same recipe and widths)",
        "init_weights": "warm start from the decoder of the same --name in this shipped weights folder",
        "precision": "fp32 (TF32 matrix units on CUDA) or bf16 (autocast, CUDA only)",
        "kd_weight": "λ3, the weight of L_KD",
        "kd_steps": "λ3 applies for the first N steps, then 0 (paper: 20000)",
        "kd_loss": "d in L_KD: mse (the paper's) or softmax (Table III ablation)",
        "kd_temperature": "τ of the softmax KD",
        "minutes": "stop after this wall time (a checkpoint is always left)",
        "steps": "stop at this step (also sets when lr halves: --lr-decay-at)",
    }
    choices = {"init": INITS, "kd_loss": KD_LOSSES, "precision": PRECISIONS}
    for f in fields(DistillConfig):
        if f.name in ("teacher_run", "student", "data", "run", "extra"):
            continue
        parser.add_argument(
            f"--{f.name.replace('_', '-')}",
            type=type(f.default),
            default=f.default,
            choices=choices.get(f.name),
            help=helps.get(f.name, "(default: %(default)s)"),
        )


def config_from_args(args: argparse.Namespace) -> DistillConfig:
    names = {f.name for f in fields(DistillConfig)}
    return DistillConfig(**{k: v for k, v in vars(args).items() if k in names})
