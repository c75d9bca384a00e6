"""Prompts served by a real vLLM engine equal this plugin in transformers (SmolLM2-135M, movie sentiment).

One engine serves, in one batch: a trained movie-sentiment prompt, a 2-task mixture exported per
task (`mixing="one_hot"`: the trained prompt and another), and requests with no task. Greedy tokens must equal the plugin's `generate` request by
request, and rank classification through vLLM's log-probabilities must give the recipe's predictions.
The engine runs in the serving venv (scripts/setup_vllm.sh); without it these tests skip, saying so.
"""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path

import peft
import pytest
import torch

from peft_softprompt_ext import MixturePromptTuningConfig, VocabSampledPromptTuningConfig
from softprompt_bench.classification import causal_examples, collate, label_token_ids, prompt_ids, rank_classify

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("vllm_engine")]  # one engine start per run

REPO = Path(__file__).resolve().parents[1]
VLLM_PYTHON = REPO / ".venv-vllm" / "bin" / "python"
MAX_NEW_TOKENS, GENERATION_ROWS, CLASSIFIED_ROWS, MAX_TEXT_TOKENS, MANY_CHOICES = 16, 6, 48, 64, 150


def _train_movie_prompt(model, tokenizer, model_dir: str, folder: str, task, template: str, words: list[str], steps: int = 4) -> None:
    """The recipe's movie prompt (top_frequent init, P=20, lr 0.03), trained a few steps on its train split."""
    config = VocabSampledPromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=20, vocab_sampling="top_frequent",
                                            tokenizer_name_or_path=model_dir, seed=0)  # fmt: skip
    peft_model = peft.get_peft_model(model, config)
    optimizer = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=0.03, weight_decay=0.0)
    train = task["train"].select(range(8 * steps))
    examples = causal_examples(tokenizer, train["text"], train["label"], template, label_token_ids(tokenizer, words), MAX_TEXT_TOKENS)
    for step in range(steps):
        batch = collate(examples[8 * step : 8 * step + 8], tokenizer.pad_token_id or 0)
        loss = peft_model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    peft_model.save_pretrained(folder)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    if not (VLLM_PYTHON.parents[1] / ".softprompt-serve-installed").exists():  # written by setup_vllm.sh once complete
        pytest.skip(f"no complete serving venv at {VLLM_PYTHON.parents[1]}: `bash scripts/setup_vllm.sh` builds it (~3 min, 3.4 GB)")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from softprompt_bench.data import label_words, load_task, prompt_template
    from softprompt_bench.embedded_models import MissingModelPackageError, resolve_model

    try:
        model_dir = resolve_model("smollm2-135m")
    except MissingModelPackageError as error:
        pytest.skip(str(error))
    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    task, template, words = load_task("movie_sentiment"), prompt_template("movie_sentiment"), label_words("movie_sentiment")
    root = tmp_path_factory.mktemp("served")
    movie, other, mixture = str(root / "movie"), str(root / "other"), str(root / "mixture")
    _train_movie_prompt(copy.deepcopy(base), tokenizer, model_dir, movie, task, template, words)
    other_config = VocabSampledPromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=20, vocab_sampling="uniform", seed=1)
    peft.get_peft_model(copy.deepcopy(base), other_config).save_pretrained(other)
    mixture_config = MixturePromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=20, source_prompts=[movie, other], num_tasks=2,
                                               mixing="one_hot", task_names=["sentiment", "other"])  # fmt: skip
    peft.get_peft_model(copy.deepcopy(base), mixture_config).save_pretrained(mixture)

    validation = task["validation"]
    texts = [tokenizer.decode(prompt_ids(tokenizer, text, template, MAX_TEXT_TOKENS), skip_special_tokens=True)
             for text in validation["text"][:GENERATION_ROWS]]  # fmt: skip
    rows = [{"task": name, "text": text} for text in texts for name in ("movie", "sentiment", "other", None)]
    rows += [{"task": "movie", "token_ids": prompt_ids(tokenizer, text, template, MAX_TEXT_TOKENS), "choices": words, "label": label}
             for text, label in zip(validation["text"][:CLASSIFIED_ROWS], validation["label"][:CLASSIFIED_ROWS])]  # the recipe's ids
    many = sorted({" " + word for text in validation["text"][:40] for word in text.split() if word.isalpha()})[:MANY_CHOICES]
    rows.append({"task": "movie", "text": texts[0], "choices": many})  # past vLLM's 128 scored ids per request
    requests, answers = root / "requests.jsonl", root / "answers.jsonl"
    requests.write_text("".join(json.dumps(row) + "\n" for row in rows))
    command = [str(VLLM_PYTHON), str(REPO / "recipes" / "serve_vllm.py"), "generate", "--model", model_dir, "--adapter", f"movie={movie}",
               "--adapter", f"mixture={mixture}", "--input", str(requests), "--output", str(answers), "--max-tokens", str(MAX_NEW_TOKENS)]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    outputs = [json.loads(line) for line in answers.read_text().splitlines()]
    return {"base": base, "tokenizer": tokenizer, "movie": movie, "mixture": mixture, "rows": rows, "outputs": outputs, "words": words,
            "template": template}  # fmt: skip


