"""Hub sharing with the real huggingface_hub client against a loopback Hub (tests/hub_server.py)."""

import os
import subprocess
import sys

import pytest
import torch
from huggingface_hub import ModelCard, upload_folder
from peft import PeftModel

import testing_common as common
from hub_server import hub_client
from peft_softprompt_ext import MixturePromptTuningConfig, attach_results

REPO_ID = "org/tiny-soft-prompt"


@pytest.fixture
def hub(tmp_path):
    yield from hub_client(tmp_path / "client")


@pytest.fixture
def pushed(hub):
    peft_model, _ = common.make_peft_model("gpt2", "vocab_top_frequent")
    common.train_steps(peft_model, common.batch_for("gpt2"), steps=2)
    attach_results(peft_model, {"method": "vocab_sampled", "task": "movie_sentiment", "seed": 0, "steps": 2,
                                "batch_size": 3, "metrics": {"accuracy": 0.75, "macro_f1": 0.7}})  # fmt: skip
    peft_model.push_to_hub(REPO_ID)
    return peft_model


def logits(model):
    return common.forward_logits(model, common.inference_batch("gpt2"))


def test_push_then_pull_gives_equal_logits(hub, pushed):
    assert {"adapter_config.json", "adapter_model.safetensors", "README.md", "vanilla/adapter_config.json",
            "vanilla/adapter_model.safetensors"} <= set(hub.files(REPO_ID))  # fmt: skip
    pulled = PeftModel.from_pretrained(common.tiny_model("gpt2")[0], REPO_ID)
    torch.testing.assert_close(logits(pulled), logits(pushed), rtol=1e-5, atol=1e-5)


def test_pushed_card_parses_and_carries_the_fields(hub, pushed):
    card = ModelCard.load(REPO_ID)
    assert card.data.library_name == "peft"
    assert {"prompt-tuning", "soft-prompt", "peft-softprompt-ext", "vocab_sampled_prompt_tuning"} <= set(card.data.tags)
    for needle in ('"vocab_sampling": "top_frequent"', '"num_virtual_tokens": 5', "| accuracy | 0.7500 |",
                   "nearest tokens (cosine)", 'subfolder="vanilla"', f"'{REPO_ID}'", "trainable parameters"):  # fmt: skip
        assert needle in card.text, needle


def test_plain_peft_pulls_the_vanilla_copy_in_a_process_without_the_plugin(hub, pushed, tmp_path):
    base_dir = tmp_path / "base"
    common.tiny_model("gpt2")[0].save_pretrained(base_dir)
    batch = common.inference_batch("gpt2")
    torch.save(batch, tmp_path / "batch.pt")
    torch.save(logits(pushed), tmp_path / "expected.pt")
    code = (
        "import torch\nfrom peft import PeftModel\nfrom transformers import AutoModelForCausalLM\n"
        f"base = AutoModelForCausalLM.from_pretrained({str(base_dir)!r}).eval()\n"
        f"model = PeftModel.from_pretrained(base, {REPO_ID!r}, subfolder='vanilla').eval()\n"
        f"out = model(**torch.load({str(tmp_path / 'batch.pt')!r})).logits\n"
        f"print('DIFF', (out - torch.load({str(tmp_path / 'expected.pt')!r})).abs().max().item())\n"
    )
    env = hub.env(tmp_path / "other-cache")
    guard = "import sys\nsys.modules['peft_softprompt_ext'] = None\n"
    result = subprocess.run([sys.executable, "-c", guard + code], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert float(result.stdout.split("DIFF")[-1]) <= 1e-5


def test_pull_at_a_revision(hub, pushed):
    first = hub.head(REPO_ID)
    with torch.no_grad():
        pushed.prompt_encoder["default"].embedding.weight.add_(0.5)
    pushed.push_to_hub(REPO_ID)
    assert hub.head(REPO_ID) != first
    old = PeftModel.from_pretrained(common.tiny_model("gpt2")[0], REPO_ID, revision=first)
    new = PeftModel.from_pretrained(common.tiny_model("gpt2")[0], REPO_ID, revision="main")
    assert not torch.allclose(logits(old), logits(new))
    torch.testing.assert_close(logits(new), logits(pushed), rtol=1e-5, atol=1e-5)


def test_push_to_a_new_branch_creates_it(hub, pushed):
    pushed.push_to_hub(REPO_ID, revision="experiment")  # as plain PEFT (transformers) does
    assert hub.head(REPO_ID, branch="experiment")
    pulled = PeftModel.from_pretrained(common.tiny_model("gpt2")[0], REPO_ID, revision="experiment")
    torch.testing.assert_close(logits(pulled), logits(pushed), rtol=1e-5, atol=1e-5)


def test_a_push_replaces_every_adapters_old_plain_copies(hub):
    import peft

    def mixture(names):
        return MixturePromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=5, source_prompts=list(common.bank_folders("gpt2")),
                                         num_tasks=2, mixing="one_hot", task_names=names)  # fmt: skip

    peft_model = peft.get_peft_model(common.tiny_model("gpt2")[0], mixture(["a", "b"]))  # PEFT keeps one type per model
    peft_model.add_adapter("mix", mixture(["x", "y"]))
    peft_model.push_to_hub(REPO_ID)
    assert {"mix/vanilla/x/adapter_config.json", "mix/vanilla/y/adapter_config.json"} <= set(hub.files(REPO_ID))
    peft_model.delete_adapter("mix")
    peft_model.add_adapter("mix", mixture(["p", "q"]))
    peft_model.push_to_hub(REPO_ID)
    files = set(hub.files(REPO_ID))
    assert {"mix/vanilla/p/adapter_config.json", "mix/vanilla/q/adapter_config.json"} <= files
    assert not any(name.startswith(("mix/vanilla/x/", "mix/vanilla/y/")) for name in files), sorted(files)


