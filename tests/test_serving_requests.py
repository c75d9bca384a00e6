"""softprompt_serve builds the vLLM inputs PEFT prompt tuning feeds the model, without the plugin or PEFT.

These run in the project venv on tiny models (no vLLM needed): a request's `prompt_embeds`, fed to
the base model as `inputs_embeds`, give the plugin's logits; every refusal names its value.
tests/test_serve_vllm.py runs the same requests through a real vLLM engine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import peft
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

import testing_common as common
from peft_softprompt_ext import DeepPromptTuningConfig, MixturePromptTuningConfig, VocabSampledPromptTuningConfig
from peft_softprompt_ext.fingerprint import base_model_fingerprint
from softprompt_serve import PromptServer

REPO = Path(__file__).resolve().parents[1]
CAUSAL_MODELS = ["gpt2", "llama", "gemma3"]  # gemma3: scaled input embeddings
TEXTS = ["the movie was great", "a terrible film with a boring plot and bad acting"]


def _base(model_name: str, seed: int = 0):
    return common.tiny_model(model_name, seed=seed)[0].eval()


def _saved_prompt(model_name: str, folder: Path, seed: int = 7) -> Path:
    config = VocabSampledPromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=5, seed=seed)
    peft.get_peft_model(_base(model_name), config).save_pretrained(folder)
    return folder


def _saved_mixture(model_name: str, folder: Path) -> Path:
    config = MixturePromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=5, source_prompts=list(common.bank_folders(model_name)),
                                       mixing="task", num_tasks=2, task_names=["movie", "news"])  # fmt: skip
    peft.get_peft_model(_base(model_name), config).save_pretrained(folder)
    return folder


def _logits_from_embeds(model_name: str, embeds: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return _base(model_name)(inputs_embeds=embeds[None].float()).logits[0]


@pytest.mark.parametrize("model_name", CAUSAL_MODELS)
def test_model_fingerprint_from_the_folder_equals_the_plugin_fingerprint(model_name):
    server = PromptServer(common.tiny_model_folder(model_name))
    assert server.embedder.fingerprint() == base_model_fingerprint(_base(model_name))


@pytest.mark.parametrize("model_name", CAUSAL_MODELS)
def test_text_embeddings_are_what_the_model_embedding_layer_gives(model_name):
    server = PromptServer(common.tiny_model_folder(model_name))
    ids = server.embedder.token_ids(TEXTS[1])
    with torch.no_grad():
        expected = _base(model_name).get_input_embeddings()(torch.tensor(ids))
    torch.testing.assert_close(server.request(TEXTS[1])["prompt_embeds"], expected, rtol=0, atol=0)


@pytest.mark.parametrize("model_name", CAUSAL_MODELS)
def test_request_logits_equal_the_plugin_forward(model_name, tmp_path):
    folder = _saved_prompt(model_name, tmp_path / "prompt")
    server = PromptServer(common.tiny_model_folder(model_name))
    assert server.add_adapter(folder, name="movie") == ["movie"]
    plugin = peft.PeftModel.from_pretrained(_base(model_name), folder).eval()
    for text in TEXTS:
        ids = server.embedder.token_ids(text)
        with torch.no_grad():
            expected = plugin(input_ids=torch.tensor([ids])).logits[0]
        common.assert_float32_paths_close(_logits_from_embeds(model_name, server.request(text, "movie")["prompt_embeds"]), expected)


@pytest.mark.parametrize("model_name", CAUSAL_MODELS)
def test_mixture_tasks_are_served_by_name_each_with_its_own_prompt(model_name, tmp_path):
    folder = _saved_mixture(model_name, tmp_path / "mixture")
    server = PromptServer(common.tiny_model_folder(model_name))
    assert server.add_adapter(folder) == ["movie", "news"]
    mixture = peft.PeftModel.from_pretrained(_base(model_name), folder).eval()
    ids = torch.tensor([server.embedder.token_ids(TEXTS[0])] * 2)
    with torch.no_grad():
        expected = mixture(input_ids=ids, task_ids=torch.tensor([0, 1])).logits
    for row, task in enumerate(["movie", "news"]):
        got = _logits_from_embeds(model_name, server.request(TEXTS[0], task)["prompt_embeds"])
        common.assert_float32_paths_close(got, expected[row])


def test_a_request_without_task_is_the_base_model_on_the_same_tokens():
    server = PromptServer(common.tiny_model_folder("llama"))
    ids = server.embedder.token_ids(TEXTS[0])
    with torch.no_grad():
        expected = _base("llama")(input_ids=torch.tensor([ids])).logits[0]
    torch.testing.assert_close(_logits_from_embeds("llama", server.request(TEXTS[0])["prompt_embeds"]), expected, rtol=0, atol=0)


def test_the_serving_helper_imports_neither_peft_nor_the_plugin(tmp_path):
    folder = _saved_prompt("llama", tmp_path / "prompt")
    code = (
        "import sys\n"
        "class _Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'peft':\n"
        "            raise ImportError('peft blocked in this process')\n"
        "sys.meta_path.insert(0, _Block())\n"
        f"sys.path.insert(0, {str(REPO)!r})\n"
        "import torch\n"
        "from softprompt_serve import PromptServer\n"
        f"server = PromptServer({common.tiny_model_folder('llama')!r})\n"
        f"server.add_adapter({str(folder)!r}, name='movie')\n"
        f"torch.save(server.request({TEXTS[0]!r}, 'movie')['prompt_embeds'], {str(tmp_path / 'embeds.pt')!r})\n"
        "assert not any(name.split('.')[0] in ('peft', 'peft_softprompt_ext', 'softprompt_bench') for name in sys.modules), sorted(sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=dict(os.environ, HF_HUB_OFFLINE="1"))
    assert result.returncode == 0, result.stderr[-3000:]
    in_process = PromptServer(common.tiny_model_folder("llama"))
    in_process.add_adapter(folder, name="movie")
    torch.testing.assert_close(torch.load(tmp_path / "embeds.pt"), in_process.request(TEXTS[0], "movie")["prompt_embeds"], rtol=0, atol=0)


def test_choice_requests_share_one_request_per_distinct_prefix():
    server = PromptServer(common.tiny_model_folder("llama"))
    tokenizer = server.embedder.tokenizer
    choices = [" positive", " negative review", " negative"]
    plan = server.choice_requests(TEXTS[0], choices)
    text_len = len(server.embedder.token_ids(TEXTS[0]))
    choice_ids = [tokenizer(choice, add_special_tokens=False)["input_ids"] for choice in choices]
    scored = {(choice, position): token for _, tokens, owners in plan for token, (choice, position) in zip(tokens, owners)}
    assert scored == {(c, p): ids[p] for c, ids in enumerate(choice_ids) for p in range(len(ids))}  # every token scored once
    lengths = sorted(len(request["prompt_embeds"]) for request, _, _ in plan)
    assert lengths[0] == text_len and len(plan) == len({tuple(ids[:p]) for ids in choice_ids for p in range(len(ids))})


# --------------------------------------------------------------------------- refusals
def test_unknown_task_is_refused_naming_it_and_the_known_tasks(tmp_path):
    server = PromptServer(common.tiny_model_folder("llama"))
    server.add_adapter(_saved_prompt("llama", tmp_path / "prompt"), name="movie")
    with pytest.raises(KeyError, match=r"unknown task 'sports'.*\['movie'\]"):
        server.request(TEXTS[0], "sports")


def test_text_overflowing_max_model_len_with_the_prompt_is_refused(tmp_path):
    server = PromptServer(common.tiny_model_folder("llama"), max_model_len=12)
    server.add_adapter(_saved_prompt("llama", tmp_path / "prompt"), name="movie")
    length = len(server.embedder.token_ids(TEXTS[1]))
    with pytest.raises(ValueError, match=rf"5 prompt rows \+ {length} text tokens \+ 4 new tokens = {length + 9} > max_model_len 12"):
        server.request(TEXTS[1], "movie", max_tokens=4)


def test_prompt_from_another_base_model_is_refused_by_fingerprint(tmp_path):
    other = tmp_path / "other-model"
    _base("llama", seed=5).save_pretrained(other)
    common.tiny_tokenizer().save_pretrained(other)
    server = PromptServer(other)
    with pytest.raises(ValueError, match=r"trained on another base model: embedding_digest"):
        server.add_adapter(_saved_prompt("llama", tmp_path / "prompt"), name="movie")


def test_prompt_of_another_width_is_refused_naming_both_shapes(tmp_path):
    folder = _saved_prompt("llama", tmp_path / "prompt") / "vanilla"
    weights = folder / "adapter_model.safetensors"
    with safe_open(str(weights), framework="pt") as handle:
        metadata, rows = handle.metadata(), handle.get_tensor("prompt_embeddings")
    save_file({"prompt_embeddings": rows[:, :16].contiguous()}, str(weights), metadata=metadata)
    server = PromptServer(common.tiny_model_folder("llama"))
    with pytest.raises(ValueError, match=r"has shape \(5, 16\); the served model needs \[num_virtual_tokens, 32\]"):
        server.add_prompt("movie", folder)


def test_prompt_without_fingerprint_is_refused_unless_mismatch_is_allowed(tmp_path):
    folder = _saved_prompt("llama", tmp_path / "prompt") / "vanilla"
    weights = folder / "adapter_model.safetensors"
    with safe_open(str(weights), framework="pt") as handle:
        rows = handle.get_tensor("prompt_embeddings")
    save_file({"prompt_embeddings": rows}, str(weights), metadata={"format": "pt"})  # as plain PEFT writes it
    with pytest.raises(ValueError, match=r"has no valid base_model_fingerprint"):
        PromptServer(common.tiny_model_folder("llama")).add_prompt("movie", folder)
    PromptServer(common.tiny_model_folder("llama"), allow_base_model_mismatch=True).add_prompt("movie", folder)


def test_deep_prompt_export_is_refused_saying_vllm_takes_input_embeddings_only(tmp_path):
    config = DeepPromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=5, deep_init="random", seed=1)
    peft.get_peft_model(_base("llama"), config).save_pretrained(tmp_path / "deep")
    with pytest.raises(ValueError, match=r"'PREFIX_TUNING' adapter \(a deep per-layer key/value prompt"):
        PromptServer(common.tiny_model_folder("llama")).add_adapter(tmp_path / "deep", name="deep")


def test_plugin_adapter_roots_that_cannot_be_served_are_refused_saying_why(tmp_path):
    """A deep adapter's own folder or an attention mixture was refused as "a 'DEEP_PROMPT_TUNING' adapter; serving
    needs a PROMPT_TUNING export", without the reason; a single prompt's own folder without pointing to its vanilla/."""
    server = PromptServer(common.tiny_model_folder("llama"))
    config = DeepPromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=5, deep_init="random", seed=1)
    peft.get_peft_model(_base("llama"), config).save_pretrained(tmp_path / "deep")
    with pytest.raises(ValueError, match=r"'DEEP_PROMPT_TUNING' adapter \(a deep per-layer key/value prompt: vLLM takes input embeddings only"):
        server.add_prompt("deep", tmp_path / "deep")
    config = MixturePromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=5, source_prompts=list(common.bank_folders("llama")),
                                       mixing="attention", attention_hidden=8)  # fmt: skip
    peft.get_peft_model(_base("llama"), config).save_pretrained(tmp_path / "attention")
    with pytest.raises(ValueError, match=r"'MIXTURE_PROMPT_TUNING' adapter \(a mixture: .*depends on the input"):
        server.add_adapter(tmp_path / "attention", name="mix")
    with pytest.raises(ValueError, match=r"'VOCAB_SAMPLED_PROMPT_TUNING' adapter \(a plugin save: .*vanilla/"):
        server.add_prompt("movie", _saved_prompt("llama", tmp_path / "prompt"))


