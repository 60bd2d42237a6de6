"""``polytask push CKPT REPO_ID``: upload a checkpoint folder to the Hugging Face Hub (``huggingface_hub``).

What goes up: every file of the folder except hidden ones (the ``.complete`` marker, leftovers of interrupted
saves) and the resumable training state of a ``last/`` folder (optimizer, weighting, RNG, trainer state: large and
of no use to someone loading the model). The model card is the folder's ``README.md`` as it is when it was edited
by hand; an unedited card (or none, in a folder saved before cards existed) is written anew for the repository, so
its loading snippet names ``REPO_ID``. Everything goes up in one commit.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from polytask.errors import OptionError, PolytaskError

TRAINING_STATE = ("trainer_state.json", "optimizer.safetensors", "weighting.safetensors", "rng.safetensors")
REPO_RULE = "NAME or OWNER/NAME: letters, digits, '-', '_' and '.', no '--' or '..', at most 96 characters"


@dataclass
class PushPlan:
    """What one push uploads: repo path -> local file (or the card's text for README.md)."""

    repo_id: str
    files: dict[str, Path]
    card: str | None  # README.md written for the repository (None: the folder's own README.md goes up)

    @property
    def names(self) -> list[str]:
        return sorted([*self.files, *(["README.md"] if self.card is not None else [])])


def check_repo_id(repo_id: str) -> str:
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as exc:
        raise OptionError("REPO_ID", repo_id, f"not a Hub repository id ({exc})", REPO_RULE) from None
    return repo_id


def plan_push(checkpoint: str | Path, repo_id: str) -> PushPlan:
    """Check the repository id and the folder, and list what would be uploaded (no network)."""
    import yaml

    from polytask.card import checkpoint_card
    from polytask.checkpoint import read_config, read_metrics

    check_repo_id(repo_id)
    folder = Path(checkpoint)
    if not folder.is_dir():
        raise PolytaskError(f"{folder}: no such checkpoint folder")
    config = read_config(folder)
    if not (folder / "model.safetensors").is_file():
        raise PolytaskError(f"{folder}: no model.safetensors (an incomplete checkpoint folder?)")
    files = {p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob("*")) if p.is_file()
             and not any(part.startswith(".") for part in p.relative_to(folder).parts)
             and p.relative_to(folder).as_posix() not in TRAINING_STATE}
    run_file = folder / "run_config.yaml"
    run_config = yaml.safe_load(run_file.read_text(encoding="utf-8")) if run_file.is_file() else None
    metrics = read_metrics(folder)
    readme = folder / "README.md"
    own = readme.read_text(encoding="utf-8") if readme.is_file() else None
    if own is not None and own != checkpoint_card(config, run_config, metrics):
        return PushPlan(repo_id, files, None)  # edited by hand: it goes up as it is
    files.pop("README.md", None)
    return PushPlan(repo_id, files, checkpoint_card(config, run_config, metrics, repo_id=repo_id))


def push(checkpoint: str | Path, repo_id: str, private: bool = False, revision: str | None = None,
         token: str | None = None) -> str:
    """Upload the folder (see :func:`plan_push`) in one commit -> the repository's URL. Creates the repository
    (``private`` applies to a new one) and the branch ``revision`` when missing. No token, offline mode and Hub or
    network errors become a PolytaskError saying what to do."""
    from huggingface_hub import CommitOperationAdd, HfApi, constants, get_token

    plan = plan_push(checkpoint, repo_id)
    if constants.HF_HUB_OFFLINE:
        raise PolytaskError("HF_HUB_OFFLINE is set: the Hub cannot be reached; unset it, with network access, "
                            "to push (`polytask push --dry-run` lists the files without the network)")
    token = token or get_token()
    if not token:
        raise PolytaskError("no Hugging Face token: run `hf auth login` or set HF_TOKEN to a token with write "
                            "access (https://huggingface.co/settings/tokens)")
    operations = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(path)) for name, path in
                  plan.files.items()]
    if plan.card is not None:
        operations.append(CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=plan.card.encode("utf-8")))
    api = HfApi(token=token)
    try:
        url = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        if revision:
            api.create_branch(repo_id, branch=revision, exist_ok=True, repo_type="model")
        api.create_commit(repo_id, operations, commit_message=f"polytask push of {Path(checkpoint).name}",
                          revision=revision, repo_type="model")
    except Exception as exc:  # noqa: BLE001  (HTTP, network and auth errors of any huggingface_hub version)
        raise PolytaskError(f"push to {repo_id!r} failed: {_reason(exc)}") from None
    return str(url)


def _reason(exc: Exception) -> str:
    status = getattr(getattr(exc, "response", None), "status_code", None)
    hint = {401: "the token is not valid (run `hf auth login` again)",
            403: "the token cannot write to this repository (a read-only token, or another user's namespace)",
            404: "the repository or branch was not found"}.get(status or 0)
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return f"{hint}: {first}" if hint else f"{type(exc).__name__}: {first} (is the Hub reachable from here?)"
