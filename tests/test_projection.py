"""Cross-model projection: alignment on toy tokenizers, recovery of known maps, save/load, the config."""

import copy

import peft
import pytest
import torch
from tokenizers import Tokenizer, models
from transformers import Gemma3ForCausalLM, Gemma3TextConfig, GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

import testing_common as common
from peft_softprompt_ext import ProjectedPromptTuningConfig, PromptProjection, export_prompt_tuning, fit_projection
from peft_softprompt_ext.projection import refine_projection, shared_tokens

# Byte-level pieces ("Ġ" = a leading space; "Ã©" = the two UTF-8 bytes of "é") vs SentencePiece
# pieces ("▁" = word start). WORDS appear in both; each side also has tokens of its own.
WORDS = ["the", "cat", "dog", "house", "run", "tree", "blue", "green", "café", "water", "light", "stone", "river",
         "cloud", "bread", "apple", "table", "chair", "music", "paper"] * 1  # fmt: skip
PIECES = ["ing", "ed", "er", "s", "ly"]


def byte_level(text):
    table = {chr(c): chr(c) for c in range(33, 127)}
    table[" "] = "Ġ"
    return "".join(table.get(ch, ch) for ch in text).replace("é", "Ã©")


def toy_tokenizer(vocab):
    tokenizer = Tokenizer(models.WordLevel({token: i for i, token in enumerate(vocab)}, unk_token="<unk>"))
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="<unk>", pad_token="<pad>")


def source_tokenizer():
    vocab = ["<pad>", "<unk>", "<|endoftext|>"] + [byte_level(" " + w) for w in WORDS] + PIECES + ["Ġzebra", "Ġonly", "Ã"]
    return toy_tokenizer(vocab)


def target_tokenizer():
    vocab = ["<pad>", "<unk>", "<0x0A>", "<unused0>"] + ["▁" + w for w in reversed(WORDS)] + PIECES[:3] + ["▁lion", "thing"]
    return toy_tokenizer(vocab)


def toy_model(vocab_size, width, seed=0):
    torch.manual_seed(seed)
    return GPT2LMHeadModel(GPT2Config(vocab_size=vocab_size, n_embd=width, n_layer=1, n_head=2, n_positions=64)).eval()


def test_alignment_finds_exactly_the_shared_tokens():
    source, target = source_tokenizer(), target_tokenizer()
    source_ids, target_ids, keys = shared_tokens(source, len(source), target, len(target))
    expected = {(True, w) for w in WORDS} | {(False, p) for p in PIECES[:3]}
    assert set(keys) == expected and len(keys) == len(expected)
    for source_id, target_id, (word_start, text) in zip(source_ids.tolist(), target_ids.tolist(), keys):
        source_piece, target_piece = source.convert_ids_to_tokens(source_id), target.convert_ids_to_tokens(target_id)
        assert target_piece == ("▁" if word_start else "") + text
        assert source_piece == byte_level((" " if word_start else "") + text)


def linked_models(method, source_width=8, target_width=12, seed=0):
    """Toy source/target models whose shared-token embeddings are related by a known map."""
    source, target = source_tokenizer(), target_tokenizer()
    source_model, target_model = toy_model(len(source), source_width), toy_model(len(target), target_width, seed=1)
    generator = torch.Generator().manual_seed(seed)
    if method == "procrustes":  # a semi-orthogonal map times a scale
        mapping = torch.linalg.qr(torch.randn(target_width, source_width, generator=generator))[0].T * 3.0
    else:
        mapping = torch.randn(source_width, target_width, generator=generator)
    source_ids, target_ids, _ = shared_tokens(source, len(source), target, len(target))
    with torch.no_grad():
        target_model.get_input_embeddings().weight[target_ids] = source_model.get_input_embeddings().weight[source_ids] @ mapping + 0.5
    return source_model, source, target_model, target, mapping