def _until_eos(tokens: list[int], eos: int) -> list[int]:
    return tokens[: tokens.index(eos)] if eos in tokens else tokens


def _plugin_tokens(model, tokenizer, texts: list[str], task_ids: list[int] | None = None) -> list[list[int]]:
    """Greedy tokens of the plugin's generate, one left-padded batch (as a user batches)."""
    tokenizer.padding_side = "left"
    batch = tokenizer(texts, return_tensors="pt", padding=True)
    extra = {"task_ids": torch.tensor(task_ids)} if task_ids is not None else {}
    with torch.no_grad():
        output = model.generate(**batch, max_new_tokens=MAX_NEW_TOKENS, do_sample=False, pad_token_id=tokenizer.pad_token_id, **extra)
    return [_until_eos(row[batch["input_ids"].shape[1] :].tolist(), tokenizer.eos_token_id) for row in output]


def _vllm_tokens(served, task) -> list[list[int]]:
    return [_until_eos(out["output_token_ids"], served["tokenizer"].eos_token_id) for out in served["outputs"] if "choices" not in out and out["task"] == task]


def _texts(served, task) -> list[str]:
    return [row["text"] for row in served["rows"] if "choices" not in row and row["task"] == task]


@pytest.mark.ci
def test_vllm_greedy_tokens_equal_the_plugin_generate_for_a_trained_prompt(served):
    plugin = peft.PeftModel.from_pretrained(copy.deepcopy(served["base"]), served["movie"]).eval()
    expected = _plugin_tokens(plugin, served["tokenizer"], _texts(served, "movie"))
    assert _vllm_tokens(served, "movie") == expected
    assert sum(len(tokens) for tokens in expected) >= GENERATION_ROWS * 4  # real continuations, not EOS at once


def test_vllm_mixed_task_batch_equals_the_plugin_mixture_row_by_row(served):
    mixture = peft.PeftModel.from_pretrained(copy.deepcopy(served["base"]), served["mixture"]).eval()
    texts = _texts(served, "sentiment") + _texts(served, "other")
    task_ids = [0] * GENERATION_ROWS + [1] * GENERATION_ROWS
    order = [index for pair in zip(range(GENERATION_ROWS), range(GENERATION_ROWS, 2 * GENERATION_ROWS)) for index in pair]  # interleaved
    expected = _plugin_tokens(mixture, served["tokenizer"], [texts[i] for i in order], [task_ids[i] for i in order])
    by_index = dict(zip(order, expected))
    assert _vllm_tokens(served, "sentiment") + _vllm_tokens(served, "other") == [by_index[i] for i in range(2 * GENERATION_ROWS)]
    assert _vllm_tokens(served, "sentiment") != _vllm_tokens(served, "other")  # the two tasks really differ