def test_a_push_of_another_adapter_alone_leaves_the_repos_default_adapter(hub, pushed):
    """Found 2026-12-07 by a probe: pushing a model whose only adapter is not "default" deleted the repo's vanilla/ copy
    of its default adapter and replaced its card, while the default adapter's own files stayed (plain PEFT deletes
    nothing there): the card's plain-PEFT instructions then failed."""
    import peft

    before = hub.files(REPO_ID)
    other = common.all_configs()["vocab_uniform"]("CAUSAL_LM", "gpt2")
    peft.get_peft_model(common.tiny_model("gpt2")[0], other, adapter_name="other").push_to_hub(REPO_ID)
    files = hub.files(REPO_ID)
    assert {name: files.get(name) for name in before} == before
    assert {"other/adapter_config.json", "other/vanilla/adapter_config.json", "other/README.md"} <= set(files)
    plain = PeftModel.from_pretrained(common.tiny_model("gpt2")[0], REPO_ID, subfolder="vanilla")
    common.assert_float32_paths_close(logits(plain), logits(pushed))


def test_mixture_bank_accepts_repo_ids(hub, pushed):
    model, _ = common.tiny_model("gpt2")
    config = MixturePromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=5, num_tasks=1, mixing="one_hot",
                                       source_prompts=[REPO_ID])  # fmt: skip
    import peft

    served = peft.get_peft_model(model, config)
    torch.testing.assert_close(served.prompt_encoder["default"].bank[0], pushed.prompt_encoder["default"].embedding.weight.detach())


def test_pickle_only_repo_is_refused(hub, tmp_path):
    from huggingface_hub import create_repo

    peft_model, _ = common.make_peft_model("gpt2", "vocab_uniform")
    peft_model.save_pretrained(tmp_path / "adapter")
    os.rename(tmp_path / "adapter" / "adapter_model.safetensors", tmp_path / "adapter" / "adapter_model.bin")
    create_repo("org/pickled")
    upload_folder(repo_id="org/pickled", folder_path=str(tmp_path / "adapter"))
    with pytest.raises(ValueError, match="safetensors only"):
        PeftModel.from_pretrained(common.tiny_model("gpt2")[0], "org/pickled")


