"""Model cards (README.md of every checkpoint folder) and ``polytask push``.

The Hub cannot be reached from the test machines: the push tests check everything before the network (repository
id, folder, the exact files and card that would go up, offline mode and a missing token) and replace the three
``HfApi`` calls (create_repo, create_branch, create_commit) with recorders; the upload itself is NOT exercised.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx2
import pytest
import yaml
from huggingface_hub import HfApi, ModelCard
from typer.testing import CliRunner

from polytask.checkpoint import read_metrics, rewrite_config
from polytask.cli import app
from polytask.model import MultiTaskModel


def front(text: str) -> dict:
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---", 2)[1])


def test_best_card_holds_the_stored_evaluation(trained) -> None:
    best = trained[1].best_dir
    text = (best / "README.md").read_text(encoding="utf-8")
    meta = front(text)
    assert meta["library_name"] == "polytask"
    assert {"polytask", "multi-task", "text-classification", "token-classification"} <= set(meta["tags"])
    assert meta["datasets"] == ["snips", "sentiment", "pairs", "topics"]
    assert "base_model" not in meta  # the encoder is a local folder, not a Hub id
    metrics = read_metrics(best)
    assert metrics is not None
    # the Hub's own parser reads the model-index; every value is the one metrics.json holds
    results = ModelCard(text).data.eval_results
    got = {(r.task_name.split(" ")[0], r.dataset_split, r.metric_name): r.metric_value for r in results}
    assert got[("intent", "test", "accuracy")] == round(metrics["test"]["tasks"]["intent"]["accuracy"], 6)
    assert got[("slots", "validation", "f1")] == round(metrics["validation"]["tasks"]["slots"]["f1"], 6)
    assert got[("similarity", "validation", "pearson")] == round(
        metrics["validation"]["tasks"]["similarity"]["pearson"], 6)
    assert {r.dataset_name for r in results} == {"snips", "sentiment", "pairs", "topics"}
    assert {r.metric_type for r in results if r.metric_name == "pearson"} == {"pearsonr"}
    assert "| intent | classification | text | 2: GetWeather, PlayMusic |" in text
    assert "| similarity | regression | text pair | a real value" in text
    for heading in ("## Tasks", "## Training", "## Use", "## Limits"):
        assert heading in text
    assert "Pipeline.from_pretrained" in text and "sampler `temperature`" in text


def test_last_card_says_nothing_was_measured(trained) -> None:
    text = (trained[1].output_dir / "last" / "README.md").read_text(encoding="utf-8")
    assert "model-index" not in front(text)
    assert "not measured" in text and "No stored evaluation for intent, slots" in text


def test_calibration_rewrites_the_card_and_old_folders_load_without_one(trained, tmp_path: Path) -> None:
    folder = tmp_path / "ckpt"
    shutil.copytree(trained[1].best_dir, folder)
    model = MultiTaskModel.from_pretrained(folder)
    model.tasks["intent"].temperatures = {"label": 1.75}
    rewrite_config(model, folder)
    assert "intent.label 1.75" in (folder / "README.md").read_text(encoding="utf-8")
    assert not list(folder.glob(".README.md.tmp-*"))
    (folder / "README.md").unlink()  # a folder saved before cards existed
    assert MultiTaskModel.from_pretrained(folder).tasks["intent"].temperatures == {"label": 1.75}


# -- push ------------------------------------------------------------------------------------------------------------
def run(*args: str):
    result = CliRunner().invoke(app, ["push", *args])
    assert "Traceback" not in result.output
    return result.exit_code, " ".join(result.output.split())


def test_dry_run_lists_the_files_without_training_state(trained) -> None:
    code, out = run(str(trained[1].output_dir / "last"), "me/toy", "--dry-run")
    assert code == 0, out
    assert "would upload" in out and "written for this repository" in out
    for name in ("config.json", "model.safetensors", "tokenizer.json", "run_config.yaml", "README.md"):
        assert f" {name}" in out
    for name in ("optimizer.safetensors", "trainer_state.json", "rng.safetensors", ".complete"):
        assert name not in out


@pytest.mark.parametrize("args, fragments", [
    (["{best}", "me/a--b"], ["REPO_ID", "value 'me/a--b'", "not a Hub repository id", "allowed: NAME or OWNER/NAME"]),
    (["{best}", "a/b/c"], ["REPO_ID", "not a Hub repository id"]),
    (["{missing}", "me/x"], ["no such checkpoint folder"]),
    (["{plain}", "me/x"], ["not a polytask checkpoint (no config.json)"]),
    (["{best}", "me/x"], ["HF_HUB_OFFLINE is set", "--dry-run"]),  # the tests run offline (conftest)
])
def test_push_errors_exit_2_with_the_reason(trained, tmp_path: Path, args: list[str], fragments: list[str]) -> None:
    (tmp_path / "plain").mkdir()
    paths = {"best": trained[1].best_dir, "missing": tmp_path / "nowhere", "plain": tmp_path / "plain"}
    code, out = run(*[a.format(**paths) for a in args])
    assert code == 2
    for fragment in fragments:
        assert fragment in out, (fragment, out)


@pytest.fixture
def online(monkeypatch: pytest.MonkeyPatch) -> dict[str, list]:
    """Offline mode off, a fake token, and HfApi's calls recorded instead of sent (no network is touched)."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr("huggingface_hub.get_token", lambda: "hf_not_a_real_token")
    calls: dict[str, list] = {"create_repo": [], "create_branch": [], "create_commit": []}

    def recorder(name: str):
        def call(self, *args, **kwargs):
            calls[name].append((args, kwargs))
            return f"https://huggingface.co/{args[0]}" if name == "create_repo" else None
        return call

    for name in calls:
        monkeypatch.setattr(HfApi, name, recorder(name))
    return calls


