"""Serve prompts exported by the plugin on vLLM: one engine, many tasks, each request its own prompt.

Runs in the serving venv (`bash scripts/setup_vllm.sh` builds .venv-vllm), never in the plugin's:

    MODEL=$(.venv/bin/python -m softprompt_bench.embedded_models smollm2-135m)   # the model folder
    # offline batch: a JSONL of {"task": ..., "text": ...} rows ("token_ids": [...] instead of text
    # skips tokenizing; no task = no prompt; "choices": [...] scores each choice's tokens instead of
    # generating: rank classification). Output rows add "output_token_ids" and "completion", or
    # "scores" and "prediction".
    .venv-vllm/bin/python recipes/serve_vllm.py generate --model $MODEL \
        --adapter movie=runs/compare_default/vocab_sampled_top_frequent_plugin/seed0/adapter \
        --input requests.jsonl --output answers.jsonl --max-tokens 16
    # OpenAI-compatible server (vLLM's own api_server module, prompt embeddings enabled) ...
    .venv-vllm/bin/python recipes/serve_vllm.py serve --model $MODEL --port 8000
    # ... and a request body for it: prompt_embeds = base64 torch.save of [P + text tokens, hidden]
    .venv-vllm/bin/python recipes/serve_vllm.py body --model $MODEL --adapter movie=... \
        --task movie --text "Review: a fine film\\nSentiment:" --max-tokens 8 > body.json
    curl -s localhost:8000/v1/completions -H 'Content-Type: application/json' -d @body.json

`--adapter NAME=FOLDER` takes a plugin save (its `vanilla/` copy; a mixture's `vanilla/<task>/`
copies become one task each, named by task) or any plain PROMPT_TUNING export. Prompts are checked
against the served model's fingerprint when loaded. Greedy decoding (temperature 0) unless
`--temperature` is given. Engine settings are those verified on a 2-core CPU (FIELD_NOTES):
float32, eager, 1 GiB KV cache, no prefix caching.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # softprompt_serve, from a checkout

# vLLM's CPU backend settings for this machine; the caller's environment wins.
for _name, _value in {"VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_NO_USAGE_STATS": "1", "VLLM_CPU_OMP_THREADS_BIND": "auto",
                      "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}.items():  # fmt: skip
    os.environ.setdefault(_name, _value)

from softprompt_serve import PromptServer  # noqa: E402
from softprompt_serve.model_inputs import config_max_positions  # noqa: E402

DEFAULT_MAX_MODEL_LEN = 512  # the KV cache a 2-core CPU engine holds (FIELD_NOTES); a model's own shorter length wins


def default_max_model_len(model_dir: str) -> int:
    """The model's own length from its config (a GPT-2 takes n_positions), at most DEFAULT_MAX_MODEL_LEN."""
    own = config_max_positions(json.loads((Path(model_dir) / "config.json").read_text()))
    return min(DEFAULT_MAX_MODEL_LEN, own) if own else DEFAULT_MAX_MODEL_LEN


def engine(model_dir: str, max_model_len: int):
    """The vLLM engine: prompt embeddings on, float32, eager (start-up 72 s vs 222 s compiled here)."""
    from vllm import LLM

    return LLM(model=model_dir, enable_prompt_embeds=True, dtype="float32", max_model_len=max_model_len, enforce_eager=True,
               enable_prefix_caching=False, seed=0)  # fmt: skip


def build_server(args) -> PromptServer:
    server = PromptServer(args.model, max_model_len=args.max_model_len, allow_base_model_mismatch=args.allow_base_model_mismatch)
    for spec in args.adapter:
        name, sep, folder = spec.partition("=")
        if not sep or not name or not folder:
            raise SystemExit(f"--adapter {spec!r}: expected NAME=FOLDER")
        server.add_adapter(folder, name=name)
    return server


def read_rows(path: str) -> list[dict]:
    """JSONL rows; each has a "text" (tokenized as `tokenizer(text)`) or "token_ids" (used as they are)."""
    rows = []
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):  # (found 2026-12-07: bare Python errors)
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as error:
            raise SystemExit(f"{path} line {number} is not JSON ({error}): expected one JSON object per line.") from None
        if not isinstance(row, dict):
            raise SystemExit(f"{path} line {number}: expected a JSON object with a 'text' or 'token_ids', got {row!r:.200}")
        rows.append(row)
    for index, row in enumerate(rows):
        if not isinstance(row.get("text"), str) and not isinstance(row.get("token_ids"), list):
            raise SystemExit(f"{path} row {index}: expected a string 'text' or a list 'token_ids', got {row!r:.200}")
        if row.get("task") is not None and not isinstance(row["task"], str):
            raise SystemExit(f"{path} row {index}: task {row['task']!r} is not a task name (a string; omit it for no prompt).")
    return rows


def row_input(row: dict):
    return row["token_ids"] if isinstance(row.get("token_ids"), list) else row["text"]


def generate_rows(llm, rows: list[dict], requests: list[dict], max_tokens: int, temperature: float) -> list[dict]:
    """Generation rows: one request each, all in one `generate` call (tasks mixed in the batch)."""
    from vllm import SamplingParams

    if not rows:
        return []
    # each row its own seed: rows repeated to draw several samples differ (one seed for all gave copies), and a
    # rerun draws the same ones
    params = [SamplingParams(max_tokens=max_tokens, temperature=temperature, seed=index) for index in range(len(requests))]
    outputs = llm.generate(requests, params, use_tqdm=False)
    return [{**row, "output_token_ids": list(output.outputs[0].token_ids), "completion": output.outputs[0].text}
            for row, output in zip(rows, outputs)]  # fmt: skip