def _offline_pull_logits_diff(tmp_path, repo_id: str, expected_model) -> float:
    """Max |logits - expected_model's| of PeftModel.from_pretrained(base, repo_id) in a fresh process with the plugin,
    offline, from the cache at tmp_path/hub."""
    base_dir = tmp_path / "base"
    common.tiny_model("gpt2")[0].save_pretrained(base_dir)
    torch.save(logits(expected_model), tmp_path / "expected.pt")
    torch.save(common.inference_batch("gpt2"), tmp_path / "batch.pt")
    code = (
        "import torch, peft_softprompt_ext\nfrom peft import PeftModel\nfrom transformers import AutoModelForCausalLM\n"
        f"base = AutoModelForCausalLM.from_pretrained({str(base_dir)!r}).eval()\n"
        f"model = PeftModel.from_pretrained(base, {repo_id!r}).eval()\n"
        f"out = model(**torch.load({str(tmp_path / 'batch.pt')!r})).logits\n"
        f"print('DIFF', (out - torch.load({str(tmp_path / 'expected.pt')!r})).abs().max().item())\n"
    )
    env = dict(os.environ, HF_HUB_CACHE=str(tmp_path / "hub"), HF_HUB_OFFLINE="1", HF_ENDPOINT="http://127.0.0.1:9")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300,
                            cwd=os.path.dirname(os.path.dirname(__file__)))  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return float(result.stdout.split("DIFF")[-1])


def _cached_snapshot(tmp_path, repo_id: str, commit: str):
    """An empty snapshot folder of `repo_id` at `commit` in the cache at tmp_path/hub, its main ref set to it."""
    repo = tmp_path / "hub" / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    (repo / "snapshots" / commit).mkdir(parents=True)
    return repo / "snapshots" / commit


def test_pull_from_a_prepopulated_offline_cache(tmp_path):
    peft_model, _ = common.make_peft_model("gpt2", "vocab_uniform")
    peft_model.save_pretrained(_cached_snapshot(tmp_path, "org/cached", "a" * 40))
    assert _offline_pull_logits_diff(tmp_path, "org/cached", peft_model) <= 1e-5


def test_a_plain_pickle_only_adapter_loads_offline_from_the_cache_with_the_plugin_imported(tmp_path):
    """A review of the not-cached message: offline, a plain PEFT repo with adapter_model.bin only (PEFT loads it) failed
    with the plugin imported, its optional safetensors lookup taken for a file to be downloaded."""
    import peft

    plain = peft.get_peft_model(common.tiny_model("gpt2")[0], peft.PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4))
    torch.nn.init.normal_(plain.prompt_encoder["default"].embedding.weight, generator=torch.Generator().manual_seed(0))
    snapshot = _cached_snapshot(tmp_path, "org/plain-pickle", "b" * 40)
    plain.peft_config["default"].save_pretrained(snapshot)
    torch.save(peft.get_peft_model_state_dict(plain), snapshot / "adapter_model.bin")  # PEFT's own pickle weights
    assert _offline_pull_logits_diff(tmp_path, "org/plain-pickle", plain) <= 1e-5


def test_projection_and_its_source_adapter_load_from_repo_ids(hub, tmp_path):
    import peft
    from huggingface_hub import create_repo

    from peft_softprompt_ext import ProjectedPromptTuningConfig

    create_repo("org/projection")
    upload_folder(repo_id="org/projection", folder_path=common.projection_folder("gpt2"))
    create_repo("org/source")
    upload_folder(repo_id="org/source", folder_path=common.source_adapter_folder("gpt2"))
    from_hub = ProjectedPromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=5, source_adapter="org/source",
                                           projection="org/projection")  # fmt: skip
    local = ProjectedPromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=5, source_adapter=common.source_adapter_folder("gpt2"),
                                        projection=common.projection_folder("gpt2"))  # fmt: skip
    hub_prompt = peft.get_peft_model(common.tiny_model("gpt2")[0], from_hub).prompt_encoder["default"].embedding.weight
    local_prompt = peft.get_peft_model(common.tiny_model("gpt2")[0], local).prompt_encoder["default"].embedding.weight
    torch.testing.assert_close(hub_prompt, local_prompt, rtol=0, atol=0)