def test_push_commits_every_file_and_the_card_once(trained, online: dict[str, list]) -> None:
    best = trained[1].best_dir
    code, out = run(str(best), "me/toy", "--private", "--revision", "v1")
    assert code == 0, out
    assert "done: https://huggingface.co/me/toy" in out
    (repo_args, repo_kwargs), = online["create_repo"]
    assert repo_args == ("me/toy",) and repo_kwargs["private"] is True and repo_kwargs["exist_ok"] is True
    assert online["create_branch"][0][1]["branch"] == "v1"
    (commit_args, commit_kwargs), = online["create_commit"]
    operations = {op.path_in_repo: op for op in commit_args[1]}
    expected = {p.name for p in best.iterdir() if p.is_file() and not p.name.startswith(".")}
    assert set(operations) == expected and commit_kwargs["revision"] == "v1"
    card = operations["README.md"].path_or_fileobj
    assert isinstance(card, bytes) and b'snapshot_download("me/toy")' in card
    assert front(card.decode("utf-8"))["model-index"][0]["name"] == "toy"


def test_a_card_edited_by_hand_goes_up_as_it_is(trained, tmp_path: Path, online: dict[str, list]) -> None:
    folder = tmp_path / "ckpt"
    shutil.copytree(trained[1].best_dir, folder)
    (folder / "README.md").write_text("---\nlibrary_name: polytask\n---\n# mine\n", encoding="utf-8")
    code, out = run(str(folder), "me/toy")
    assert code == 0, out
    operations = {op.path_in_repo: op for op in online["create_commit"][0][0][1]}
    assert operations["README.md"].path_or_fileobj == str(folder / "README.md")


def test_no_token_and_hub_errors_exit_2(trained, online: dict[str, list], monkeypatch: pytest.MonkeyPatch) -> None:
    best = str(trained[1].best_dir)
    monkeypatch.setattr("huggingface_hub.get_token", lambda: None)
    code, out = run(best, "me/toy")
    assert code == 2 and "no Hugging Face token" in out and "hf auth login" in out
    monkeypatch.setattr("huggingface_hub.get_token", lambda: "hf_not_a_real_token")

    def forbidden(self, *args, **kwargs):
        from huggingface_hub.errors import HfHubHTTPError

        response = httpx2.Response(403, request=httpx2.Request("POST", "https://huggingface.co/api/repos/create"))
        raise HfHubHTTPError("403 Forbidden: not your namespace", response=response)

    monkeypatch.setattr(HfApi, "create_repo", forbidden)
    code, out = run(best, "someone-else/toy")
    assert code == 2 and "cannot write to this repository" in out

    def unreachable(self, *args, **kwargs):
        raise httpx2.ConnectError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(HfApi, "create_repo", unreachable)
    code, out = run(best, "me/toy")
    assert code == 2 and "ConnectError" in out and "is the Hub reachable" in out


def test_base_model_and_language_come_from_the_encoder(tmp_path: Path) -> None:
    from polytask.card import base_model, encoder_language

    (tmp_path / "README.md").write_text("---\nlanguage:\n- zh\n- en\n---\n# an encoder\n", encoding="utf-8")
    local = {"encoder": {"name": str(tmp_path)}}
    assert encoder_language(local) == ["zh", "en"] and base_model(local) is None  # a folder is no Hub id
    assert base_model({"encoder": {"name": "minilm"}}) == "sentence-transformers/all-MiniLM-L6-v2"
    assert base_model({"encoder": {"name": "intfloat/multilingual-e5-small"}}) == "intfloat/multilingual-e5-small"
    assert encoder_language({"encoder": {"name": "intfloat/multilingual-e5-small"}}) is None  # offline: unknown
