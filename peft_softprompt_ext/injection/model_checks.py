"""The model a prompt is built on: the task type it takes, whether the prompt fits its position table, and the models
no prompt runs on (a recurrent state, inputs read from the ids, no token input, embeddings without values)."""

from __future__ import annotations

import inspect
import re

import torch
from transformers import GenerationMixin

from .. import layer_prefix, shared_prefix
from .._peft_compat import validate_task_type
from ..fingerprint import refuse_embeddings_without_values
from ..position_table import check_prompt_fits as check_prompt_fits_table
from ..prompt_encoder import modules_taking_the_input


def check_prompt_fits(config, model, loading: bool) -> None:
    """`position_table.check_prompt_fits` for the prompt `config` builds: a deep prompt on an encoder leaves the input its
    positions, so only an initialisation that runs its rows through the model is limited (not a load, not "zero")."""
    if config.peft_type.name != "DEEP_PROMPT_TUNING" or layer_prefix.is_causal_decoder(model):
        check_prompt_fits_table(model, config.num_virtual_tokens)
    elif not loading and config.deep_init != "zero":
        check_prompt_fits_table(model, config.num_virtual_tokens, f"deep_init={config.deep_init.value!r}")


def model_task_type(model) -> str:
    """The task type a transformers model takes: SEQ_2_SEQ_LM (an encoder-decoder), CAUSAL_LM (a model that generates),
    else SEQ_CLS (an encoder; a masked LM too, which no task type here fits)."""
    if getattr(model.config, "is_encoder_decoder", False):
        return "SEQ_2_SEQ_LM"
    return "CAUSAL_LM" if _generates(model) else "SEQ_CLS"


def _generates(model) -> bool:
    """Whether a model generates: transformers' GenerationMixin gives `generate` (transformers 5.0's BertForMaskedLM
    still has prepare_inputs_for_generation without it; `can_generate()` logs a warning for such classes)."""
    return isinstance(model, GenerationMixin)


def check_task_type(task_type: str, model) -> None:
    """Refuse a task type the model is not: each puts the prompt in front of another kind of model (a causal LM's
    input, an encoder-decoder's encoder input, a classifier's input), and the wrong one runs without an error. Also
    refuses a model with a recurrent state, where no task type's prompt runs right (`_refuse_a_recurrent_state`), and a
    task type the plugin does not support, set after the config was made (found 2026-12-07 by a probe). A causal LM's
    reading of a cached prefix is checked here, once (`shared_prefix.cache_prefix_reads_otherwise`)."""
    validate_task_type(task_type)
    _refuse_a_model_without_token_input(model)
    embeddings = _input_embeddings_or_refusal(model)
    refuse_embeddings_without_values(model, embeddings)
    _refuse_embeddings_that_give_no_rows(model, embeddings)
    generates = _generates(model)
    fits = model_task_type(model)
    needs = {"CAUSAL_LM": "a causal LM (AutoModelForCausalLM)", "SEQ_2_SEQ_LM": "an encoder-decoder model (AutoModelForSeq2SeqLM)",
             "SEQ_CLS": "a sequence classifier (AutoModelForSequenceClassification)"}  # fmt: skip
    if task_type in needs and task_type != fits and not (task_type == "SEQ_CLS" and not generates):
        raise ValueError(f"task_type={task_type!r} needs {needs[task_type]}; {type(model).__name__} is not one (it takes "
                         f"task_type={fits!r}, or load the model with the class named).")  # fmt: skip
    if task_type == "SEQ_CLS":
        _refuse_a_model_that_classifies_no_sequence(model)
    if task_type == "CAUSAL_LM":
        _refuse_an_encoder_loaded_as_a_decoder(model)
    _refuse_a_recurrent_state(model)
    _refuse_inputs_read_from_ids(model)
    if task_type == "CAUSAL_LM":
        _refuse_a_cache_class_of_its_own(model)
        shared_prefix.cache_prefix_reads_otherwise(model)  # checked once per model, at the build, for every later call