def test_a_config_given_to_a_pull_does_not_hide_the_repos_own_fingerprint(hub, pushed):
    """Found 2026-12-05: from_pretrained(repo_id, config=<a config of another base model>) checked only the given
    config, never the repo's own adapter_config.json, so a prompt trained on another base loaded unchecked (a
    local folder was checked already); a config built by hand takes the repo's fingerprint once checked."""
    import peft

    from peft_softprompt_ext import VocabSampledPromptTuningConfig

    other = common.tiny_model("gpt2", seed=7)[0]
    host = peft.get_peft_model(other, VocabSampledPromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=5))
    with pytest.raises(ValueError, match=r"trained on another base model: embedding_digest"):
        PeftModel.from_pretrained(common.tiny_model("gpt2", seed=7)[0], REPO_ID, config=host.peft_config["default"])
    fresh = common.conformance_config("vocab_top_frequent", "CAUSAL_LM", "gpt2")
    pulled = PeftModel.from_pretrained(common.tiny_model("gpt2")[0], REPO_ID, config=fresh)
    torch.testing.assert_close(logits(pulled), logits(pushed), rtol=1e-5, atol=1e-5)


def test_plain_peft_pulls_of_the_vanilla_copy_are_checked_while_the_plugin_is_imported(hub, pushed):
    """Found 2026-12-05: the fingerprint in a plugin-made plain copy's metadata was checked for local folders only;
    pulled from the Hub into another base model, the copy loaded unchecked."""
    with pytest.raises(ValueError, match=r"a plain PEFT copy made by peft_softprompt_ext, .*trained on another base model"):
        PeftModel.from_pretrained(common.tiny_model("gpt2", seed=7)[0], REPO_ID, subfolder="vanilla")
    import peft

    host = peft.get_peft_model(common.tiny_model("gpt2", seed=7)[0], peft.PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=5))
    with pytest.raises(ValueError, match=r"a plain PEFT copy made by peft_softprompt_ext, .*trained on another base model"):
        host.load_adapter(REPO_ID, adapter_name="plain", subfolder="vanilla")
    pulled = PeftModel.from_pretrained(common.tiny_model("gpt2")[0], REPO_ID, subfolder="vanilla")  # its own base
    torch.testing.assert_close(logits(pulled), logits(pushed), rtol=1e-5, atol=1e-5)


def test_an_adapter_named_vanilla_is_refused_where_a_default_plugin_adapters_plain_copy_is(hub, pushed, tmp_path):
    """Found 2026-12-07 by a probe: pushed (or saved) on its own into a repo (folder) holding a plugin adapter, an adapter
    named "vanilla" replaced that adapter's plain copy vanilla/, which the card loads (4.33 off); one save holding both
    was refused already. Into a folder without one it is saved as before."""
    import peft

    lora = peft.get_peft_model(common.tiny_model("gpt2")[0], peft.LoraConfig(task_type="CAUSAL_LM", r=2, target_modules=["c_attn"]),
                               adapter_name="vanilla")  # fmt: skip
    pushed.save_pretrained(tmp_path / "plugin")
    with pytest.raises(ValueError, match=r"adapter named 'vanilla' .*vanilla/.*plain PEFT copy"):  # (a third review: plain
        lora.save_pretrained(tmp_path / "plugin")  # PEFT's own save of it was unchecked)
    lone = peft.get_peft_model(common.tiny_model("gpt2")[0], common.all_configs()["vocab_uniform"]("CAUSAL_LM", "gpt2"), adapter_name="vanilla")
    before = hub.files(REPO_ID)
    with pytest.raises(ValueError, match=r"adapter named 'vanilla' .*vanilla/.*plain PEFT copy"):
        lone.push_to_hub(REPO_ID)
    assert hub.files(REPO_ID) == before
    pushed.save_pretrained(tmp_path / "folder")
    copy = (tmp_path / "folder" / "vanilla" / "adapter_model.safetensors").read_bytes()
    with pytest.raises(ValueError, match=r"adapter named 'vanilla' .*vanilla/.*plain PEFT copy"):
        lone.save_pretrained(tmp_path / "folder")
    assert (tmp_path / "folder" / "vanilla" / "adapter_model.safetensors").read_bytes() == copy
    lone.save_pretrained(tmp_path / "empty")
    lone.push_to_hub("org/other-repo")
    assert "vanilla/adapter_config.json" in hub.files("org/other-repo")


