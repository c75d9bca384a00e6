"""vLLM requests that carry a task's soft prompt: `prompt_embeds` = prompt rows ⊕ the text's input embeddings.

One `PromptServer` holds every task's prompt (loaded and checked once) for one served model; each
request names its task, so a batch can mix tasks on one engine. A request without a task gets no
prompt (the text's embeddings alone), which equals the base model on the same tokens.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

import torch

from .exported_prompts import ExportedPrompt, load_exported_prompt, task_folders
from .model_inputs import InputEmbedder


# vLLM 0.32 scores at most this many token ids per request (`logprob_token_ids`, MAX_LOGPROB_TOKEN_IDS in
# vllm/sampling_params.py; a longer list fails inside the engine): more choices at one prefix take more requests.
MAX_SCORED_TOKENS = 128


def encode_prompt_embeds(prompt_embeds: torch.Tensor) -> str:
    """The base64 `torch.save` bytes vLLM's OpenAI-compatible server takes as `prompt_embeds`."""
    buffer = io.BytesIO()
    torch.save(prompt_embeds.contiguous(), buffer)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


class PromptServer:
    """Every task's exported prompt for one served model, turned into vLLM requests.

    Args:
        model_dir: the model folder vLLM serves (the prompts must have been trained on it: fingerprint).
        prompts: task name -> exported prompt folder (`vanilla/`, `vanilla/<task>/`, or
            `export_prompt_tuning` output). `add_adapter` adds a plugin save's tasks by name.
        max_model_len: the engine's `max_model_len`; a request whose prompt + text + `max_tokens`
            would not fit is refused here, naming the lengths, instead of failing inside the engine.
            None: the model's own length from its config (what vLLM uses by default).
        dtype: the engine's dtype (prompt_embeds are sent in it).
        allow_base_model_mismatch: skip the fingerprint check (e.g. a prompt moved by projection).
    """

    def __init__(self, model_dir: str | Path, prompts: dict[str, str | Path] | None = None, max_model_len: int | None = None,
                 dtype: torch.dtype = torch.float32, allow_base_model_mismatch: bool = False):  # fmt: skip
        if max_model_len is not None and (not isinstance(max_model_len, int) or isinstance(max_model_len, bool) or max_model_len < 1):
            raise ValueError(f"max_model_len={max_model_len!r}; expected a positive integer (the engine's), or None for the model's own.")
        self.embedder = InputEmbedder(model_dir, dtype=dtype)
        self.max_model_len = max_model_len if max_model_len is not None else self.embedder.max_positions()
        self.allow_base_model_mismatch = allow_base_model_mismatch
        self._fingerprint = self.embedder.fingerprint()
        self.prompts: dict[str, ExportedPrompt] = {}
        for task, folder in (prompts or {}).items():
            self.add_prompt(task, folder)

    def add_prompt(self, task: str, folder: str | Path) -> None:
        """Load one exported prompt under the name `task` (checked against the served model)."""
        self._add({task: folder})

    def _refuse_served_name(self, task, folder) -> None:
        if not isinstance(task, str) or not task:
            raise ValueError(f"task name {task!r} must be a non-empty string.")
        if task in self.prompts:
            raise ValueError(f"task {task!r} is served already, from {self.prompts[task].source}; {folder} would replace it. "
                             "Give each prompt its own name (a mixture's tasks are named by the mixture).")  # fmt: skip

    def add_adapter(self, adapter_dir: str | Path, name: str | None = None) -> list[str]:
        """Add every task of a plugin save (its `vanilla/` copies); a single prompt is named `name`. Returns the names.
        All or nothing: a task name served already is refused before any of the save's tasks is added."""
        folders = task_folders(adapter_dir)
        if list(folders) == ["default"]:
            folders = {name or Path(adapter_dir).name: folders["default"]}
        self._add(folders)
        return list(folders)

    def _add(self, folders: dict) -> None:
        """Load every task's folder, then serve them all (nothing is added if one name or load is refused)."""
        for task, folder in folders.items():
            self._refuse_served_name(task, folder)
        loaded = {task: load_exported_prompt(folder, task, self._fingerprint, self.allow_base_model_mismatch) for task, folder in folders.items()}
        self.prompts.update(loaded)

    def prompt_rows(self, task: str | None) -> torch.Tensor:
        """[P, hidden] rows of `task` ([0, hidden] for no task)."""
        if task is None:
            return self.embedder.weight.new_zeros((0, self.embedder.hidden_size))
        if task not in self.prompts:
            raise KeyError(f"unknown task {task!r}: this server holds {sorted(self.prompts)} (or pass no task for no prompt).")
        return self.prompts[task].rows

    def prompt_embeds(self, token_ids: list[int], task: str | None = None, max_tokens: int = 1) -> torch.Tensor:
        """[P + len(token_ids), hidden]: the task's prompt rows, then the tokens' input embeddings."""
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
            raise ValueError(f"max_tokens={max_tokens!r}; expected an integer >= 1 (vLLM generates at least one token).")
        rows = self.prompt_rows(task)
        length = rows.shape[0] + len(token_ids)
        if length == 0:
            raise ValueError(f"an empty request: no prompt rows (task {task!r}) and no text tokens; vLLM refuses an empty prompt.")
        if self.max_model_len is not None and length + max_tokens > self.max_model_len:
            raise ValueError(f"task {task!r}: {rows.shape[0]} prompt rows + {len(token_ids)} text tokens + {max_tokens} new tokens "
                             f"= {length + max_tokens} > max_model_len {self.max_model_len}; shorten the text or raise max_model_len.")  # fmt: skip
        return torch.cat([rows.to(self.embedder.dtype), self.embedder.embed(token_ids)])

    def token_ids(self, text: str | list[int]) -> list[int]:
        """`text`'s ids as `tokenizer(text)` gives them, or `text` itself when it already is a list of ids."""
        if isinstance(text, str):
            return self.embedder.token_ids(text)
        if not (isinstance(text, (list, tuple)) and all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < self.embedder.weight.shape[0] for i in text)):
            raise ValueError(f"expected a text or a list of token ids in [0, {self.embedder.weight.shape[0]}), got {text!r:.200}")
        return list(text)

    def request(self, text: str | list[int], task: str | None = None, max_tokens: int = 1) -> dict:
        """A vLLM `EmbedsPrompt` for `text` (or its token ids) under `task`'s prompt (`max_tokens`: for the length check)."""
        return {"prompt_embeds": self.prompt_embeds(self.token_ids(text), task, max_tokens)}

    def openai_body(self, text: str, task: str | None, model: str, **completion_args) -> dict:
        """A JSON body for the server's /v1/completions: `prompt_embeds` as base64 `torch.save` bytes."""
        max_tokens = completion_args.get("max_tokens", 16)  # None: up to the context length (at least one token)
        embeds = self.request(text, task, 1 if max_tokens is None else max_tokens)["prompt_embeds"]
        return {"model": model, "prompt_embeds": encode_prompt_embeds(embeds), **completion_args}

    def choice_requests(self, text: str | list[int], choices: list[str], task: str | None = None) -> list[tuple[dict, list[int], list[tuple[int, int]]]]:
        """Requests that score each choice's tokens after `text` (rank classification).

        Returns (request, token ids to score at its next position, [(choice, token index)] they
        belong to): one request per distinct prefix of the choices' tokens, so one-token choices
        share a single request, and another request with the same prefix for every further
        MAX_SCORED_TOKENS ids (vLLM's cap; the ids go to vLLM as they are: `logprob_token_ids`).
        A choice's score is the sum of its tokens' log-probabilities.
        """
        if not (isinstance(choices, (list, tuple)) and choices and all(isinstance(choice, str) and choice for choice in choices)):
            raise ValueError(f"choices={choices!r:.200}; expected a non-empty list of non-empty strings (the answers to score).")
        text_ids = self.token_ids(text)
        choice_ids = [self.embedder.tokenizer(choice, add_special_tokens=False)["input_ids"] for choice in choices]
        for choice, ids in zip(choices, choice_ids):
            if not ids:
                raise ValueError(f"choice {choice!r} tokenizes to no tokens.")
        by_prefix: dict[tuple[int, ...], tuple[list[int], list[tuple[int, int]]]] = {}
        for choice, ids in enumerate(choice_ids):
            for position, token in enumerate(ids):
                scored, owners = by_prefix.setdefault(tuple(ids[:position]), ([], []))
                scored.append(token)
                owners.append((choice, position))
        cap = MAX_SCORED_TOKENS
        return [({"prompt_embeds": self.prompt_embeds(text_ids + list(prefix), task)}, scored[start : start + cap], owners[start : start + cap])
                for prefix, (scored, owners) in by_prefix.items() for start in range(0, len(scored), cap)]  # fmt: skip
