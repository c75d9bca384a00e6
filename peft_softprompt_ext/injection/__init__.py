"""Putting soft prompts into a frozen transformers model: the hooks the seam (`_peft_compat.py`) calls from
`PeftModel`'s forward and generate, as `peft_softprompt_ext/__init__.py` installs them.

Plain functions over `PromptParts` (a transformers model, its input-embedding module and a prompt encoder); they
read nothing of PEFT. One module per path, and what they share:

    causal_forward.py    a causal LM's forward (shallow rows in front of the input; a deep prompt in every layer)
    causal_generate.py   a causal LM's generate: the call's prompts, its layout, each decoding step's inputs
    generation_cache.py  what generate's cache holds of the prompt (shared prefix, deep prompt, static caches)
    seq2seq.py           encoder-decoders: the prompt in front of the encoder input (or in every layer)
    classifier.py        sequence classifiers, encoders and last-token classifiers on causal decoders
    model_checks.py      the model a prompt is built on: its task type, what a prompt cannot run on
    inputs.py            the prompt's rows for a call, and what every path checks first
    positions.py         masks and position ids with the prompt in front; how much a cache holds
    padding_order.py     rows whose leading padding goes in front of the prompt, and outputs put back

What differs from PEFT's own prompt-tuning path, and why:
* Position ids follow the attention mask (`cumsum - 1`), the way `generate` computes them, and
  user-given position ids are shifted by the prompt length instead of being dropped. So a
  left-padded batch gets the same positions in `forward`, in `generate` with a cache and in
  `generate` without one.
* The prompt is injected only when the key/value cache is empty (a forward that continues a cache
  never re-injects it). PEFT 0.21 looks for the cache under `past_key_values`, which transformers
  5.24 renamed `cache`; there PEFT re-feeds the virtual tokens at every decoding step.
* Seq2seq models get the prompt in front of the encoder input only, so decoding with a cache is
  the model's own.
* Causal LMs run the prompt once per batch where that is exact (`shared_prefix.py`).
"""