@pytest.mark.parametrize("max_tokens", [0, -100, True, 2.5])
def test_a_max_tokens_that_is_not_a_positive_count_is_refused(tmp_path, max_tokens):
    server = PromptServer(common.tiny_model_folder("llama"), max_model_len=8)
    server.add_adapter(_saved_prompt("llama", tmp_path / "prompt"), name="movie")
    with pytest.raises(ValueError, match=rf"max_tokens={max_tokens!r}; expected an integer >= 1"):
        server.request("the", "movie", max_tokens=max_tokens)


def test_boolean_token_ids_are_refused():
    with pytest.raises(ValueError, match=r"expected a text or a list of token ids"):
        PromptServer(common.tiny_model_folder("llama")).request([True, False])


def test_without_max_model_len_the_models_own_length_is_the_limit(tmp_path):
    """vLLM's default max_model_len is the model's own (GPT-2: n_positions); requests were checked against none."""
    server = PromptServer(common.tiny_model_folder("gpt2"))
    assert server.max_model_len == 256  # the tiny GPT-2's n_positions
    server.add_adapter(_saved_prompt("gpt2", tmp_path / "prompt"), name="movie")
    assert server.request(list(range(6, 6 + 250)), "movie", max_tokens=1)["prompt_embeds"].shape[0] == 255
    with pytest.raises(ValueError, match=r"5 prompt rows \+ 251 text tokens \+ 1 new tokens = 257 > max_model_len 256"):
        server.request(list(range(6, 6 + 251)), "movie", max_tokens=1)