def test_a_push_keeps_a_readme_the_user_wrote_on_the_hub(hub):
    """Found 2026-12-07 by a probe: the push replaced a README.md of the user's own in the repo (its text and license)
    with the plugin's card, without a word; plain PEFT's push keeps its text, and a local save keeps it, warning."""
    from huggingface_hub import create_repo, upload_file

    mine = b"---\nlicense: mit\n---\n# My prompt\n\nEvaluated by hand: 91.2% accuracy.\n"
    create_repo(REPO_ID)
    upload_file(path_or_fileobj=mine, path_in_repo="README.md", repo_id=REPO_ID)
    peft_model, _ = common.make_peft_model("gpt2", "vocab_uniform")
    with pytest.warns(UserWarning, match=r"README.md in .*was not written by this plugin: kept"):
        peft_model.push_to_hub(REPO_ID)
    files = hub.files(REPO_ID)
    assert files["README.md"] == mine and {"adapter_config.json", "vanilla/adapter_config.json"} <= set(files)
    peft_model.push_to_hub("org/new-repo")  # a repo without one gets the card
    assert b"peft-softprompt-ext" in hub.files("org/new-repo")["README.md"]


def test_a_push_deletes_the_plain_copies_of_its_own_adapters_only_whatever_their_names(hub):
    """Found 2026-12-07 by a probe: adapter names went into the push's delete patterns as globs, so pushing an adapter
    named "a?" deleted adapter "ab"'s plain copy (ab/vanilla/), whose card still pointed there."""
    import peft

    config = common.all_configs()["vocab_uniform"]("CAUSAL_LM", "gpt2")
    peft_model, _ = common.make_peft_model("gpt2", "vocab_uniform")
    peft_model.add_adapter("ab", config)
    peft_model.push_to_hub(REPO_ID)
    theirs = {name: data for name, data in hub.files(REPO_ID).items() if name.startswith("ab/")}
    assert "ab/vanilla/adapter_model.safetensors" in theirs
    peft.get_peft_model(common.tiny_model("gpt2")[0], config, adapter_name="a?").push_to_hub(REPO_ID)
    assert {name: data for name, data in hub.files(REPO_ID).items() if name.startswith("ab/")} == theirs


def test_a_pull_of_a_subfolder_from_the_offline_cache(hub, tmp_path):
    """Found 2026-12-07 by a probe: offline, PeftModel.from_pretrained(base, repo, subfolder=...) failed although every
    file was cached (PEFT 0.21 looks the weights up at <subfolder>/<subfolder>/: plain PEFT alike), and the cards load
    plain copies and other adapters that way. With the plugin imported the cached subfolder is read."""
    peft_model, _ = common.make_peft_model("gpt2", "vocab_uniform")
    peft_model.add_adapter("other", common.all_configs()["vocab_top_frequent"]("CAUSAL_LM", "gpt2"))
    peft_model.push_to_hub(REPO_ID)
    for subfolder in ("other", "vanilla", None):  # online: fills the cache
        PeftModel.from_pretrained(common.tiny_model("gpt2")[0], REPO_ID, subfolder=subfolder)
    peft_model.set_adapter("other")
    torch.save(logits(peft_model), tmp_path / "other.pt")
    peft_model.set_adapter("default")
    torch.save(logits(peft_model), tmp_path / "vanilla.pt")
    torch.save(common.inference_batch("gpt2"), tmp_path / "batch.pt")
    base_dir = tmp_path / "base"
    common.tiny_model("gpt2")[0].save_pretrained(base_dir)
    code = (
        "import torch, peft_softprompt_ext\nfrom peft import PeftModel\nfrom transformers import AutoModelForCausalLM\n"
        "for sub in ('other', 'vanilla'):\n"
        f"    base = AutoModelForCausalLM.from_pretrained({str(base_dir)!r}).eval()\n"
        f"    out = PeftModel.from_pretrained(base, {REPO_ID!r}, subfolder=sub).eval()(**torch.load({str(tmp_path / 'batch.pt')!r})).logits\n"
        f"    print('DIFF', sub, (out - torch.load(f'{tmp_path}/{{sub}}.pt')).abs().max().item())\n"
        # the plain copy as a second adapter: refused by PEFT as online (the review: offline it was skipped silently,
        # taken for a local save's own plain copy)
        f"model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained({str(base_dir)!r}), {REPO_ID!r})\n"
        "try:\n"
        f"    model.load_adapter({REPO_ID!r}, 'vanilla', subfolder='vanilla'); print('LOADED', list(model.peft_config))\n"
        "except ValueError as error:\n"
        "    print('REFUSED', error)\n"
        "for sub in ('other',):  # a repo never pulled: said so, not 'the repo has no adapter_config.json'\n"
        "    try:\n"
        f"        PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained({str(base_dir)!r}), 'org/never', subfolder=sub)\n"
        "    except OSError as error:\n"
        "        print('MISSING', error)\n"
    )
    result = _run_offline_with_the_clients_cache(hub, tmp_path, code)
    assert result.returncode == 0, result.stderr[-3000:]
    diffs = {line.split()[1]: float(line.split()[2]) for line in result.stdout.splitlines() if line.startswith("DIFF")}
    assert set(diffs) == {"other", "vanilla"} and max(diffs.values()) <= 1e-5, diffs
    assert "REFUSED Cannot combine adapters with different peft types" in result.stdout, result.stdout
    assert "is not in the local Hugging Face cache, and downloads are off" in result.stdout, result.stdout


