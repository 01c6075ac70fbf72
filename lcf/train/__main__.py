"""``python -m lcf.train``: train (or resume) the variable-rate model; ``python -m lcf.train export``: ship weights.

Examples:
    python -m lcf.train fit --data ../shared/data/train/shard-00 --run runs/cpu --minutes 60
    python -m lcf.train distill --teacher-run runs/cpu --student cfg3 --data ../shared/data/train/shard-00 \
        --run runs/cfg3 --minutes 60
    python -m lcf.train export --run runs/cpu --out weights/ --student runs/cfg3
    python -m lcf.train export-encoder --run runs/enc --weights weights --out new-weights   # same model id
    python -m lcf.train reexport --weights old-weights --out weights --dtype float16
    python -m lcf.train eval --run runs/cpu --images ../shared/data/kodak --max-images 4
    python -m lcf.train pack --run runs/gpu --out $OUT/teacher      # parts under 16 MiB (the GPU's file limit)
    python -m lcf.train lease --data .data/shard-0{0,1} --val .data/val --init weights --out runs/lease \
        --minutes 9 --device cuda                                    # one GPU call: teacher, then students
    python -m lcf.train export-lease --lease runs/lease --out new-weights
"""

from __future__ import annotations

import time

STARTED = time.monotonic()  # a lease's --minutes count from here

import argparse
import sys

from lcf.errors import LcfError
from lcf.train.distill import add_arguments as add_distill_arguments
from lcf.train.distill import config_from_args as distill_config_from_args
from lcf.train.distill import distill
from lcf.train.lease import LeaseConfig
from lcf.train.loop import TrainConfig, train