@pytest.mark.parametrize("method", ["lstsq", "procrustes"])
def test_a_known_map_between_different_widths_is_recovered(method):
    source_model, source, target_model, target, _ = linked_models(method)
    projection = fit_projection(source_model, source, target_model, target, method=method, ridge=1e-9, min_anchors=8, holdout_fraction=0.2)
    source_ids, target_ids, _ = shared_tokens(source, len(source), target, len(target))
    mapped = projection.project(source_model.get_input_embeddings().weight[source_ids].detach())
    torch.testing.assert_close(mapped, target_model.get_input_embeddings().weight[target_ids].detach(), rtol=1e-3, atol=1e-3)
    quality = projection.info["quality"]
    assert quality["mean_cosine"] > 0.999 and quality["top1"] == 1.0
    assert (projection.source_width, projection.target_width) == (8, 12)


def test_save_and_load_give_the_same_projection(tmp_path):
    source_model, source, target_model, target, _ = linked_models("lstsq")
    projection = fit_projection(source_model, source, target_model, target, min_anchors=8)
    projection.save_pretrained(tmp_path)
    loaded = PromptProjection.from_pretrained(tmp_path)
    prompt = torch.randn(4, 8)
    torch.testing.assert_close(loaded.project(prompt), projection.project(prompt), rtol=0, atol=0)
    assert loaded.info["quality"] == projection.info["quality"]


def test_a_projection_saved_over_a_folder_keeps_the_files_it_does_not_own(tmp_path):
    source_model, source, target_model, target, _ = linked_models("lstsq")
    projection = fit_projection(source_model, source, target_model, target, min_anchors=8)
    (tmp_path / "notes.txt").write_text("mine")
    projection.save_pretrained(tmp_path)
    projection.save_pretrained(tmp_path)  # over an earlier save: its own files replaced, the others kept
    assert (tmp_path / "notes.txt").read_text() == "mine"
    torch.testing.assert_close(PromptProjection.from_pretrained(tmp_path).weight, projection.weight, rtol=0, atol=0)


def projected_setup(tmp_path, num_virtual_tokens=4):
    source_model, source, target_model, target, _ = linked_models("lstsq")
    projection = fit_projection(source_model, source, target_model, target, min_anchors=8)
    projection.save_pretrained(tmp_path / "projection")
    config = peft.PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=num_virtual_tokens)
    torch.manual_seed(3)
    peft.get_peft_model(source_model, config).save_pretrained(tmp_path / "source")
    return projection, target_model


def test_the_config_starts_from_the_projected_source_prompt(tmp_path):
    projection, target_model = projected_setup(tmp_path)
    from safetensors.torch import load_file

    source = load_file(tmp_path / "source" / "adapter_model.safetensors")["prompt_embeddings"]
    config = ProjectedPromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4, source_adapter=str(tmp_path / "source"),
                                         projection=str(tmp_path / "projection"))  # fmt: skip
    peft_model = peft.get_peft_model(target_model, config)
    torch.testing.assert_close(peft_model.prompt_encoder["default"].embedding.weight.detach(), projection.project(source))
    export_prompt_tuning(peft_model, tmp_path / "exported")  # exports like every single-prompt method
    assert (tmp_path / "exported" / "adapter_model.safetensors").exists()


def test_source_prompt_of_another_width_is_refused(tmp_path):
    projected_setup(tmp_path)
    wide = toy_model(len(source_tokenizer()), 16)
    peft.get_peft_model(wide, peft.PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4)).save_pretrained(tmp_path / "wide")
    _, target_model = projected_setup(tmp_path / "again")
    config = ProjectedPromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4, source_adapter=str(tmp_path / "wide"),
                                         projection=str(tmp_path / "projection"))  # fmt: skip
    with pytest.raises(ValueError, match=r"has shape \(4, 16\); the projection's source model \(whose prompts it maps; this model is 12 wide\) needs width 8"):
        peft.get_peft_model(target_model, config)
    # a prompt of this (the target) model, 12 wide: named so (found 2026-12-07 by a probe: "this model needs width 8")
    peft.get_peft_model(copy.deepcopy(target_model), peft.PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4)).save_pretrained(tmp_path / "own")
    config.source_adapter = str(tmp_path / "own")
    with pytest.raises(ValueError, match=r"has shape \(4, 12\); the projection's source model \(whose prompts it maps; this model is 12 wide\) needs width 8"):
        peft.get_peft_model(target_model, config)