def _input_embeddings_or_refusal(model):
    """The model's input embedding module, or a refusal where it has none (found 2026-12-08 by a probe: Canine, which
    hashes characters, gave transformers' bare "get_input_embeddings not auto-handled")."""
    try:
        return model.get_input_embeddings()
    except NotImplementedError as error:
        raise ValueError(f"{type(model).__name__} has no input embedding table ({error}): a soft prompt goes in front of a "
                         "text's token embeddings (or their keys and values in every layer). Use LoRA.") from None  # fmt: skip


def _refuse_embeddings_that_give_no_rows(model, embeddings) -> None:
    """A prompt's rows stand beside the text's embedding rows: an input embedding that returns something else (I-BERT's
    quantised embedding returns rows and a scaling factor) takes none (found 2026-12-08 by a probe: a bare
    AttributeError from the prompt's start; plain PEFT builds, then fails at its first forward)."""
    weight = getattr(embeddings, "weight", None)
    if not isinstance(weight, torch.Tensor) or weight.is_meta or weight.dim() != 2:
        return
    with torch.no_grad():
        rows = embeddings(torch.zeros(1, 1, dtype=torch.long, device=weight.device))
    if not isinstance(rows, torch.Tensor):
        raise ValueError(f"{type(model).__name__}'s input embedding ({type(embeddings).__name__}) returns a {type(rows).__name__}, "
                         "not embedding rows (a quantised embedding with its scaling factor), and a soft prompt's rows stand "
                         "beside the text's rows. Use LoRA.")  # fmt: skip


def _refuse_an_encoder_loaded_as_a_decoder(model) -> None:
    """BERT-style `*ForCausalLM` / `*LMHeadModel` classes (BERT, RoBERTa, ELECTRA, BigBird, ...) read `is_decoder`
    from their config: without it they attend both ways and return no cache, which a causal prompt's shared prefix and
    generate read (found 2026-12-07 by a probe: a bare `TypeError: 'NoneType' object is not iterable`). transformers
    itself only logs a warning; the classes that do say so in their `__init__` (`if not config.is_decoder`)."""
    if getattr(model.config, "is_decoder", True):
        return
    for cls in type(model).__mro__:
        if "__init__" in vars(cls):
            try:
                source = inspect.getsource(cls.__init__)
            except (OSError, TypeError):
                return
            if "if not config.is_decoder" in source:
                raise ValueError(f"{type(model).__name__} was loaded with is_decoder=False: it then attends both ways and keeps "
                                 "no cache, so it is no causal LM for a prompt to run in front of. Load it with "
                                 f"is_decoder=True ({type(model).__name__}.from_pretrained(..., is_decoder=True)), as "
                                 "transformers' own warning asks.")  # fmt: skip
            return


_NOT_SEQUENCE_CLASSIFIERS = {  # transformers' auto-class mapping -> what its models give (for SEQ_CLS's refusal)
    "MODEL_FOR_QUESTION_ANSWERING_MAPPING_NAMES": "a question-answering model (an output per position)",
    "MODEL_FOR_TOKEN_CLASSIFICATION_MAPPING_NAMES": "a token classifier (an output per position)",
    "MODEL_FOR_MASKED_LM_MAPPING_NAMES": "a masked LM (an output per position)",
    "MODEL_FOR_MULTIPLE_CHOICE_MAPPING_NAMES": "a multiple-choice model (its input is [batch, choices, length])",
    "MODEL_FOR_PRETRAINING_MAPPING_NAMES": "a pre-training model (outputs per position)",
    "MODEL_MAPPING_NAMES": "a bare model (no head to classify with)",
}


def _refuse_a_model_that_classifies_no_sequence(model) -> None:
    """SEQ_CLS puts the prompt in front of a sequence classifier's input; on a model with an output per position the
    prompt's rows add P outputs in front and the labels' positions no longer match (found 2026-12-07 by a probe:
    BertForQuestionAnswering's loss scored the answer span on the prompt's positions, without a word; plain PEFT
    alike). Refused by the model's class, as transformers' auto classes list it (a class of the user's own passes)."""
    from transformers.models.auto import modeling_auto

    name = type(model).__name__
    for mapping, what in _NOT_SEQUENCE_CLASSIFIERS.items():
        listed = getattr(modeling_auto, mapping, {}).values()  # (a family may list several: Funnel's two bare models)
        if any(name == value or (isinstance(value, (tuple, list)) and name in value) for value in listed):
            raise ValueError(f"task_type='SEQ_CLS' needs a sequence classifier (AutoModelForSequenceClassification); {name} is {what}, "
                             "where a prompt's rows in front would shift or add outputs. The plugin's task types are CAUSAL_LM, "
                             "SEQ_2_SEQ_LM and SEQ_CLS: load the model with AutoModelForSequenceClassification, or use LoRA.")  # fmt: skip