def test_the_body_command_checks_against_the_models_own_length(tmp_path):
    """`serve_vllm.py body` assumed 512 positions whatever the model: it printed a body the model cannot run."""
    prompt = _saved_prompt("gpt2", tmp_path / "prompt")
    text = " ".join(["the movie was great"] * 80)
    command = [sys.executable, str(REPO / "recipes" / "serve_vllm.py"), "body", "--model", common.tiny_model_folder("gpt2"),
               "--adapter", f"movie={prompt}", "--task", "movie", "--text", text]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=dict(os.environ, HF_HUB_OFFLINE="1"))
    assert result.returncode != 0 and "> max_model_len 256" in result.stderr, result.stderr[-2000:]


def test_folder_without_an_exported_prompt_is_refused_naming_it(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"holds no exported prompt"):
        PromptServer(common.tiny_model_folder("llama")).add_adapter(tmp_path, name="x")


def test_fingerprint_rules_load_as_a_standalone_file():
    # softprompt_serve loads peft_softprompt_ext/fingerprint.py by path: it must keep needing only stdlib + torch.
    source = (REPO / "peft_softprompt_ext" / "fingerprint.py").read_text()
    imports = {line.split()[1].split(".")[0] for line in source.splitlines() if line.startswith(("import ", "from "))}
    assert imports - {"torch"} <= set(sys.stdlib_module_names) | {"__future__"}, imports


