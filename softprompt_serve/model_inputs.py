"""The served model's own input embeddings, read from its folder: tokenizer + embedding matrix only.

vLLM takes `prompt_embeds` as the hidden states that enter the first layer, so the text part must
be what the model's embedding layer would produce for it. For most models that is the embedding
row; Gemma models multiply it by sqrt(hidden size) inside their embedding layer (transformers'
`*ScaledWordEmbedding`, vLLM's `normalizer`), and a PEFT prompt is concatenated after that scaling,
so the prompt rows are used as they are and only the text is scaled.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open

from .plugin_fingerprint import fingerprint_module

# Model types whose embedding layer multiplies rows by sqrt(hidden size) (transformers' Gemma family, VaultGemma).
SCALED_EMBEDDING_MODEL_TYPES = frozenset({"gemma", "gemma2", "gemma3", "gemma3_text", "vaultgemma"})
# Model types whose first layer reads more than the embedding rows, refused: per-layer inputs looked up from the token
# ids (which prompt rows have none of), or another scale than sqrt(hidden size).
UNSERVED_MODEL_TYPES = {
    **dict.fromkeys(("gemma3n", "gemma3n_text", "gemma4", "gemma4_text", "gemma4_unified", "gemma4_unified_text"),
                    "its layers also read per-layer inputs looked up from the token ids, which prompt rows have none of"),
    **dict.fromkeys(("minicpm", "minicpm3"), "it scales its input embeddings by config.scale_emb, which this room does not apply"),
    **dict.fromkeys(("biogpt", "xglm"), "it may scale its input embeddings (scale_embedding), which this room does not apply"),
    # (found 2026-12-07 by a probe, from vLLM's model code; no engine runs them here)
    "falcon_h1": "vLLM multiplies every prompt_embeds row by config.embedding_multiplier, where transformers (and the plugin) "
                 "multiply only the embedding of the text's ids, so the prompt would go in scaled",
    "hrm_text": "vLLM takes prompt_embeds as given, where transformers multiplies every input row, the prompt's too, by its "
                "embedding scale",
}
# Names of the input-embedding matrix in a checkpoint (Llama/Gemma/Qwen/Mistral, GPT-2, BERT-like), by suffix.
_EMBEDDING_SUFFIXES = ("embed_tokens.weight", "wte.weight", "word_embeddings.weight")
# Config fields that bound a model's sequence length (the smallest present is the limit, as vLLM derives it).
_LENGTH_FIELDS = ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length", "max_sequence_length", "max_seq_length")


def config_max_positions(config: dict) -> int | None:
    """The smallest sequence-length bound a model's config.json names (its text_config's too), or None."""
    configs = [config, config.get("text_config") or {}]
    limits = [value for section in configs for field in _LENGTH_FIELDS
              if isinstance(value := section.get(field), int) and not isinstance(value, bool) and value > 0]  # fmt: skip
    return min(limits) if limits else None


def _checkpoint_files(model_dir: Path) -> list[Path]:
    index = model_dir / "model.safetensors.index.json"
    if index.is_file():
        return sorted({model_dir / name for name in json.loads(index.read_text())["weight_map"].values()})
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{model_dir} holds no *.safetensors checkpoint (expected a Hugging Face model folder).")
    return files


def read_input_embedding_matrix(model_dir: str | Path) -> torch.Tensor:
    """The [vocab, hidden] input-embedding matrix of the model saved in `model_dir` (only that tensor is read)."""
    model_dir = Path(model_dir)
    for suffix in _EMBEDDING_SUFFIXES:
        for path in _checkpoint_files(model_dir):
            with safe_open(str(path), framework="pt") as checkpoint:
                names = [name for name in checkpoint.keys() if name.endswith(suffix)]
                if names:
                    return checkpoint.get_tensor(min(names, key=len))
    raise ValueError(f"no input-embedding matrix (a tensor named *{' / *'.join(_EMBEDDING_SUFFIXES)}) in {model_dir}.")


class InputEmbedder:
    """Tokenizer and input embeddings of a model folder.

    Args:
        model_dir: a Hugging Face model folder (config.json, safetensors, tokenizer), the one vLLM serves.
        dtype: the dtype vLLM runs the model in (the rows are cast to it).
    """

    def __init__(self, model_dir: str | Path, dtype: torch.dtype = torch.float32):
        from transformers import AutoTokenizer  # the serving venv's transformers: only its tokenizer is used

        self.model_dir = Path(model_dir)
        self.config = json.loads((self.model_dir / "config.json").read_text())
        self.tokenizer = AutoTokenizer.from_pretrained(str(self.model_dir))
        self.weight = read_input_embedding_matrix(self.model_dir)
        self.dtype = dtype
        model_type = self.config.get("model_type")
        text_model_type = (self.config.get("text_config") or {}).get("model_type", model_type)
        for name in (model_type, text_model_type):
            if name in UNSERVED_MODEL_TYPES:
                raise ValueError(f"{self.model_dir}: model_type {name!r} is not served with prompt embeddings: "
                                 f"{UNSERVED_MODEL_TYPES[name]}.")  # fmt: skip
        self.scale = self.hidden_size**0.5 if {model_type, text_model_type} & SCALED_EMBEDDING_MODEL_TYPES else None

    def max_positions(self) -> int | None:
        """The longest sequence the model takes by its config (vLLM's default `max_model_len`), or None if it names none."""
        return config_max_positions(self.config)

    @property
    def hidden_size(self) -> int:
        return int(self.weight.shape[1])

    def fingerprint(self) -> dict:
        """The plugin's base-model fingerprint of this model (what an exported prompt was trained on)."""
        architecture = (self.config.get("architectures") or [None])[0]
        return fingerprint_module().embedding_fingerprint(architecture, self.config.get("model_type"), self.weight)

    def token_ids(self, text: str) -> list[int]:
        """The ids the plugin's users get from `tokenizer(text)` (special tokens as the tokenizer adds them)."""
        return list(self.tokenizer(text)["input_ids"])

    def embed(self, token_ids: list[int]) -> torch.Tensor:
        """[len(token_ids), hidden]: what the model's embedding layer gives for these ids."""
        rows = self.weight[torch.as_tensor(token_ids, dtype=torch.long)].to(self.dtype)
        if self.scale is not None:  # in the engine's dtype, as transformers' scaled embedding of a model loaded in it
            rows = rows * torch.tensor(self.scale, dtype=torch.float32).to(self.dtype)
        return rows