def _run_offline_with_the_clients_cache(hub, tmp_path, code: str) -> subprocess.CompletedProcess:
    """`code` in a fresh process, offline, with the cache the in-process client filled (the `hub` fixture's)."""
    env = dict(hub.env(tmp_path / "client"), HF_HUB_OFFLINE="1", HF_ENDPOINT="http://127.0.0.1:9")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300,
                          cwd=os.path.dirname(os.path.dirname(__file__)))  # fmt: skip


def test_a_pull_that_cannot_download_names_the_cache_and_why(hub, tmp_path, monkeypatch):
    """A second review: a partial cache (the config pulled, the weights not) was reported offline as a repo without
    safetensors ("never a pickle"), and online with the Hub unreachable as "downloads are off"."""
    from huggingface_hub import hf_hub_download

    peft_model, _ = common.make_peft_model("gpt2", "vocab_uniform")
    peft_model.push_to_hub(REPO_ID)
    hf_hub_download(REPO_ID, "adapter_config.json")  # the config only
    base_dir = tmp_path / "base"
    common.tiny_model("gpt2")[0].save_pretrained(base_dir)
    code = (
        "import peft_softprompt_ext\nfrom peft import PeftModel\nfrom transformers import AutoModelForCausalLM\n"
        f"base = AutoModelForCausalLM.from_pretrained({str(base_dir)!r})\n"
        "try:\n"
        f"    PeftModel.from_pretrained(base, {REPO_ID!r})\n"
        "except OSError as error:\n"
        "    print('MISSING', error)\n"
    )
    result = _run_offline_with_the_clients_cache(hub, tmp_path, code)
    assert "adapter_model.safetensors is not in the local Hugging Face cache, and downloads are off" in result.stdout, result.stdout
    # online, the Hub unreachable (huggingface_hub retries for half a minute there: its answer is stood in for)
    import huggingface_hub

    from peft_softprompt_ext import sources

    def unreachable(*args, **kwargs):
        raise huggingface_hub.errors.LocalEntryNotFoundError("cannot reach the Hub; check your connection")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", unreachable)
    with pytest.raises(FileNotFoundError, match=r"not in the local Hugging Face cache, and the Hub could not be reached \(cannot reach"):
        sources.resolve_file("org/never", "adapter_config.json")