def test_a_source_adapter_of_the_projections_target_model_is_refused_as_the_reverse_direction(tmp_path):
    """Same widths: a prompt of the target model sent through a source -> target projection was refused as
    'trained on another base model ... pass allow_base_model_mismatch=True (e.g. after projection)'."""
    source_model, source, target_model, target, _ = linked_models("lstsq", source_width=8, target_width=8)
    fit_projection(source_model, source, target_model, target, min_anchors=8).save_pretrained(tmp_path / "projection")
    export_prompt_tuning(peft.get_peft_model(copy.deepcopy(target_model), peft.PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4)),
                         tmp_path / "target_prompt")  # fmt: skip
    config = ProjectedPromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4, source_adapter=str(tmp_path / "target_prompt"),
                                         projection=str(tmp_path / "projection"))  # fmt: skip
    with pytest.raises(ValueError, match=r"this model is its source model: the projection runs the other way"):
        peft.get_peft_model(source_model, config)
    with pytest.raises(ValueError, match=r"was fitted for another target model: .*embedding_digest"):  # a third model
        peft.get_peft_model(toy_model(len(target), 8, seed=5), config)


def test_source_adapter_of_a_method_that_cannot_be_projected_is_refused(tmp_path):
    _, target_model = projected_setup(tmp_path)
    mixture_dir = tmp_path / "mixture"
    peft_model, _ = common.make_peft_model("gpt2", "mixture_attention")
    peft_model.save_pretrained(mixture_dir)
    config = ProjectedPromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4, source_adapter=str(mixture_dir),
                                         projection=str(tmp_path / "projection"))  # fmt: skip
    with pytest.raises(ValueError, match=r"has no 'prompt_embeddings' tensor"):
        peft.get_peft_model(target_model, config)


def test_too_few_shared_tokens_says_how_many():
    source_model, source, target_model, target, _ = linked_models("lstsq")
    with pytest.raises(ValueError, match=r"Found 23 shared tokens between the two tokenizers; .* leaves 21 to fit, and method 'lstsq' needs at least 100"):
        fit_projection(source_model, source, target_model, target, min_anchors=100)
    with pytest.raises(ValueError, match=r"Found 23 shared tokens .* needs at least 24"):
        fit_projection(toy_model(len(source), 24), source, target_model, target)  # default: the source width


@pytest.mark.parametrize("setting,message", [
    ({"ridge": float("nan")}, r"ridge must be a finite number >= 0, got nan"), ({"ridge": -1.0}, r"ridge must be a finite number >= 0, got -1.0"),
    ({"holdout_fraction": -0.5}, r"holdout_fraction must be a number in \(0, 1\), got -0.5"),
    ({"holdout_fraction": 1.0}, r"holdout_fraction must be a number in \(0, 1\), got 1.0"),
    ({"holdout_fraction": 0.0}, r"holdout_fraction must be a number in \(0, 1\), got 0.0"),  # found 2026-12-05: one held out anyway
    ({"max_eval": 0}, r"max_eval must be a positive integer, got 0"),
])  # fmt: skip
def test_bad_fit_settings_are_named(setting, message):
    source_model, source, target_model, target, _ = linked_models("lstsq")
    with pytest.raises(ValueError, match=message):
        fit_projection(source_model, source, target_model, target, min_anchors=8, **setting)


@pytest.mark.parametrize("setting,message", [
    ({"min_anchors": 0}, r"min_anchors must be a positive integer or None, got 0"),
    ({"min_anchors": True}, r"min_anchors must be a positive integer or None, got True"),
    ({"min_anchors": "8"}, r"min_anchors must be a positive integer or None, got '8'"),
    ({"seed": 1.5}, r"seed must be an integer, got 1.5"), ({"seed": None}, r"seed must be an integer, got None"),
    ({"lowercase": "no"}, r"lowercase must be True or False, got 'no'"),
])  # fmt: skip
def test_unchecked_fit_settings_are_named(setting, message):
    """Found 2026-12-06: these were accepted (min_anchors 0, a string lowercase read as True) or failed in torch
    without naming the setting."""
    source_model, source, target_model, target, _ = linked_models("lstsq")
    with pytest.raises(ValueError, match=message):
        fit_projection(source_model, source, target_model, target, **{"min_anchors": 8, **setting})


