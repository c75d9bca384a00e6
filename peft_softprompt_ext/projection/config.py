"""Configuration of projected prompt tuning: a prompt moved from another model."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from ..options import check_revision
from ..plugin_config import PluginPromptConfig

PEFT_TYPE_NAME = "PROJECTED_PROMPT_TUNING"


@dataclass
class ProjectedPromptTuningConfig(PluginPromptConfig):
    """A prompt for this model, initialised from a prompt trained on ANOTHER model.

    The source adapter's prompt [P, source_width] is mapped by a fitted `PromptProjection`
    (see `fit_projection`) to [P, this model's width]. Frozen, it is a zero-shot transfer; trained,
    a warm start. Exports to vanilla PROMPT_TUNING like every single-prompt method.

    Args:
        num_virtual_tokens (`int`): Must equal the source prompt's length.
        source_adapter (`str`): The trained adapter on the source model (folder or Hub repo id):
            plain PEFT PROMPT_TUNING or a single-prompt plugin method.
        projection (`str`): Folder (or Hub repo id) of a saved `PromptProjection` from the
            source model to this one.
        source_revision (`str`): Hub revision of `source_adapter`.
    """

    PEFT_TYPE_NAME = PEFT_TYPE_NAME

    source_adapter: Optional[str] = field(default=None, metadata={"help": "Trained adapter on the source model."})
    projection: Optional[str] = field(default=None, metadata={"help": "Saved PromptProjection source -> this model."})
    source_revision: Optional[str] = field(default=None, metadata={"help": "Hub revision of source_adapter."})

    def __post_init__(self):
        super().__post_init__()
        check_revision("source_revision", self.source_revision)
        for name in ("source_adapter", "projection"):
            value = getattr(self, name)
            if not value or not isinstance(value, (str,)) and not hasattr(value, "__fspath__"):
                raise ValueError(f"{name} must be a folder or Hub repo id, got {value!r}.")
            setattr(self, name, str(value))