def test_scaled_text_embeddings_of_a_bf16_checkpoint_are_scaled_in_the_engine_dtype(tmp_path):
    """Gemma's sqrt(hidden) scale was applied in the checkpoint's dtype (bf16: sqrt(48) 6.928 -> 6.9375), then cast to
    the float32 engine: 4.7e-3 relative off what the float32 model's embedding layer gives."""
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    torch.manual_seed(0)
    config = Gemma3TextConfig(vocab_size=common.VOCAB_SIZE, hidden_size=48, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                              num_key_value_heads=1, head_dim=24, max_position_embeddings=256, pad_token_id=0)  # fmt: skip
    Gemma3ForCausalLM(config).to(torch.bfloat16).save_pretrained(tmp_path)
    common.tiny_tokenizer().save_pretrained(tmp_path)
    server = PromptServer(tmp_path)
    ids = server.embedder.token_ids(TEXTS[1])
    with torch.no_grad():
        expected = Gemma3ForCausalLM.from_pretrained(tmp_path, dtype=torch.float32).get_input_embeddings()(torch.tensor(ids))
    torch.testing.assert_close(server.request(TEXTS[1])["prompt_embeds"], expected, rtol=0, atol=0)


def test_an_empty_request_is_refused_before_any_engine():
    """No prompt and no text: vLLM refuses the empty prompt inside generate, after the engine's start, losing every
    other row's answer."""
    server = PromptServer(common.tiny_model_folder("llama"))
    for empty in ("", []):
        with pytest.raises(ValueError, match=r"an empty request: no prompt rows \(task None\) and no text tokens"):
            server.request(empty)


