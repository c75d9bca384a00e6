"""softprompt_serve: serve prompts exported by the plugin on vLLM, one engine for many tasks.

A third room beside the plugin and the bench. It runs in the serving venv (scripts/setup_vllm.sh),
whose vLLM pins torch and transformers outside the plugin's range, so it never imports the plugin,
PEFT or the bench: it reads exported prompts (plain PEFT PROMPT_TUNING folders: an adapter's
`vanilla/`, a mixture's `vanilla/<task>/`, or `export_prompt_tuning` output) with safetensors, and
the served model's tokenizer and input-embedding matrix straight from its folder.

    from softprompt_serve import PromptServer
    server = PromptServer("path/to/model", {"movie": "runs/.../adapter/vanilla"}, max_model_len=512)
    request = server.request("Review: great film\\nSentiment:", task="movie")  # {"prompt_embeds": [L, D]}
    vllm.LLM(model="path/to/model", enable_prompt_embeds=True, ...).generate([request], params)

A request's `prompt_embeds` are the task's prompt rows followed by the model's own input
embeddings of the text, in the space the model consumes (Gemma's scaled embeddings included):
exactly what PEFT prompt tuning feeds the model. Deep (per-layer key/value) prompts have no vLLM
input path and are refused when loaded.
"""

from .exported_prompts import ExportedPrompt, load_exported_prompt
from .model_inputs import InputEmbedder
from .requests import PromptServer, encode_prompt_embeds

__all__ = ["ExportedPrompt", "InputEmbedder", "PromptServer", "encode_prompt_embeds", "load_exported_prompt"]