def test_vllm_requests_without_a_task_equal_the_base_model(served):
    assert _vllm_tokens(served, None) == _plugin_tokens(served["base"], served["tokenizer"], _texts(served, None))


def test_vllm_scores_many_choices_as_the_plugin_does(served):
    """More distinct first tokens than vLLM scores in one request (128), multi-token choices sharing first tokens:
    each choice's score is the sum of its tokens' log-probabilities after the text, as the plugin gives them."""
    tokenizer = served["tokenizer"]
    row = next(out for out in served["outputs"] if len(out.get("choices", [])) > 128)
    plugin = peft.PeftModel.from_pretrained(copy.deepcopy(served["base"]), served["movie"]).eval()
    text_ids = tokenizer(row["text"])["input_ids"]
    assert len({tokenizer(choice, add_special_tokens=False)["input_ids"][0] for choice in row["choices"]}) > 128
    expected = []
    with torch.no_grad():
        for choice in row["choices"]:
            ids = tokenizer(choice, add_special_tokens=False)["input_ids"]
            log_probs = plugin(input_ids=torch.tensor([text_ids + ids])).logits[0, -len(ids) - 1 : -1].log_softmax(-1)
            expected.append(float(log_probs.gather(-1, torch.tensor(ids)[:, None]).sum()))
    torch.testing.assert_close(torch.tensor(row["scores"]), torch.tensor(expected), rtol=0, atol=1e-3)
    second, first = sorted(expected)[-2:]
    if first - second > 1e-2:  # (a closer race may go either way within the tolerance)
        assert row["prediction"] == expected.index(first)


def test_vllm_rank_classification_gives_the_recipe_predictions(served):
    tokenizer, rows = served["tokenizer"], [out for out in served["outputs"] if "choices" in out and "label" in out]
    plugin = peft.PeftModel.from_pretrained(copy.deepcopy(served["base"]), served["movie"]).eval()
    prompts = [row["token_ids"] for row in rows]
    with torch.no_grad():
        expected = rank_classify(plugin, prompts, label_token_ids(tokenizer, served["words"]), tokenizer.pad_token_id or 0)
    predictions = [row["prediction"] for row in rows]
    accuracy = sum(p == row["label"] for p, row in zip(predictions, rows)) / len(rows)
    recipe_accuracy = sum(p == row["label"] for p, row in zip(expected, rows)) / len(rows)
    assert predictions == expected, (accuracy, recipe_accuracy)
    assert accuracy == recipe_accuracy


def test_openai_server_answers_a_prompt_embeds_body_as_the_offline_engine(served, tmp_path):
    import socket
    import time
    import urllib.request

    from softprompt_serve import PromptServer

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    model_dir = served["base"].name_or_path
    log = open(tmp_path / "server.log", "w")
    process = subprocess.Popen([str(VLLM_PYTHON), str(REPO / "recipes" / "serve_vllm.py"), "serve", "--model", model_dir, "--port", str(port)],
                               stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        deadline = time.monotonic() + 600
        while True:
            assert process.poll() is None, (tmp_path / "server.log").read_text()[-3000:]
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5)
                break
            except OSError:
                assert time.monotonic() < deadline, "the server did not come up in 600 s"
                time.sleep(2)
        server = PromptServer(model_dir)
        server.add_adapter(served["movie"], name="movie")
        offline = [out for out in served["outputs"] if "choices" not in out and out["task"] == "movie"][:2]
        for row in offline:
            body = server.openai_body(row["text"], "movie", model=model_dir, max_tokens=MAX_NEW_TOKENS, temperature=0.0)
            request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/completions", data=json.dumps(body).encode(),
                                             headers={"Content-Type": "application/json"})  # fmt: skip
            answer = json.loads(urllib.request.urlopen(request, timeout=300).read())
            assert answer["choices"][0]["text"] == row["completion"]
    finally:
        process.terminate()
        process.wait(timeout=60)
        log.close()