def test_choice_requests_split_past_vllms_cap(monkeypatch):
    """Found 2026-12-06 on vLLM 0.32: a request scores at most 128 ids (`logprob_token_ids`), and more failed inside
    the engine after its start, every answer lost."""
    import softprompt_serve.requests as requests

    monkeypatch.setattr(requests, "MAX_SCORED_TOKENS", 2)
    server = PromptServer(common.tiny_model_folder("llama"))
    tokenizer = server.embedder.tokenizer
    choices = [" positive", " negative", " review", " story", " film", " positive story", " positive"]
    choice_ids = [tokenizer(choice, add_special_tokens=False)["input_ids"] for choice in choices]
    plan = server.choice_requests(TEXTS[0], choices)
    text_len = len(server.embedder.token_ids(TEXTS[0]))
    first_requests = [(tokens, owners) for request, tokens, owners in plan if len(request["prompt_embeds"]) == text_len]
    assert all(len(tokens) <= 2 for _, tokens, _ in plan)
    assert len(first_requests) == -(-len(choices) // 2)  # ceil: every choice's first token, 2 per request
    scored = [(owner, token) for _, tokens, owners in plan for token, owner in zip(tokens, owners)]
    assert sorted(scored) == sorted(((c, p), ids[p]) for c, ids in enumerate(choice_ids) for p in range(len(ids)))  # each once


@pytest.mark.parametrize("choices", [[], "positive", None, [5], ["good", ""]])
def test_choices_that_are_not_a_list_of_texts_are_refused_naming_them(choices):
    server = PromptServer(common.tiny_model_folder("llama"))
    with pytest.raises(ValueError, match=r"choices="):
        server.choice_requests(TEXTS[0], choices)


def test_a_task_name_served_twice_is_refused_naming_both_folders(tmp_path):
    server = PromptServer(common.tiny_model_folder("llama"))
    server.add_adapter(_saved_prompt("llama", tmp_path / "a"), name="movie")
    before = server.prompt_rows("movie").clone()
    with pytest.raises(ValueError, match=r"task 'movie' is served already.*/a/.*/b/"):
        server.add_adapter(_saved_prompt("llama", tmp_path / "b", seed=8), name="movie")
    torch.testing.assert_close(server.prompt_rows("movie"), before, rtol=0, atol=0)
    mixture = _saved_mixture("llama", tmp_path / "mix")  # tasks "movie" and "news": nothing of it is added
    with pytest.raises(ValueError, match=r"task 'movie' is served already"):
        server.add_adapter(mixture, name="ignored")
    assert sorted(server.prompts) == ["movie"]


@pytest.mark.parametrize("max_model_len", [0, -5, 2.5])
def test_a_max_model_len_that_is_not_a_positive_count_is_refused(max_model_len):
    with pytest.raises(ValueError, match=rf"max_model_len={max_model_len!r}"):
        PromptServer(common.tiny_model_folder("llama"), max_model_len=max_model_len)


def test_an_openai_body_takes_max_tokens_none_as_vllm_does(tmp_path):
    """vLLM's /v1/completions takes max_tokens null (up to the context length): the body builder refused it."""
    server = PromptServer(common.tiny_model_folder("llama"), max_model_len=64)
    server.add_adapter(_saved_prompt("llama", tmp_path / "prompt"), name="movie")
    assert server.openai_body(TEXTS[0], "movie", model="m", max_tokens=None)["max_tokens"] is None


def test_the_generate_command_refuses_a_bad_row_before_the_engine_naming_it(tmp_path):
    """An empty text or empty choices failed inside vLLM after the engine's start: no output, every answer lost."""
    sys.path.insert(0, str(REPO / "recipes"))
    import serve_vllm

    for bad, expected in (({"text": ""}, r"row 1: .*empty request"), ({"text": "a film", "choices": []}, r"row 1: .*choices=\[\]")):
        rows = tmp_path / "rows.jsonl"
        rows.write_text(json.dumps({"text": "a fine film"}) + "\n" + json.dumps(bad) + "\n")
        with pytest.raises(SystemExit, match=expected):
            serve_vllm.main(["generate", "--model", common.tiny_model_folder("llama"), "--input", str(rows), "--output", str(tmp_path / "out.jsonl")])


def test_a_scaled_embedding_model_beyond_gemma3_gets_its_scale_and_unhandled_ones_are_refused(tmp_path):
    """Found 2026-12-06 (a review): VaultGemma scales its input embeddings by sqrt(hidden) as Gemma does, but only the
    Gemma types were listed, so its text rows went to vLLM unscaled, without a word; model types whose inputs also
    depend on token ids (per-layer inputs: gemma3n, gemma4) or use another scale (minicpm3) were served as plain ones."""
    import transformers

    config = transformers.VaultGemmaConfig(vocab_size=common.VOCAB_SIZE, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                           num_attention_heads=2, num_key_value_heads=1, head_dim=16)  # fmt: skip
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config).eval()
    model.save_pretrained(tmp_path / "vault")
    common.tiny_tokenizer().save_pretrained(tmp_path / "vault")
    server = PromptServer(tmp_path / "vault")
    ids = server.embedder.token_ids(TEXTS[1])
    if hasattr(model.get_input_embeddings(), "embed_scale"):  # (transformers 5.0 scales in VaultGemma's forward instead)
        with torch.no_grad():
            expected = model.get_input_embeddings()(torch.tensor(ids))
        torch.testing.assert_close(server.request(ids)["prompt_embeds"], expected, rtol=0, atol=0)
    for model_type in ("gemma3n", "gemma4_text", "minicpm3"):
        folder = tmp_path / model_type
        folder.mkdir()
        for name in ("model.safetensors", "tokenizer.json", "tokenizer_config.json"):
            if (tmp_path / "vault" / name).exists():
                (folder / name).write_bytes((tmp_path / "vault" / name).read_bytes())
        saved = json.loads((tmp_path / "vault" / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps({**saved, "model_type": model_type}))
        with pytest.raises(ValueError, match=f"model_type '{model_type}'.*not served"):
            PromptServer(folder)


def test_an_export_with_a_corrupt_fingerprint_or_no_prompt_tensor_is_refused_naming_it(tmp_path):
    """Found 2026-12-06 (a review): corrupt fingerprint metadata raised a bare JSONDecodeError, also with
    allow_base_model_mismatch=True; weights without the prompt tensor a raw safetensors error."""
    from safetensors.torch import load_file, save_file

    folder = _saved_prompt("llama", tmp_path / "saved") / "vanilla"
    weights = folder / "adapter_model.safetensors"
    rows = load_file(weights)["prompt_embeddings"]
    save_file({"prompt_embeddings": rows}, weights, metadata={"peft_softprompt_ext.base_model_fingerprint": "{not json"})
    with pytest.raises(ValueError, match=r"task 'x'.*has no valid base_model_fingerprint \(it is '\{not json'"):
        PromptServer(common.tiny_model_folder("llama"), {"x": folder})
    assert PromptServer(common.tiny_model_folder("llama"), {"x": folder}, allow_base_model_mismatch=True).prompts["x"].num_virtual_tokens == 5
    save_file({"other": rows}, weights)
    with pytest.raises(ValueError, match=r"task 'x': .*adapter_model.safetensors holds no readable 'prompt_embeddings' tensor"):
        PromptServer(common.tiny_model_folder("llama"), {"x": folder})


def test_models_whose_prompt_embeds_vllm_scales_otherwise_than_transformers_are_refused(tmp_path):
    """Found 2026-12-07 by a probe (vLLM's source; no engine runs them here): vLLM multiplies every prompt_embeds row of
    Falcon-H1 by embedding_multiplier, where transformers (and the plugin) scale only the embedding of the text's ids (a
    tiny Falcon-H1 with the real 5.66: 4.25 off, another top token); HRM-Text the other way round. Both are refused."""
    source = tmp_path / "llama"
    _base("llama").save_pretrained(source)
    common.tiny_tokenizer().save_pretrained(source)
    for model_type in ("falcon_h1", "hrm_text"):
        folder = tmp_path / model_type
        folder.mkdir()
        for path in source.iterdir():
            if path.name != "config.json":
                (folder / path.name).write_bytes(path.read_bytes())
        (folder / "config.json").write_text(json.dumps({**json.loads((source / "config.json").read_text()), "model_type": model_type}))
        with pytest.raises(ValueError, match=f"model_type '{model_type}' is not served with prompt embeddings: vLLM"):
            PromptServer(folder)


@pytest.mark.parametrize("edit,message", [
    ("nan", r"holds 1 value\(s\) that are NaN or infinite"),
    ("inf", r"holds 1 value\(s\) that are NaN or infinite"),
    ("rows", r"num_virtual_tokens=5 but its 'prompt_embeddings' has 10 rows"),
    ("int", r"'prompt_embeddings' has dtype torch.int64; expected a float tensor"),
])  # fmt: skip
def test_an_export_whose_rows_are_broken_is_refused_naming_it(tmp_path, edit, message):
    """Found 2026-12-07 by a probe: the serving room checked an export's width and fingerprint only; a NaN row was served
    (every request of the task got non-finite logits), 10 rows under num_virtual_tokens=5 went out as 10, integer rows
    were cast. serve_prompts and the plugin's loads refuse all three."""
    folder = _saved_prompt("llama", tmp_path / "prompt") / "vanilla"
    weights = folder / "adapter_model.safetensors"
    with safe_open(str(weights), framework="pt") as handle:
        metadata, rows = handle.metadata(), handle.get_tensor("prompt_embeddings")
    rows = {"nan": lambda: rows.index_put((torch.tensor([0]), torch.tensor([0])), torch.tensor(float("nan"))),
            "inf": lambda: rows.index_put((torch.tensor([1]), torch.tensor([2])), torch.tensor(float("inf"))),
            "rows": lambda: torch.cat((rows, rows)), "int": lambda: rows.long()}[edit]()  # fmt: skip
    save_file({"prompt_embeddings": rows.contiguous()}, str(weights), metadata=metadata)
    with pytest.raises(ValueError, match=message):
        PromptServer(common.tiny_model_folder("llama"), allow_base_model_mismatch=edit == "int").add_prompt("movie", folder)


def test_the_generate_and_body_commands_name_bad_rows_and_files(tmp_path, capsys):
    """Found 2026-12-07 by a probe: a row that is not an object, a task that is a list, a line that is not JSON, an
    adapter config that is not a JSON object and `body --task` of an unknown task failed with bare Python errors
    (AttributeError, TypeError, JSONDecodeError, KeyError) naming no row, line or file."""
    sys.path.insert(0, str(REPO / "recipes"))
    import serve_vllm

    adapter = _saved_prompt("llama", tmp_path / "prompt")
    command = ["--model", common.tiny_model_folder("llama"), "--adapter", f"movie={adapter}"]
    rows = tmp_path / "rows.jsonl"
    for text, expected in (('["a film"]', r"rows.jsonl line 2: expected a JSON object"),
                           ('{"text": "a film", "task": ["movie"]}', r"rows.jsonl row 1: task \['movie'\] is not a task name"),
                           ('{"text": "a film",', r"rows.jsonl line 2 is not JSON")):  # fmt: skip
        rows.write_text(json.dumps({"text": "a fine film", "task": "movie"}) + "\n" + text + "\n")
        with pytest.raises(SystemExit, match=expected):
            serve_vllm.main(["generate", *command, "--input", str(rows), "--output", str(tmp_path / "out.jsonl")])
    with pytest.raises(SystemExit, match=r"unknown task 'sports'"):
        serve_vllm.main(["body", *command, "--text", "a film", "--task", "sports"])
    config = adapter / "vanilla" / "adapter_config.json"
    for content in ("{not json", "[1, 2]"):
        config.write_text(content)
        with pytest.raises(ValueError, match=r"adapter_config.json is not a JSON object"):
            PromptServer(common.tiny_model_folder("llama")).add_prompt("movie", adapter / "vanilla")
