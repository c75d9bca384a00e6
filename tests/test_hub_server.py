"""The loopback Hub (tests/hub_server.py) against the real huggingface_hub / transformers / peft clients."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hub_server import LoopbackHub, git_blob_oid, hub_client

huggingface_hub = pytest.importorskip("huggingface_hub")
from huggingface_hub import HfApi  # noqa: E402
from huggingface_hub.errors import EntryNotFoundError, RevisionNotFoundError  # noqa: E402


@pytest.fixture
def hub(tmp_path):
    yield from hub_client(tmp_path)


def _safetensors_bytes(value: float) -> bytes:
    torch = pytest.importorskip("torch")
    from safetensors.torch import save

    return save({"w": torch.full((2, 3), value)})


def _folder(root: Path, text: str, value: float) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "notes.txt").write_text(text)
    (root / "weights.safetensors").write_bytes(_safetensors_bytes(value))
    return root


def test_upload_download_by_branch_and_sha(hub, tmp_path):
    api = HfApi()
    assert api.endpoint == hub.endpoint
    repo_url = huggingface_hub.create_repo("org/files")
    assert repo_url.repo_id == "org/files"
    huggingface_hub.create_repo("org/files", exist_ok=True)  # 409 -> tolerated

    up1 = _folder(tmp_path / "v1", "first\n", 1.0)
    c1 = huggingface_hub.upload_folder(repo_id="org/files", folder_path=up1).oid
    assert len(c1) == 40 and hub.head("org/files") == c1
    for rev in ("main", c1):
        for name in ("notes.txt", "weights.safetensors"):
            path = huggingface_hub.hf_hub_download("org/files", name, revision=rev)
            assert Path(path).read_bytes() == (up1 / name).read_bytes()
    assert str(tmp_path / "hf_home") in path  # private cache, not ~/.cache

    up2 = _folder(tmp_path / "v2", "second\n", 2.0)
    c2 = huggingface_hub.upload_folder(repo_id="org/files", folder_path=up2).oid
    assert c2 != c1 and hub.head("org/files") == c2
    assert Path(huggingface_hub.hf_hub_download("org/files", "notes.txt")).read_text() == "second\n"
    assert Path(huggingface_hub.hf_hub_download("org/files", "notes.txt", revision=c1)).read_text() == "first\n"
    old = huggingface_hub.hf_hub_download("org/files", "weights.safetensors", revision=c1)
    assert Path(old).read_bytes() == (up1 / "weights.safetensors").read_bytes()

    snap = Path(huggingface_hub.snapshot_download("org/files", revision=c1))
    assert snap.name == c1
    assert (snap / "notes.txt").read_text() == "first\n"
    assert sorted(api.list_repo_files("org/files")) == ["notes.txt", "weights.safetensors"]
    assert api.model_info("org/files").sha == c2
    assert api.model_info("org/files", revision=c1).sha == c1
    info = api.get_paths_info("org/files", ["notes.txt"], revision=c1)
    assert info[0].blob_id == git_blob_oid(b"first\n")


def test_missing_entries_and_revisions(hub):
    huggingface_hub.create_repo("org/empty")
    with pytest.raises(EntryNotFoundError):
        huggingface_hub.hf_hub_download("org/empty", "nope.txt")
    assert not huggingface_hub.file_exists("org/empty", "nope.txt")
    with pytest.raises(RevisionNotFoundError):
        huggingface_hub.hf_hub_download("org/empty", "nope.txt", revision="no-such-branch")
    assert not huggingface_hub.repo_exists("org/missing")
    assert hub.unhandled == []


def test_model_card_roundtrip(hub):
    from huggingface_hub import ModelCard

    huggingface_hub.create_repo("org/card")
    card = ModelCard("---\nlicense: mit\ntags:\n- prompt-tuning\n---\n\n# Tiny card\n")
    card.push_to_hub("org/card")
    loaded = ModelCard.load("org/card")
    assert loaded.data.license == "mit"
    assert "# Tiny card" in loaded.text


def test_subprocess_env(tmp_path):
    with LoopbackHub() as hub:
        code = (
            "import huggingface_hub as h, pathlib, sys;"
            "h.create_repo('org/sub');"
            "h.upload_file(path_or_fileobj=b'abc', path_in_repo='x.txt', repo_id='org/sub');"
            "p = h.hf_hub_download('org/sub', 'x.txt');"
            "assert pathlib.Path(p).read_bytes() == b'abc';"
            "assert p.startswith(sys.argv[1]), p"
        )
        env = hub.env(tmp_path)
        subprocess.run([sys.executable, "-c", code, str(tmp_path)], env=env, check=True, timeout=60)
        assert hub.files("org/sub") == {"x.txt": b"abc"}
    assert "HF_HUB_OFFLINE" not in env and env["HF_ENDPOINT"] == hub.endpoint


def test_peft_prompt_tuning_push_and_load(hub):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    peft = pytest.importorskip("peft")

    def base():
        torch.manual_seed(0)
        cfg = transformers.GPT2Config(vocab_size=100, n_embd=16, n_layer=1, n_head=2)
        return transformers.AutoModelForCausalLM.from_config(cfg).eval()

    torch.manual_seed(1)
    model = peft.get_peft_model(base(), peft.PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=3))
    model.eval()
    commit = model.push_to_hub("org/tiny-prompt")
    files = hub.files("org/tiny-prompt")
    assert {"adapter_config.json", "adapter_model.safetensors", "README.md"} <= set(files)

    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        expected = model(input_ids=ids).logits
        for rev in (None, "main", commit.oid):
            kw = {} if rev is None else {"revision": rev}
            loaded = peft.PeftModel.from_pretrained(base(), "org/tiny-prompt", **kw).eval()
            torch.testing.assert_close(loaded(input_ids=ids).logits, expected, atol=1e-5, rtol=0)

    # transformers' PushToHubMixin replaces peft's adapter card with a generic one (library_name:
    # transformers); push a proper card on top, then the adapter still loads at the older commit.
    assert huggingface_hub.ModelCard.load("org/tiny-prompt").data.library_name == "transformers"
    card = huggingface_hub.ModelCard("---\nlibrary_name: peft\nbase_model: tiny-gpt2\n---\n\n# Tiny prompt\n")
    card.push_to_hub("org/tiny-prompt")
    assert hub.head("org/tiny-prompt") != commit.oid
    assert huggingface_hub.ModelCard.load("org/tiny-prompt").data.library_name == "peft"
    with torch.no_grad():
        loaded = peft.PeftModel.from_pretrained(base(), "org/tiny-prompt", revision=commit.oid).eval()
        torch.testing.assert_close(loaded(input_ids=ids).logits, expected, atol=1e-5, rtol=0)
    assert hub.unhandled == []


def test_configure_client_restores(tmp_path):
    from huggingface_hub import constants, hf_api

    before = (constants.ENDPOINT, constants.HF_HUB_CACHE, constants.HF_HUB_OFFLINE, hf_api.api.endpoint)
    with LoopbackHub() as hub, hub.configure_client(tmp_path):
        assert constants.ENDPOINT == hub.endpoint == hf_api.api.endpoint
        assert constants.HF_HUB_CACHE.startswith(str(tmp_path)) and not constants.HF_HUB_OFFLINE
    assert (constants.ENDPOINT, constants.HF_HUB_CACHE, constants.HF_HUB_OFFLINE, hf_api.api.endpoint) == before