@pytest.mark.parametrize("method", ["lstsq", "procrustes"])
def test_anchors_left_for_the_fit_after_the_holdout_are_counted(method):
    """Found 2026-12-06: min_anchors was compared with every shared token, before the holdout came out of them: one
    anchor left to fit gave an all-NaN projection without a word (lstsq) or a raw linalg error (procrustes)."""
    source_model, source, target_model, target, _ = linked_models(method)
    with pytest.raises(ValueError, match=r"Found 23 shared tokens between the two tokenizers; holding out 22 \(holdout_fraction 0.96\) leaves 1 to fit, "
                                         r"and method '.*' needs at least 8"):  # fmt: skip
        fit_projection(source_model, source, target_model, target, method=method, min_anchors=8, holdout_fraction=0.96)
    with pytest.raises(ValueError, match=r"leaves 1 to fit, and method '.*' needs at least 2"):
        fit_projection(source_model, source, target_model, target, method=method, min_anchors=1, holdout_fraction=0.96)


def test_a_fit_that_is_not_finite_is_refused():
    """Anchors whose embeddings are all one row scale to nothing; the map came out NaN and was returned."""
    source_model, source, target_model, target, _ = linked_models("lstsq")
    with torch.no_grad():
        source_model.get_input_embeddings().weight[:] = 1.0
    with pytest.raises(ValueError, match=r"the source model's anchor embeddings are all the same row"):
        fit_projection(source_model, source, target_model, target, min_anchors=8)


def test_bad_source_prompts_and_batches_for_refinement_are_named(tmp_path):
    """Found 2026-12-06: a NaN source prompt refined to a NaN projection; another width, and batches without labels,
    failed in torch."""
    projection, target_model = projected_setup(tmp_path)
    from safetensors.torch import load_file

    source_prompt = load_file(tmp_path / "source" / "adapter_model.safetensors")["prompt_embeddings"]
    ids = torch.randint(3, 20, (4, 6), generator=torch.Generator().manual_seed(0))
    batches = [{"input_ids": ids, "labels": ids}]
    with pytest.raises(ValueError, match=r"source_prompt holds 1 value\(s\) that are NaN or infinite"):
        refine_projection(projection, _with_nan(source_prompt), target_model, batches, steps=2)
    with pytest.raises(ValueError, match=rf"source_prompt has shape \(4, 5\); expected \[virtual tokens, {projection.source_width}\]"):
        refine_projection(projection, source_prompt[:, :5], target_model, batches, steps=2)
    with pytest.raises(ValueError, match=r"source_prompt has shape \(8,\)"):
        refine_projection(projection, source_prompt[0], target_model, batches, steps=2)
    with pytest.raises(ValueError, match=r"batch 0 has no 'labels'"):
        refine_projection(projection, source_prompt, target_model, [{"input_ids": ids}], steps=2)


@pytest.mark.parametrize("target", ["t5", "bert", "masked_lm"])
def test_refinement_on_a_model_that_is_not_a_causal_lm_is_refused_naming_it(target):
    """Found 2026-12-07 by a probe: only an encoder-decoder target was refused; a classifier failed inside torch
    ("Tensors must have same number of dimensions") and a masked LM trained on a causal loss it does not compute."""
    from transformers import BertForMaskedLM

    source_model = common.tiny_model("gpt2", seed=5)[0]
    tokenizer = common.tiny_tokenizer()
    target_model = BertForMaskedLM(common.tiny_model("bert")[0].config) if target == "masked_lm" else common.tiny_model(target)[0]
    projection = fit_projection(source_model, tokenizer, target_model, tokenizer)
    batches = [common.batch_for("gpt2")]
    with pytest.raises(ValueError, match=rf"refine_projection trains through a causal LM .*got a {type(target_model).__name__} target"):
        refine_projection(projection, torch.randn(5, 32), target_model, batches, steps=2)