LEASE_HELP = {
    "data": "folders of training images (e.g. .data/shard-00 .data/shard-01); the last is held out for validation "
    "unless --val is given",
    "out": "output folder, new or empty: raw/ema/students .safetensors, lease.log, summary.json",
    "minutes": "wall time of the whole process, from its start (the files are written before it ends)",
    "val": "validation folder (never trained on); its loss per level is logged every --val-seconds",
    "init": "start from this weights folder (e.g. weights) or an earlier lease's --out folder; none: a new model",
    "N": "widths of a new model (N, M, Mz); 0: those of --init",
    "device": "cpu, cuda or cuda:N (under torchrun: each process its local GPU)",
    "crop": "side of the square training crops (a multiple of 64)",
    "tile": "images are cut into tiles of this side (the shards are 256x256 crops: one tile each)",
    "precisions": "precisions to try, fp32 first (fp32 = TF32 matrix units on CUDA; bf16: CUDA only)",
    "batches": "batch sizes to try; the fastest (crops/s) configuration that matches fp32 trains",
    "lr": "peak learning rate (after --warmup-steps, until the decay)",
    "decay_fraction": "the lr decays linearly to 0 over this last fraction of the teacher's (and students') time",
    "ema_decay": "decay of the weights' exponential moving average (the better of EMA and raw ships)",
    "students": "student decoders distilled after the teacher, comma-separated (empty: none)",
    "student_share": "fraction of the training time given to the students",
    "teacher_steps": "stop the teacher after this many steps (0: when its share of the time is up)",
    "student_steps": "stop the students after this many steps (0: when the time is up)",
    "student_views": "symmetries of each tile whose g_a output is cached for the students (1, 2, 4 or 8)",
    "graphs": "CUDA graphs: auto (on with one process), on, off",
    "trial_seconds": "seconds each precision x batch candidate is timed",
    "margin": "seconds kept at the end for the last validation and the files",
    "store_dtype": "float storage of the weights files: auto (float32 if under 16 MB, else float16)",
    "decode_threads": "threads decoding the images (0: one per CPU)",
    "threads": "torch intra-op threads (0: leave as is)",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lcf.train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    fit = sub.add_parser("fit", help="train, or resume from the run folder's checkpoint")
    fit.add_argument("--data", nargs="+", required=True, help="folders of training images")
    fit.add_argument("--run", required=True, help="run folder (checkpoint and log.jsonl)")
    helps = {
        "device": "cpu, cuda or cuda:N",
        "precision": "fp32 (TF32 matrix units on CUDA) or bf16 (autocast, CUDA only; slower for this model on an H100)",
        "channels_last": "NHWC tensors (CUDA only; slower for this model on an H100)",
        "init_weights": "a new run starts from the teacher of this shipped weights folder (e.g. weights)",
        "init_run": "a new run starts from the networks and step of this run's checkpoint (Adam afresh)",
        "train_only": "train only these top-level modules, comma-separated (g_a,h_a: the encoder; the entropy "
        "model, the model id and the decoders stay exactly as they are)",
        "minutes": "stop after this wall time (a checkpoint is always left)",
        "steps": "stop at this (absolute) step; lr halves after --lr-decay-at of it",
        "crop": "random square crops of this side (256 recommended: small crops teach border statistics)",
    }
    for name, default in TrainConfig.__dataclass_fields__.items():
        if name in ("data", "run", "extra"):
            continue
        value, flag = default.default, f"--{name.replace('_', '-')}"
        if isinstance(value, bool):
            fit.add_argument(flag, action="store_true", help=helps.get(name))
        else:
            fit.add_argument(flag, type=type(value), default=value, help=helps.get(name, "(default: %(default)s)"))
    exp = sub.add_parser("export", help="write the shipped weights from a run's checkpoint")
    exp.add_argument("--run", required=True)
    exp.add_argument("--out", default="weights")
    exp.add_argument("--notes", default="", help="free text for the model card")
    exp.add_argument(
        "--student",
        action="append",
        default=[],
        metavar="RUN",
        help="a distillation run whose student decoder to ship too (repeatable)",
    )
    exp.add_argument(
        "--dtype",
        default="float32",
        choices=["float32", "float16"],
        help="storage type of the network tensors (benchmarks/weights_precision.py measures the cost)",
    )
    exe = sub.add_parser(
        "export-encoder",
        help="a copy of a weights folder with the encoder of an encoder-only run "
        "(fit --train-only g_a,h_a): same model id, same decoders",
    )
    exe.add_argument("--run", required=True, help="the encoder-only run (started with --init-run or --init-weights)")
    exe.add_argument("--weights", required=True, help="the weights folder it was started from")
    exe.add_argument("--out", required=True, help="where to write (a new folder)")
    exe.add_argument("--notes", default="", help="free text for the manifest")
    rex = sub.add_parser("reexport", help="write a weights folder again in this lcf's layout (new model id)")
    rex.add_argument("--weights", required=True, help="the weights folder to read")
    rex.add_argument("--out", required=True, help="where to write (a new folder)")
    rex.add_argument("--dtype", default="float32", choices=["float32", "float16"])
    ev = sub.add_parser("eval", help="estimated bpp and PSNR of a run's checkpoint on held-out images")
    ev.add_argument("--run", required=True, help="training (or distillation) run whose checkpoint to evaluate")
    ev.add_argument("--images", required=True, help="folder of held-out images (never the training data)")
    ev.add_argument("--max-images", type=int, default=None, help="use only the first N images (sorted by name)")
    ev.add_argument("--qualities", default="1,4,7", help="comma-separated quality levels (default 1,4,7)")
    ev.add_argument(
        "--against",
        default=None,
        metavar="RUN",
        help="also evaluate this run and print the BD-rate (pchip, PSNR) of --run against it",
    )
    pk = sub.add_parser("pack", help="cut a run's checkpoint into parts under 16 MiB (lcf.train.shards)")
    pk.add_argument("--run", required=True)
    pk.add_argument("--out", required=True, help="folder for checkpoint.partNN and checkpoint.parts.json")
    pk.add_argument("--model-only", action="store_true", help="leave out the optimiser state (resuming restarts Adam)")
    up = sub.add_parser("unpack", help="join packed parts back into the run's checkpoint, checking the SHA-256")
    up.add_argument("--parts", required=True, help="folder holding checkpoint.parts.json")
    up.add_argument("--run", required=True)
    dist = sub.add_parser("distill", help="distil a student decoder (g_s) from a trained teacher, or resume")
    add_distill_arguments(dist)
    add_lease_arguments(
        sub.add_parser(
            "lease",
            help="train in one process for a fixed wall time (a GPU lease): "
            "teacher, then students; model-only weights out",
        )
    )
    lex = sub.add_parser("export-lease", help="write a weights folder from a lease's output folder")
    lex.add_argument("--lease", required=True, help="the lease's --out folder")
    lex.add_argument("--out", required=True, help="where to write (a new folder)")
    lex.add_argument("--dtype", default="float16", choices=["float32", "float16"])
    lex.add_argument("--notes", default="", help="free text for the manifest")
    args = parser.parse_args(argv)
    try:
        return run(args)
    except LcfError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code


def add_lease_arguments(parser: argparse.ArgumentParser) -> None:
    from dataclasses import fields

    for f in fields(LeaseConfig):
        flag = f"--{f.name.replace('_', '-')}"
        if f.name == "data":
            parser.add_argument(flag, nargs="+", required=True, help=LEASE_HELP["data"])
        elif f.name in ("out", "minutes"):
            parser.add_argument(
                flag, required=True, type=float if f.name == "minutes" else str, help=LEASE_HELP[f.name]
            )
        else:
            parser.add_argument(
                flag, type=type(f.default), default=f.default, help=LEASE_HELP.get(f.name, "(default: %(default)s)")
            )


def run(args: argparse.Namespace) -> int:
    if args.cmd == "lease":
        from lcf.train.lease import lease

        lease(LeaseConfig(**{k: v for k, v in vars(args).items() if k != "cmd"}), started=STARTED)
    elif args.cmd == "export-lease":
        from lcf.train.lease_export import export_lease

        export_lease(args.lease, args.out, dtype=args.dtype, notes=args.notes)
    elif args.cmd == "fit":
        cfg = TrainConfig(**{k: v for k, v in vars(args).items() if k != "cmd"})
        train(cfg)
    elif args.cmd == "distill":
        distill(distill_config_from_args(args))
    elif args.cmd in ("pack", "unpack"):
        from lcf.train.shards import pack, unpack

        if args.cmd == "pack":
            for path in pack(args.run, args.out, model_only=args.model_only):
                print(path)
        else:
            print(unpack(args.parts, args.run))
    elif args.cmd == "eval":
        from lcf.train.evaluate import evaluate, format_result

        qualities = [float(q) for q in args.qualities.split(",") if q.strip()]
        result = evaluate(args.run, args.images, qualities, args.max_images)
        print(format_result(result))
        if args.against:
            from lcf.train.evaluate import bd_rate_between

            reference = evaluate(args.against, args.images, qualities, args.max_images)
            print(format_result(reference))
            print(f"BD-rate of {args.run} against {args.against}: {bd_rate_between(reference, result):+.2f} %")
    elif args.cmd == "export-encoder":
        from lcf.train.export import export_encoder

        export_encoder(args.run, args.weights, args.out, notes=args.notes)
    elif args.cmd == "reexport":
        from lcf.train.export import reexport

        reexport(args.weights, args.out, dtype=args.dtype)
    else:
        from lcf.train.export import export_run

        export_run(args.run, args.out, notes=args.notes, students=args.student, dtype=args.dtype)
    return 0


if __name__ == "__main__":
    sys.exit(main())