def test_a_plugin_save_never_replaces_an_adapter_named_vanilla_and_a_lone_one_fits_beside_a_mixture_without_copies(hub, tmp_path):
    """The review of the fix above: a push (or save) of a default plugin adapter replaced a LoRA adapter named 'vanilla'
    already in the repo (folder) with its plain copy; and a lone 'vanilla' adapter was refused beside an attention
    mixture, which writes no plain copy."""
    import peft

    lora = peft.get_peft_model(common.tiny_model("gpt2")[0], peft.LoraConfig(task_type="CAUSAL_LM", r=2, target_modules=["c_attn"]),
                               adapter_name="vanilla")  # fmt: skip
    lora.push_to_hub(REPO_ID)
    lora.save_pretrained(tmp_path / "folder")
    before, kept = hub.files(REPO_ID), (tmp_path / "folder" / "vanilla" / "adapter_model.safetensors").read_bytes()
    peft_model, _ = common.make_peft_model("gpt2", "vocab_uniform")
    with pytest.raises(ValueError, match=r"vanilla/ in the repo .* holds an adapter named 'vanilla' \(peft_type 'LORA'\)"):
        peft_model.push_to_hub(REPO_ID)
    with pytest.raises(ValueError, match=r"vanilla/ in '.*folder' holds an adapter named 'vanilla' \(peft_type 'LORA'\)"):
        peft_model.save_pretrained(tmp_path / "folder")
    assert hub.files(REPO_ID) == before and (tmp_path / "folder" / "vanilla" / "adapter_model.safetensors").read_bytes() == kept
    peft_model.save_pretrained(tmp_path / "own")
    peft_model.save_pretrained(tmp_path / "own")  # again: its own plain copy is replaced
    attention = peft.get_peft_model(common.tiny_model("gpt2")[0], common.all_configs()["mixture_attention"]("CAUSAL_LM", "gpt2"))
    attention.save_pretrained(tmp_path / "attention")
    attention.push_to_hub("org/attention")
    lone = peft.get_peft_model(common.tiny_model("gpt2")[0], common.all_configs()["mixture_attention"]("CAUSAL_LM", "gpt2"), adapter_name="vanilla")
    lone.save_pretrained(tmp_path / "attention")
    lone.save_pretrained(tmp_path / "attention")  # again, over itself (a second review: refused as the top's copy)
    lone.push_to_hub("org/attention")
    lone.push_to_hub("org/attention")
    assert "vanilla/adapter_config.json" in hub.files("org/attention")
    with pytest.raises(ValueError, match=r"holds an adapter named 'vanilla' \(peft_type 'MIXTURE_PROMPT_TUNING'\)"):
        attention.save_pretrained(tmp_path / "attention")  # the top's save would drop vanilla/, the lone adapter
    both = peft.get_peft_model(common.tiny_model("gpt2")[0], common.all_configs()["mixture_attention"]("CAUSAL_LM", "gpt2"))
    both.add_adapter("vanilla", common.all_configs()["mixture_attention"]("CAUSAL_LM", "gpt2"))
    both.save_pretrained(tmp_path / "both")
    both.save_pretrained(tmp_path / "both")  # (the second review: the second save was refused)
    # a plain PEFT adapter named 'vanilla' beside an attention mixture (which writes no copy) is no plain copy of it
    plain = peft.get_peft_model(common.tiny_model("gpt2")[0], peft.PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=5),
                                adapter_name="vanilla")  # fmt: skip
    attention.save_pretrained(tmp_path / "attention-plain")
    plain.save_pretrained(tmp_path / "attention-plain")
    with pytest.raises(ValueError, match=r"holds an adapter named 'vanilla' \(peft_type 'PROMPT_TUNING'\)"):
        attention.save_pretrained(tmp_path / "attention-plain")
    # the same beside a deep prompt on a classifier, which writes no plain copy (a third review: read as an old copy)
    from peft_softprompt_ext import DeepPromptTuningConfig

    deep = peft.get_peft_model(common.tiny_model("bert")[0], DeepPromptTuningConfig(task_type="SEQ_CLS", num_virtual_tokens=3, deep_init="zero"))
    deep.save_pretrained(tmp_path / "deep")
    peft.get_peft_model(common.tiny_model("bert")[0], peft.PromptTuningConfig(task_type="SEQ_CLS", num_virtual_tokens=3),
                        adapter_name="vanilla").save_pretrained(tmp_path / "deep")  # fmt: skip
    with pytest.raises(ValueError, match=r"holds an adapter named 'vanilla' \(peft_type 'PROMPT_TUNING'\)"):
        deep.save_pretrained(tmp_path / "deep")
    assert (tmp_path / "deep" / "vanilla" / "adapter_config.json").exists()