def classify_rows(llm, rows: list[dict], plans: list[list]) -> list[dict]:
    """Rank classification: each choice's score is the sum of its tokens' log-probabilities after the text.

    `plans[i]` is `PromptServer.choice_requests` of row i."""
    from vllm import SamplingParams

    if not rows:
        return []
    flat = [(row_index, *item) for row_index, plan in enumerate(plans) for item in plan]
    params = [SamplingParams(max_tokens=1, temperature=0.0, logprob_token_ids=scored) for _, _, scored, _ in flat]
    outputs = llm.generate([request for _, request, _, _ in flat], params, use_tqdm=False)
    scores = [[0.0] * len(row["choices"]) for row in rows]
    for (row_index, _, scored, owners), output in zip(flat, outputs):
        logprobs = output.outputs[0].logprobs[0]
        for token, (choice, _) in zip(scored, owners):
            scores[row_index][choice] += logprobs[token].logprob
    return [{**row, "scores": score, "prediction": max(range(len(score)), key=score.__getitem__)} for row, score in zip(rows, scores)]


def _for_row(path: str, index: int, build, *args):
    """`build(*args)`, its refusal naming the input row."""
    try:
        return build(*args)
    except (ValueError, KeyError) as error:
        raise SystemExit(f"{path} row {index}: {_message(error)}") from error


def _message(error: Exception) -> str:
    """An error's message (a KeyError's str() quotes it)."""
    return str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)


def run_generate(args) -> None:
    server = build_server(args)
    rows = read_rows(args.input)
    generating = [index for index, row in enumerate(rows) if "choices" not in row]
    classifying = [index for index, row in enumerate(rows) if "choices" in row]
    # every request is built (and every refusal raised: unknown task, overflow, empty) before the engine's minute of start-up
    requests = [_for_row(args.input, i, server.request, row_input(rows[i]), rows[i].get("task"), args.max_tokens) for i in generating]
    plans = [_for_row(args.input, i, server.choice_requests, row_input(rows[i]), rows[i]["choices"], rows[i].get("task"))
             for i in classifying]  # fmt: skip
    start = time.perf_counter()
    llm = engine(args.model, args.max_model_len)
    started = time.perf_counter()
    answers = [None] * len(rows)
    for index, answer in zip(generating, generate_rows(llm, [rows[i] for i in generating], requests, args.max_tokens, args.temperature)):
        answers[index] = answer
    for index, answer in zip(classifying, classify_rows(llm, [rows[i] for i in classifying], plans)):
        answers[index] = answer
    done = time.perf_counter()
    with open(args.output, "w") as handle:
        handle.writelines(json.dumps(answer) + "\n" for answer in answers)
    print(f"serve_vllm: {len(rows)} rows, {len(server.prompts)} tasks {sorted(server.prompts)}; engine start {started - start:.1f} s, "
          f"requests {done - started:.1f} s -> {args.output}")  # fmt: skip


def run_serve(args) -> None:
    """Replace this process with vLLM's OpenAI-compatible server (prompt embeddings on).

    Started as a module, not with the `vllm` command: that command asks for the package metadata of
    "vllm", and the CPU build installs as "vllm-cpu" (PackageNotFoundError at start-up).
    """
    command = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", args.model, "--enable-prompt-embeds",
               "--dtype", "float32", "--enforce-eager", "--max-model-len", str(args.max_model_len), "--no-enable-prefix-caching",
               "--port", str(args.port)]  # fmt: skip
    print("serve_vllm:", " ".join(command), flush=True)
    os.execv(sys.executable, command)


def run_body(args) -> None:
    server = build_server(args)
    try:
        body = server.openai_body(args.text, args.task, model=args.model, max_tokens=args.max_tokens, temperature=args.temperature)
    except (ValueError, KeyError) as error:  # (found 2026-12-07: a KeyError traceback)
        raise SystemExit(f"serve_vllm body: {_message(error)}") from None
    print(json.dumps(body))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("mode", choices=["generate", "serve", "body"])
    parser.add_argument("--model", required=True, help="the served model's folder (the prompts' base model)")
    parser.add_argument("--adapter", action="append", default=[], help="NAME=FOLDER: a plugin save or a PROMPT_TUNING export")
    parser.add_argument("--max-model-len", type=int, default=None,
                        help=f"the engine's max_model_len (default: the model's own length, at most {DEFAULT_MAX_MODEL_LEN})")
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--temperature", type=float, default=0.0)
    parser.add_argument("--allow-base-model-mismatch", action="store_true", help="skip the fingerprint check")
    parser.add_argument("--input", help="generate: JSONL of {task, text[, choices]} rows")
    parser.add_argument("--output", help="generate: JSONL written, one row per input row")
    parser.add_argument("--task", help="body: the request's task (omit for no prompt)")
    parser.add_argument("--text", help="body: the request's text")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    if args.mode == "generate" and not (args.input and args.output):
        parser.error("generate needs --input and --output")
    if args.mode == "body" and args.text is None:
        parser.error("body needs --text")
    if args.max_model_len is None:
        args.max_model_len = default_max_model_len(args.model)
    {"generate": run_generate, "serve": run_serve, "body": run_body}[args.mode](args)


if __name__ == "__main__":
    main()
