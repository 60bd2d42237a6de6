"""Run by tests/test_distributed.py under ``torchrun``: train CONFIG with ``polytask.train.train`` and write, per
process, what the test compares: the step count and a digest of the weights the process ends with."""

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
    args = parser.parse_args()
    out = Path(args.out)
    seen: dict[str, str] = {}
    finish, checkpoint = trainer._finish, trainer._checkpoint

    def capture(core, *a, **k):  # the weights each process holds at the end of the loop
        seen["weights"] = digest(core)
        return finish(core, *a, **k)

    def capture_checkpoint(core, *a, **k):  # (stop_after ends with a checkpoint, not _finish)
        seen["weights"] = digest(core)
        return checkpoint(core, *a, **k)

    trainer._finish, trainer._checkpoint = capture, capture_checkpoint
    result = trainer.train(load_config(args.config), resume=args.resume, stop_after=args.stop_after,
                           show_progress=False)
    from accelerate import PartialState

    state = PartialState()
    out.mkdir(parents=True, exist_ok=True)
    (out / f"rank{state.process_index}.json").write_text(json.dumps({
        "rank": state.process_index, "world": state.num_processes, "steps": result.steps,
        "weights": seen["weights"], "validation": result.validation, "test": result.test}))


if __name__ == "__main__":
    main()
