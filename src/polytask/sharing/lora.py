"""Per-task LoRA adapters in the top layers of the encoder, with Hugging Face PEFT.

Hu et al., "LoRA: Low-Rank Adaptation of Large Language Models", ICLR 2022 (arXiv:2106.09685): a frozen or trained
weight W gets a per-task low-rank update (alpha / rank) * B A, with B zero at start (the model starts as the shared
one). The adapters sit in the top ``layers`` layers only, so the layers below stay one pass for every task: the
bottom runs once per batch, then the top layers once per task with an adapter (its adapter switched on) and once for
all the tasks without one (adapters off). ``train.freeze: [encoder]`` trains the adapters and heads alone.
"""

from __future__ import annotations

import importlib.util
import warnings
from typing import Any, Literal

import torch
from pydantic import Field
from torch import nn

from polytask.errors import PolytaskError
from polytask.sharing.base import LayeredParams, Passes, SplitSharing
from polytask.sharing.registry import SHARING


class LoraParams(LayeredParams):
    rank: int = Field(8, ge=1, description="rank r of each update B A")
    alpha: int = Field(16, ge=1, description="the update is scaled by alpha / rank")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="dropout on the adapter's input")
    target_modules: list[str] = Field(default_factory=lambda: ["query", "value"], min_length=1,
                                      description="names of the linear layers to adapt within each block")
    layers: int | Literal["all"] = Field(2, description="adapt the top k layers, or all of them")
    tasks: list[str] | None = Field(None, description="the tasks that get adapters (default: every task)")


@SHARING.register("lora")
class LoraSharing(SplitSharing):
    Params = LoraParams
    params: LoraParams

    @classmethod
    def check(cls, params: Any, depth: int | None, tasks: list[str]) -> list[str]:
        unknown = [t for t in params.tasks or [] if t not in tasks]
        missing = [] if importlib.util.find_spec("peft") else [
            "name: 'lora' needs the peft package: pip install 'polytask[sharing]'"]
        return missing + super().check(params, depth, tasks) + (
            [f"tasks: unknown task(s) {', '.join(unknown)}; tasks: {', '.join(tasks)}"] if unknown else [])

    def attach(self, encoder: nn.Module, tasks: list[str]) -> None:
        super().attach(encoder, tasks)
        self.adapted: list[str] = []
        self._lora: list[Any] = []  # PEFT's adapted layers (BaseTunerLayer) in the top layers
        self._adapters: list[nn.Parameter] = []
        for name in self.params.tasks if self.params.tasks is not None else tasks:
            self.add_task(name)

    def add_task(self, name: str) -> None:
        """Inject a zero-initialised adapter named after the task into the top layers (PEFT)."""
        from peft import LoraConfig, inject_adapter_in_model
        from peft.tuners.tuners_utils import BaseTunerLayer

        p = self.params
        config = LoraConfig(r=p.rank, lora_alpha=p.alpha, lora_dropout=p.dropout, target_modules=p.target_modules,
                            layers_to_transform=list(self.top), layers_pattern="layer", bias="none")
        flags = {id(q): q.requires_grad for q in self.encoder.parameters()}
        try:
            with warnings.catch_warnings():  # "multiple adapters in the model": one per task, on purpose
                warnings.simplefilter("ignore", UserWarning)
                inject_adapter_in_model(config, self.encoder, adapter_name=name)
        except ValueError as exc:  # PEFT names the modules it could not find
            linear = sorted({n.rsplit(".", 1)[-1] for n, m in self.split.layers[-1].named_modules()
                             if isinstance(m, nn.Linear)})
            raise PolytaskError(f"encoder.sharing.target_modules: {p.target_modules} do not name linear layers of "
                                f"the encoder's blocks ({exc}); its blocks have: {', '.join(linear)}") from None
        # PEFT freezes everything but the adapters: keep the encoder as train.freeze leaves it
        for q in self.encoder.parameters():
            q.requires_grad_(flags.get(id(q), True))
        self.adapted.append(name)
        self._lora = [m for i in self.top for m in self.split.layers[i].modules() if isinstance(m, BaseTunerLayer)]
        self._adapters = [q for n, q in self.encoder.named_parameters() if ".lora_" in n]

    def _switch(self, adapter: str | None) -> None:
        """Make ``adapter`` the one the top layers apply (None: none). PEFT's switch also sets requires_grad; the
        flags are put back, so training and train.freeze decide them."""
        flags = [(q, q.requires_grad) for q in self._adapters]
        for module in self._lora:
            module.enable_adapters(adapter is not None)
            if adapter is not None:
                module.set_adapter(adapter)
        for q, flag in flags:
            q.requires_grad_(flag)

    def encode(self, kwargs: dict[str, Any], names: list[str]) -> tuple[Passes, torch.Tensor]:
        hidden, mask = self.split.bottom(kwargs, self.top.start)
        top = self.split.layers[self.top.start:]
        plain = [n for n in names if n not in self.adapted]
        groups: list[tuple[list[str], str | None]] = [([n], n) for n in names if n in self.adapted]
        if plain:
            groups.append((plain, None))
        passes = []
        try:
            for group, adapter in groups:
                self._switch(adapter)
                passes.append((group, self.split.run(top, hidden, mask)))
        finally:
            self._switch(None)
        return passes, hidden

    def added_parameters(self) -> list[nn.Parameter]:
        return list(self._adapters)
