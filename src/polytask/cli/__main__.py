"""``python -m polytask.cli``: the ``polytask`` command (what torchrun and accelerate launch start)."""

from polytask.cli import main

if __name__ == "__main__":  # pragma: no cover
    main()