def _with_nan(prompt):
    prompt = prompt.clone()
    prompt[0, 0] = float("nan")
    return prompt


def test_refinement_with_task_data_lowers_the_task_loss(tmp_path):
    projection, target_model = projected_setup(tmp_path)
    from safetensors.torch import load_file

    source_prompt = load_file(tmp_path / "source" / "adapter_model.safetensors")["prompt_embeddings"]
    ids = torch.randint(3, 20, (4, 6), generator=torch.Generator().manual_seed(0))
    batches = [{"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids}]
    refined = refine_projection(projection, source_prompt, target_model, batches, steps=30, lr=0.05, rank=2)
    assert isinstance(refined, PromptProjection)
    assert refined.info["refined"]["last_loss"] < refined.info["refined"]["first_loss"]
    assert not torch.allclose(refined.weight, projection.weight)


def test_refinement_on_another_target_model_is_refused_and_the_callers_model_keeps_its_gradients(tmp_path):
    projection, target_model = projected_setup(tmp_path)
    from safetensors.torch import load_file

    source_prompt = load_file(tmp_path / "source" / "adapter_model.safetensors")["prompt_embeddings"]
    ids = torch.randint(3, 20, (4, 6), generator=torch.Generator().manual_seed(0))
    batches = [{"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids}]
    other = copy.deepcopy(target_model)
    with torch.no_grad():
        other.get_input_embeddings().weight.add_(0.5)  # same width, another model
    with pytest.raises(ValueError, match="fitted for another target model"):
        refine_projection(projection, source_prompt, other, batches, steps=2)
    before = {name: p.requires_grad for name, p in target_model.named_parameters()}
    refine_projection(projection, source_prompt, target_model, batches, steps=2, lr=0.05, rank=2)
    assert {name: p.requires_grad for name, p in target_model.named_parameters()} == before


@pytest.mark.parametrize("setting,message", [
    ({"steps": 0}, "steps must be a positive integer, got 0"), ({"steps": True}, "steps must be a positive integer, got True"),
    ({"rank": 0}, "rank must be a positive integer, got 0"), ({"rank": 2.5}, "rank must be a positive integer, got 2.5"),
    ({"lr": float("nan")}, "lr must be a finite number > 0, got nan"),
])  # fmt: skip
def test_bad_refinement_settings_are_named(tmp_path, setting, message):
    projection, target_model = projected_setup(tmp_path)
    from safetensors.torch import load_file

    source_prompt = load_file(tmp_path / "source" / "adapter_model.safetensors")["prompt_embeddings"]
    ids = torch.randint(3, 20, (4, 6), generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match=message):
        refine_projection(projection, source_prompt, target_model, [{"input_ids": ids, "labels": ids}], **{"steps": 2, **setting})
    with pytest.raises(ValueError, match="batches gave no batch"):
        refine_projection(projection, source_prompt, target_model, [], steps=2)


def tiny_scaled_target(vocab_size, width=12):
    """A tiny Gemma3: its embedding module multiplies rows by sqrt(width), like the real one."""
    torch.manual_seed(1)
    config = Gemma3TextConfig(vocab_size=vocab_size, hidden_size=width, intermediate_size=16, num_hidden_layers=1,
                              num_attention_heads=2, num_key_value_heads=1, head_dim=8, max_position_embeddings=64,
                              sliding_window=16, pad_token_id=0)  # fmt: skip
    return Gemma3ForCausalLM(config).eval()


def test_row_norm_target_tokens_rescales_projected_rows_to_the_embedded_token_norm(tmp_path):
    source, target = source_tokenizer(), target_tokenizer()
    source_model, target_model = toy_model(len(source), 8), tiny_scaled_target(len(target))
    kwargs = dict(min_anchors=8, holdout_fraction=0.2)
    plain = fit_projection(source_model, source, target_model, target, **kwargs)
    normed = fit_projection(source_model, source, target_model, target, row_norm="target_tokens", **kwargs)
    _, target_ids, _ = shared_tokens(source, len(source), target, len(target))
    embedded = target_model.get_input_embeddings()(target_ids).detach()  # scaled by sqrt(12), as the model consumes it
    assert normed.row_norm == pytest.approx(embedded.norm(dim=1).mean().item(), rel=0.1)
    assert normed.row_norm > 2 * target_model.get_input_embeddings().weight[target_ids].norm(dim=1).mean().item()
    prompt = torch.randn(5, 8) * torch.tensor([0.1, 1.0, 3.0, 10.0, 30.0]).unsqueeze(1)  # rows far off the token norm
    projected = normed.project(prompt)
    torch.testing.assert_close(projected.norm(dim=1), torch.full((5,), normed.row_norm))
    torch.testing.assert_close(projected, torch.nn.functional.normalize(plain.project(prompt), dim=1) * normed.row_norm)
    assert plain.row_norm is None and normed.info["row_norm_mode"] == "target_tokens"
    normed.save_pretrained(tmp_path)
    torch.testing.assert_close(PromptProjection.from_pretrained(tmp_path).project(prompt), projected, rtol=0, atol=0)


def test_projection_saved_before_row_norm_existed_loads_as_the_plain_map(tmp_path):
    import json

    projection, _ = projected_setup(tmp_path)
    config_path = tmp_path / "projection" / "projection_config.json"
    config = json.loads(config_path.read_text())
    del config["row_norm"]
    config_path.write_text(json.dumps(config))
    loaded = PromptProjection.from_pretrained(tmp_path / "projection")
    prompt = torch.randn(3, 8) * 5
    assert loaded.row_norm is None
    torch.testing.assert_close(loaded.project(prompt), projection.project(prompt))


@pytest.mark.parametrize("value", [True, 1e308])
def test_a_saved_row_norm_that_is_a_boolean_or_overflows_is_refused(tmp_path, value):
    """row_norm: true rescaled every row to norm 1 without a word, and 1e308 gave infinite rows."""
    import json
    import re

    source_model, source, target_model, target, _ = linked_models("lstsq")
    fit_projection(source_model, source, target_model, target, min_anchors=8, row_norm="target_tokens").save_pretrained(tmp_path)
    config = json.loads((tmp_path / "projection_config.json").read_text())
    config["row_norm"] = value
    (tmp_path / "projection_config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=rf"row_norm={re.escape(repr(value))}; expected a finite number > 0 or null"):
        PromptProjection.from_pretrained(tmp_path)


def test_unknown_row_norm_is_refused_naming_the_value():
    source_model, source, target_model, target, _ = linked_models("lstsq")
    with pytest.raises(ValueError, match=r"row_norm='tokens' is not one of \['none', 'target_tokens'\]"):
        fit_projection(source_model, source, target_model, target, min_anchors=8, row_norm="tokens")
    with pytest.raises(ValueError, match=r"row_norm must be a finite number > 0 \(a float32\) or None, got -1.0"):
        PromptProjection(torch.zeros(2, 3), torch.zeros(2), torch.zeros(3), 1.0, 1.0, row_norm=-1.0)


def test_the_config_starts_from_norm_matched_rows_and_refinement_keeps_them(tmp_path):
    source_model, source, target_model, target, _ = linked_models("lstsq")
    projection = fit_projection(source_model, source, target_model, target, min_anchors=8, row_norm="target_tokens")
    projection.save_pretrained(tmp_path / "projection")
    torch.manual_seed(3)
    peft.get_peft_model(source_model, peft.PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4)).save_pretrained(tmp_path / "source")
    config = ProjectedPromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4, source_adapter=str(tmp_path / "source"),
                                         projection=str(tmp_path / "projection"))  # fmt: skip
    rows = peft.get_peft_model(target_model, config).prompt_encoder["default"].embedding.weight.detach()
    torch.testing.assert_close(rows.norm(dim=1), torch.full((4,), projection.row_norm))
    ids = torch.randint(3, 20, (4, 6), generator=torch.Generator().manual_seed(0))
    batches = [{"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids}]
    source_prompt = torch.randn(4, 8) * 4
    refined = refine_projection(projection, source_prompt, target_model, batches, steps=3, lr=0.05, rank=2)
    assert refined.row_norm == projection.row_norm
    torch.testing.assert_close(refined.project(source_prompt).norm(dim=1), torch.full((4,), projection.row_norm))


@pytest.mark.parametrize("kind", ["PREFIX_TUNING", "CARTRIDGE", "DEEP_PROMPT_TUNING"])
def test_a_source_adapter_of_keys_and_values_is_refused_by_its_type_even_where_the_widths_agree(tmp_path, kind):
    """Found 2026-12-05: only the saved table's width was checked, so a key/value prompt whose per-layer width
    happened to equal the source model's width was projected as if it were input rows."""
    import json

    _, target_model = projected_setup(tmp_path)
    saved = json.loads((tmp_path / "source" / "adapter_config.json").read_text())
    (tmp_path / "source" / "adapter_config.json").write_text(json.dumps({**saved, "peft_type": kind}))  # a [4, 8] table
    config = ProjectedPromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4, source_adapter=str(tmp_path / "source"),
                                         projection=str(tmp_path / "projection"))  # fmt: skip
    with pytest.raises(ValueError, match=rf"is a {kind} adapter \(keys and values per layer\), not input rows"):
        peft.get_peft_model(target_model, config)


def test_refinement_takes_a_tokenizers_batch_encoding(tmp_path):
    """The review of a199bed: the labels check took only a dict, and a collator's BatchEncoding was refused."""
    from safetensors.torch import load_file
    from transformers import BatchEncoding

    projection, target_model = projected_setup(tmp_path)
    source_prompt = load_file(tmp_path / "source" / "adapter_model.safetensors")["prompt_embeddings"]
    ids = torch.randint(3, 20, (4, 6), generator=torch.Generator().manual_seed(0))
    batch = BatchEncoding({"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids})
    refined = refine_projection(projection, source_prompt, target_model, [batch], steps=2, lr=0.05, rank=2)
    assert refined.info["refined"]["steps"] == 2
    fit_projection(*linked_models("lstsq")[:4], min_anchors=8, seed=__import__("numpy").int64(3))  # numpy's integers are seeds too


def test_refinement_runs_the_steps_asked_for_on_any_reiterable_batches_and_names_an_iterator_that_runs_out(tmp_path):
    """Found 2026-12-07 by a probe: steps=20 over two batches ran 20 steps for a list but 2 for a tuple or a DataLoader
    (only a list was gone through again), without a word."""
    from safetensors.torch import load_file

    projection, target_model = projected_setup(tmp_path)
    source_prompt = load_file(tmp_path / "source" / "adapter_model.safetensors")["prompt_embeddings"]
    ids = torch.randint(3, 20, (2, 6), generator=torch.Generator().manual_seed(0))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids}
    rows = [{key: value[i] for key, value in batch.items()} for i in range(2)]
    loader = torch.utils.data.DataLoader(rows, batch_size=1)
    for batches in ([batch, batch], (batch, batch), loader):
        refined = refine_projection(projection, source_prompt, target_model, batches, steps=5, lr=0.05, rank=2)
        assert refined.info["refined"]["steps"] == 5
    with pytest.raises(ValueError, match=r"batches ran out after 2 of steps=5: gone through again, the list_iterator gave no more"):
        refine_projection(projection, source_prompt, target_model, iter([batch, batch]), steps=5, lr=0.05, rank=2)

    class OnePass(torch.utils.data.IterableDataset):  # (the review: the message told such a loader's user to pass a DataLoader)
        def __iter__(self):
            return iter(rows) if not getattr(self, "used", False) and not setattr(self, "used", True) else iter(())

    with pytest.raises(ValueError, match=r"batches ran out after 2 of steps=5: .*DataLoader gave no more .*DataLoader over a map-style"):
        refine_projection(projection, source_prompt, target_model, torch.utils.data.DataLoader(OnePass(), batch_size=1), steps=5, lr=0.05, rank=2)
    with pytest.raises(ValueError, match=r"batches gave no batch to refine on"):
        refine_projection(projection, source_prompt, target_model, (), steps=5, lr=0.05, rank=2)
