"""Run by tests/test_distributed.py under ``torchrun``: train CONFIG with ``polytask.train.train`` and write, per
process, what the test compares: the step count and a digest of the weights the process ends with. ``--more``
trains further configs in the same processes afterwards (one launch, less start-up time), each writing its results
under OUT/<config file stem>/."""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import polytask.train as trainer
from polytask.config import load_config


def digest(model) -> str:
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("config")
    parser.add_argument("out")
    parser.add_argument("--stop-after", type=int, default=None)
    parser.add_argument("--resume", default=None)
    parser.add_argument("--more", nargs="*", default=[], help="configs to train afterwards, from scratch")
    args = parser.parse_args()
    run(args.config, Path(args.out), args.stop_after, args.resume)
    for config in args.more:
        run(config, Path(args.out) / Path(config).stem, None, None)


def run(config: str, out: Path, stop_after: int | None, resume: str | None) -> None:
    seen: dict[str, str] = {}
    finish, checkpoint = trainer._finish, trainer._checkpoint

    def capture(core, *a, **k):  # the weights each process holds at the end of the loop
        seen["weights"] = digest(core)
        return finish(core, *a, **k)

    def capture_checkpoint(core, *a, **k):  # (stop_after ends with a checkpoint, not _finish)
        seen["weights"] = digest(core)
        return checkpoint(core, *a, **k)

    trainer._finish, trainer._checkpoint = capture, capture_checkpoint
    try:
        result = trainer.train(load_config(config), resume=resume, stop_after=stop_after, show_progress=False)
    finally:
        trainer._finish, trainer._checkpoint = finish, checkpoint
    from accelerate import PartialState

    state = PartialState()
    out.mkdir(parents=True, exist_ok=True)
    (out / f"rank{state.process_index}.json").write_text(json.dumps({
        "rank": state.process_index, "world": state.num_processes, "steps": result.steps,
        "weights": seen["weights"], "validation": result.validation, "test": result.test}))


if __name__ == "__main__":
    main()
