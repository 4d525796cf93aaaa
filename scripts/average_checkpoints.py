"""Average the weights of several checkpoints into one: theta = (1/n) sum_i theta_i.

    python scripts/average_checkpoints.py --run-dir runs/my-run --last 5
    python scripts/average_checkpoints.py --run-dir runs/my-run --last 10 --epochs
    python scripts/average_checkpoints.py --inputs a.pt b.pt --output avg.pt

With ``--run-dir`` the last N numbered checkpoints (``checkpoints/checkpoint_<step>.pt``, by
step) are averaged; with ``--epochs`` the last N epoch checkpoints
(``checkpoints/checkpoint_epoch<E>.pt``, written with ``trainer.save_every_epoch=true``), as
fairseq's ``--num-epoch-checkpoints``. The output defaults to ``checkpoint_avg.pt`` in the inputs' folder
(``<run>/checkpoints/`` for a run). The result keeps the config, tokenizer and identity of the
last input, so ``noamt-translate`` and ``noamt-evaluate`` accept it.

Refused in one line, with nothing written: an output named as a training checkpoint
(checkpoint_last.pt, checkpoint_best.pt, checkpoint_<N>.pt, checkpoint_epoch<N>.pt, in any
folder) or that is one of the inputs; inputs whose weights hold NaN or infinite values; inputs
of another model (config.model, tokenizer, tensor names or shapes) than the first.
"""

import argparse
import sys
from pathlib import Path

from noamt.checkpoint import (
    CheckpointError,
    average_checkpoints,
    check_average_output,
    numbered_checkpoints,
    save_checkpoint,
)
from noamt.run_dir import RunDir

AVERAGE = "checkpoint_avg.pt"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--run-dir", type=Path, help="run directory holding checkpoints/")
    source.add_argument("--inputs", type=Path, nargs="+", help="checkpoint files to average")
    parser.add_argument("--last", type=int, default=5, help="with --run-dir: how many (default 5)")
    parser.add_argument(
        "--epochs", action="store_true", help="with --run-dir: average checkpoint_epoch<E>.pt files instead"
    )
    parser.add_argument("--output", type=Path, help=f"default: {AVERAGE} in the folder of the (last) inputs")
    args = parser.parse_args(argv)
    if args.last < 1:
        parser.error(f"--last must be at least 1, got {args.last}")
    return args


def select_inputs(args: argparse.Namespace) -> tuple[list[Path], Path]:
    """The checkpoints to average and the output path (:func:`check_average_output`)."""
    if args.inputs:
        inputs = list(args.inputs)
    else:
        folder = RunDir.at(args.run_dir).checkpoints
        kind, pattern = ("epoch", "checkpoint_epoch<E>.pt") if args.epochs else ("update", "checkpoint_<step>.pt")
        inputs = numbered_checkpoints(folder, kind)[-args.last :]
        if len(inputs) < args.last:
            raise CheckpointError(f"--last {args.last}: {folder} has only {len(inputs)} {pattern} files")
    output = args.output or inputs[-1].parent / AVERAGE
    check_average_output(output, inputs)
    return inputs, output


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        inputs, output = select_inputs(args)
        averaged = average_checkpoints(inputs)
        save_checkpoint(averaged, output)
    except CheckpointError as err:
        sys.exit(f"average_checkpoints: {err}")
    print(f"averaged {len(inputs)} checkpoints (step {averaged.get('step')}):")
    for path in inputs:
        print(f"  {path}")
    print(f"-> {output}")


if __name__ == "__main__":
    main()