def _refuse_a_model_without_token_input(model) -> None:
    """A soft prompt goes in front of a text's tokens, or their keys and values: a model whose forward (or encoder's)
    takes neither `input_ids` nor `inputs_embeds` has no token input to go in front of (found 2026-12-07: Whisper's
    encoder reads `input_features`, and the prompt built, then failed at its first forward with a bare TypeError;
    Wav2Vec2's classifier reads `input_values`, and transformers' NotImplementedError for its input embeddings came
    out; plain PEFT fails alike)."""
    for module in modules_taking_the_input(model):
        parameters = inspect.signature(module.forward).parameters
        if any(parameter.kind == parameter.VAR_POSITIONAL for parameter in parameters.values()):
            continue  # (a wrapper's `forward(*args, **kwargs)` names no inputs of its own)
        if parameters and "input_ids" not in parameters and "inputs_embeds" not in parameters:
            takes = ", ".join([name for name, parameter in parameters.items() if parameter.kind != parameter.VAR_KEYWORD][:3] + ["..."])
            raise ValueError(f"{type(module).__name__} takes neither input_ids nor inputs_embeds (its forward takes {takes}): a soft prompt "
                             "goes in front of a text's token embeddings (or their keys and values in every layer), which this model "
                             "does not take. Use LoRA.")  # fmt: skip


def _refuse_inputs_read_from_ids(model) -> None:
    """A prompt goes in as `inputs_embeds` ([prompt; text]); models whose forward reads more from `input_ids` than their
    embedding rows (and a factor, `ids_embedding.py`) are refused, naming what (found 2026-12-07 by a probe; plain PEFT
    runs them without a word): Gemma 3n looks per-layer inputs up from the ids (1.73 off on a logit scale of 4.4, where
    its altup scales are trained), and ESM with `token_dropout=True` rescales each row by its share of mask tokens."""
    config = model.config
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    if getattr(text_config, "model_type", None) in ("gemma3n", "gemma3n_text") or getattr(config, "model_type", None) == "gemma3n":
        raise ValueError(f"{type(model).__name__} (Gemma 3n) also reads per-layer inputs looked up from the input ids, which a "
                         "soft prompt's rows (or the positions a deep prompt's keys and values stand for) have none of: soft "
                         "prompts are not supported there. Use LoRA.")  # fmt: skip
    if getattr(config, "model_type", None) == "esm" and getattr(config, "token_dropout", False):
        raise ValueError(f"{type(model).__name__} has token_dropout=True: its forward rescales each row's embeddings by its "
                         "share of mask tokens, read from input_ids, which the text given as inputs_embeds beside a prompt "
                         "skips. Load the model with token_dropout=False (a model trained with it then sees its text "
                         "scaled otherwise), or use LoRA.")  # fmt: skip


