"""Text classification with a frozen model: verbalised labels scored by a causal LM, or SEQ_CLS.

Causal LMs classify by rank: each label has a verbaliser word (" positive"); the prediction is
the label whose word's tokens get the highest total log-probability after the templated input.
Training puts the loss on the correct label's tokens only. Batches are right-padded, and scores
are read at each row's last real token, so every method (prompt, LoRA, full) sees true positions.
"""

from __future__ import annotations

import torch


def pad_token_id(tokenizer) -> int:
    """The id batches are padded with: the tokenizer's pad token, else its end-of-text token (causal LMs often lack one)."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def label_token_ids(tokenizer, words) -> list[list[int]]:
    """Token ids of each verbaliser word; a word that tokenizes to nothing, or as another label's word does, is an error."""
    ids = []
    for word in words:
        tokens = tokenizer(word, add_special_tokens=False)["input_ids"]
        if not tokens:
            raise ValueError(f"label word {word!r} tokenizes to no tokens; choose a real word.")
        if tokens in ids:
            first = ids.index(tokens)
            raise ValueError(f"label words {first} and {len(ids)} ({words[first]!r} and {word!r}) tokenize to the same tokens "
                             f"{tokens}, so no score can tell their labels apart; give each label its own word.")  # fmt: skip
        ids.append(tokens)
    return ids


def prompt_ids(tokenizer, text: str, template: str, max_length: int) -> list[int]:
    """The templated input's ids, the text cut to `max_length` tokens first (the template is kept whole)."""
    text_ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(text_ids) > max_length:
        text = tokenizer.decode(text_ids[:max_length])
    return tokenizer(template.format(text=text), add_special_tokens=True)["input_ids"]


def causal_examples(tokenizer, texts, labels, template, label_ids, max_length) -> list[dict]:
    """Training examples: input = prompt + the label's tokens; loss only on the label's tokens."""
    examples = []
    for text, label in zip(texts, labels):
        prompt = prompt_ids(tokenizer, text, template, max_length)
        target = label_ids[label]
        examples.append({"input_ids": prompt + target, "labels": [-100] * len(prompt) + target})
    return examples


def seq_cls_examples(tokenizer, texts, labels, max_length) -> list[dict]:
    encoded = tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]
    return [{"input_ids": ids, "labels": int(label)} for ids, label in zip(encoded, labels)]


def collate(examples: list[dict], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a list of examples into tensors (labels padded with -100 when they are sequences)."""
    width = max(len(example["input_ids"]) for example in examples)
    input_ids = torch.full((len(examples), width), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(examples), width), dtype=torch.long)
    sequence_labels = isinstance(examples[0]["labels"], list)
    labels = torch.full((len(examples), width), -100, dtype=torch.long) if sequence_labels else torch.zeros(len(examples), dtype=torch.long)
    for row, example in enumerate(examples):
        length = len(example["input_ids"])
        input_ids[row, :length] = torch.tensor(example["input_ids"])
        attention_mask[row, :length] = 1
        if sequence_labels:
            labels[row, :length] = torch.tensor(example["labels"])
        else:
            labels[row] = example["labels"]
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


@torch.no_grad()
def rank_classify(model, prompts: list[list[int]], label_ids: list[list[int]], pad_token_id: int, batch_size: int = 16, progress=None):
    """Predicted label index per prompt: the label whose tokens have the highest summed log-prob.

    `progress`: an optional tqdm-like bar, advanced by the number of prompts scored.
    """
    predictions = []
    single_token = all(len(ids) == 1 for ids in label_ids)
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start : start + batch_size]
        if single_token:  # one forward scores every label: the next-token distribution
            scores = _next_token_log_probs(model, chunk, pad_token_id)[:, [ids[0] for ids in label_ids]]
        else:
            scores = torch.stack([_label_scores(model, chunk, ids, pad_token_id) for ids in label_ids], dim=1)
        predictions += scores.argmax(dim=1).tolist()
        if progress is not None:
            progress.update(len(chunk))
    return predictions


def _next_token_log_probs(model, prompts, pad_token_id) -> torch.Tensor:
    """[len(prompts), vocab] log-probs of the token after each (right-padded) prompt."""
    batch = collate([{"input_ids": p, "labels": [0] * len(p)} for p in prompts], pad_token_id)
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
    offset = logits.shape[1] - batch["input_ids"].shape[1]
    last = torch.tensor([offset + len(p) - 1 for p in prompts])
    return torch.log_softmax(logits[torch.arange(len(prompts)), last], dim=-1)


def _label_scores(model, prompts, label, pad_token_id) -> torch.Tensor:
    """Summed log-prob [len(prompts)] of the `label` tokens following each prompt.

    The label's tokens are passed as labels, as in training, so that an input-dependent prompt (a mixture with
    mixing="attention") reads the prompt alone, as when the next token is scored or generated."""
    batch = collate([{"input_ids": p + label, "labels": [-100] * len(p) + label} for p in prompts], pad_token_id)
    logits = model(**batch).logits.float()
    log_probs = torch.log_softmax(logits, dim=-1)
    total = torch.zeros(len(prompts))
    for row, prompt in enumerate(prompts):
        offset = logits.shape[1] - batch["input_ids"].shape[1]  # prompt methods add virtual tokens in front
        for index, token in enumerate(label):
            position = offset + len(prompt) + index - 1  # the logit that predicts this label token
            total[row] += log_probs[row, position, token]
    return total


@torch.no_grad()
def seq_cls_classify(model, examples: list[dict], pad_token_id: int, batch_size: int = 32, progress=None) -> list[int]:
    predictions = []
    for start in range(0, len(examples), batch_size):
        batch = collate(examples[start : start + batch_size], pad_token_id)
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        predictions += logits.argmax(dim=-1).tolist()
        if progress is not None:
            progress.update(batch["input_ids"].shape[0])
    return predictions