def _refuse_a_recurrent_state(model) -> None:
    """Mamba-style models (their forward takes `cache_params`) carry a state along the sequence instead of attending:
    left padding after the prompt decays its state, and generate's cached steps do not continue from a prompt fed as
    input rows (plain PEFT's prompt tuning alike). Hybrids (attention beside state-space, linear-attention or
    convolution layers) run where transformers keeps their state in its `DynamicCache` (left padding then goes in front
    of the prompt: `layer_prefix.counts_slots`); a cache class of their own (transformers 5.0's hybrids, MiniMax) is
    refused: neither shared-prefix generation nor a deep prompt's cache prefix reaches it (found 2026-12-06: cached and
    uncached generate apart, or failing, on Jamba, Bamba, Falcon-H1, Qwen3-Next, LFM2 and MiniMax)."""
    parameters = inspect.signature(model.forward).parameters
    if "cache_params" in parameters:
        raise ValueError(f"{type(model).__name__} keeps a recurrent state (cache_params) instead of attention: soft prompts "
                         "are not supported there (left-padded rows and cached generate would be wrong, as they are for "
                         "plain PEFT's prompt tuning). Use LoRA on such models.")  # fmt: skip
    recurrent = layer_prefix.recurrent_layers_of(model)
    if recurrent is None:
        return
    if not getattr(type(model), "_supports_default_dynamic_cache", lambda: True)():
        kept = "in a cache class of its own"
    elif hasattr(model, "prepare_inputs_for_generation") and "past_key_values" not in parameters:
        kept = "in its layers (its forward takes no past_key_values)"
    else:
        return
    import transformers

    raise ValueError(f"{type(model).__name__} has layers that carry a state along the sequence ({recurrent}) and, in "
                     f"transformers {transformers.__version__}, keeps it {kept}, which a prompt's cached generation cannot "
                     "reach: soft prompts are not supported there. Use LoRA, or a transformers release where the model "
                     "keeps that state in DynamicCache (in transformers 5.23 Jamba, Bamba, Qwen3-Next, LFM2 and other "
                     "hybrids do, and soft prompts run on them).")  # fmt: skip


def _refuse_a_cache_class_of_its_own(model) -> None:
    """A causal LM whose generate keeps its cache in a class of its own (transformers' `_supports_default_dynamic_cache`
    is False: XLNet's mems, Reformer; under 5.0 LFM2 even with attention layers only) takes neither the shared prefix's
    cache nor a deep prompt's (found 2026-12-08 by a probe: a TypeError from inside for every forward of an all-attention
    LFM2 under transformers 5.0; XLNet's generate failed in its own masks, plain PEFT alike)."""
    supports = getattr(type(model), "_supports_default_dynamic_cache", None)
    if callable(supports) and not supports():
        import transformers

        raise ValueError(f"{type(model).__name__}'s generate keeps its cache in a class of its own (transformers "
                         f"{transformers.__version__}), which a prompt's cached generation cannot reach: soft prompts are not "
                         "supported there as a causal LM. Use LoRA.")  # fmt: skip


def refuse_generate_of_an_inner_model(model) -> None:
    """Kosmos-2, BLIP-2 and InstructBLIP override `generate` to build their input and hand it to their language
    model's own `generate`, whose steps the prompt (put in front where the outer model runs its steps) never reaches:
    a prompted generate gave the unprompted model's tokens, without a word (found 2026-12-07 by a probe; plain PEFT
    alike). Refused, naming the inner call, from the class's own `generate` source."""
    generate = getattr(type(model), "generate", None)
    if generate is None or generate is GenerationMixin.generate:
        return
    try:
        source = inspect.getsource(generate)
    except (OSError, TypeError):
        return
    inner = re.search(r"self\.([\w.]+)\.generate\(", source)
    if inner is not None:
        raise ValueError(f"{type(model).__name__}.generate hands its input to self.{inner.group(1)}.generate, whose steps a soft "
                         "prompt in front of the outer model's input does not reach (it would generate as if unprompted): "
                         "generate with a prompt is not supported there. Train and score with forward, or use LoRA.")  # fmt: skip


def refuse_generate_numbering_from_one(model) -> None:
    """PaliGemma's generate numbers positions from 1 (its forward from the mask, from 0) and builds its prefix block
    (image and prefix text attending both ways) only while its first step feeds the whole input: a prompted generate
    put the prompt's positions and cache in front of both and disagreed with the same model's forward from its first
    token (4.8 off on a logit scale of 7.6, shallow and deep prompts; found 2026-12-07 by a probe). Its forward, which
    training and scoring use, takes the prompt exactly; generate is refused. It is the one family whose generate adds 1
    to its positions in transformers 5.0 and 5.23; a test scans every modeling file for another."""
    config = model.config
    if getattr(config, "model_type", None) == "paligemma":
        raise ValueError(f"{type(model).__name__} numbers its positions from 1 in generate and builds its prefix block "
                         "(image and prefix text) only at generate's first step, which a soft prompt in front does not "
                         "fit: generate with a prompt is not supported there (its forward is: train and score with it). "
                         "Generate with LoRA, or from a loop of forward calls.")  # fmt: skip
