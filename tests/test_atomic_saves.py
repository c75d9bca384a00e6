"""All-or-nothing saves (peft_softprompt_ext/atomic_io.py), proven by killing saving processes.

A saving process is stopped with SIGKILL before each filesystem commit point of a save (every
write-open, rename, link, removal, mkdir and the plugin's own commit events, counted by an audit
hook), and at random instants; the folder must then load as the previous complete save or the new
complete save (main adapter, plain `vanilla/` copy and card agreeing), and the next save must leave
no leftovers behind.
"""

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import peft
import pytest
import torch
from peft import PeftModel

import testing_common as common
from peft_softprompt_ext import VocabSampledPromptTuningConfig
from peft_softprompt_ext.atomic_io import AUDIT_EVENT, atomic_directory_write, atomic_file_write, read_lock

REPO = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
VERSIONS = {"A": 5, "B": 7}  # virtual tokens of the two saves that overwrite each other

SAVER = """
import json, os, signal, sys, time
sys.path.insert(0, TESTS)
import torch, peft
import testing_common as common
from peft_softprompt_ext import VocabSampledPromptTuningConfig, base_model_fingerprint
from softprompt_bench.checkpoint import save_checkpoint

WRITES = {"os.rename", "os.replace", "os.remove", "os.rmdir", "os.mkdir", "shutil.rmtree", "os.link", "os.symlink",
          "os.truncate", "os.unlink", "shutil.copyfile", "peft_softprompt_ext.commit"}


def save(kind, target, version, kill_at):
    model = common.tiny_model("gpt2")[0]
    tokens = {"A": 5, "B": 7}[version]
    config = VocabSampledPromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=tokens, seed=tokens)
    peft_model = peft.get_peft_model(model, config)
    count = 0

    def hook(event, args):  # counts the save's filesystem commit points; SIGKILL before the kill_at-th
        nonlocal count
        if event == "open":
            mode, flags = args[1], args[2]
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR))
            if not writing:
                return
        elif event not in WRITES:
            return
        count += 1
        if count == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    if kind == "checkpoint":
        optimizer = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=0.1)
        peft_model(**common.batch_for("gpt2")).loss.backward()
        optimizer.step()
        sys.addaudithook(hook)
        save_checkpoint(target, peft_model, optimizer, None, tokens, {"steps": 10, "seed": tokens}, {"loss": [[1, 0.5]] * tokens},
                        base_fingerprint=base_model_fingerprint(model))
    else:
        sys.addaudithook(hook)
        peft_model.save_pretrained(target)
    return count


# A zygote: everything is imported once; each save runs in a forked child (OMP_NUM_THREADS=1, so no
# OpenMP threads exist to break fork), killed by itself at a commit point or by us after a delay.
for line in sys.stdin:
    job = json.loads(line)
    pid = os.fork()
    if pid == 0:
        count = save(job["kind"], job["target"], job["version"], job["kill_at"])
        print(json.dumps({"events": count}), flush=True)
        os._exit(0)
    if job.get("kill_after") is not None:
        time.sleep(job["kill_after"])
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
    print(json.dumps({"status": code}), flush=True)
""".replace("TESTS", repr(str(TESTS)))


class Saver:
    """A process that saves version A or B of an adapter (or checkpoint) and can be killed doing it."""

    def __init__(self):
        env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
        self.process = subprocess.Popen([sys.executable, "-c", SAVER], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.DEVNULL, text=True, bufsize=1)  # fmt: skip

    def save(self, kind, target, version, kill_at=0, kill_after=None) -> tuple[int, int | None]:
        """(exit status of the saving child: 0 or -9, commit points counted if it finished)."""
        job = {"kind": kind, "target": str(target), "version": version, "kill_at": kill_at, "kill_after": kill_after}
        self.process.stdin.write(json.dumps(job) + "\n")
        events = None
        while True:
            line = self.process.stdout.readline()
            assert line, "the saver process died"
            reply = json.loads(line)
            if "events" in reply:
                events = reply["events"]
            else:
                return reply["status"], events

    def close(self):
        self.process.stdin.close()
        self.process.wait(timeout=60)


@pytest.fixture(scope="module")
def saver():
    process = Saver()
    yield process
    process.close()


def expected_logits():
    """The logits of versions A and B, as the saver builds them (same seeds, same tiny model)."""
    batch = common.inference_batch("gpt2")
    result = {}
    for version, tokens in VERSIONS.items():
        model = peft.get_peft_model(common.tiny_model("gpt2")[0],
                                    VocabSampledPromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=tokens, seed=tokens))  # fmt: skip
        result[version] = common.forward_logits(model, batch)
    return batch, result


def which_adapter_version(folder, batch, expected) -> str:
    """'A' or 'B' if the folder is that complete save (main adapter, vanilla copy and card agree); else fail."""
    logits = common.forward_logits(PeftModel.from_pretrained(common.tiny_model("gpt2")[0], folder), batch)
    plain = common.forward_logits(PeftModel.from_pretrained(common.tiny_model("gpt2")[0], folder, subfolder="vanilla"), batch)
    card = (Path(folder) / "README.md").read_text()
    for version, reference in expected.items():
        if logits.shape == reference.shape and torch.allclose(logits, reference, atol=1e-5):
            torch.testing.assert_close(plain, reference, rtol=1e-5, atol=1e-5)
            assert f"**{VERSIONS[version]} virtual tokens**" in card
            return version
    raise AssertionError("the folder is neither save")


def which_checkpoint_version(folder) -> str:
    from softprompt_bench.checkpoint import read_checkpoint

    state, tensors = read_checkpoint(folder)
    version = {5: "A", 7: "B"}[state["step"]]
    assert tensors["param.prompt_encoder.default.embedding.weight"].shape[0] == VERSIONS[version]
    return version


def leftovers(parent) -> list[str]:
    return [name for name in os.listdir(parent) if name.startswith((".staging-", ".old-"))]


def checker(kind, target):
    batch, expected = expected_logits()
    if kind == "adapter":
        return lambda: which_adapter_version(target, batch, expected)
    return lambda: which_checkpoint_version(target)


@pytest.mark.slow
@pytest.mark.ci
@pytest.mark.parametrize("kind", ["adapter", "checkpoint"])
def test_a_kill_at_every_commit_point_leaves_the_old_or_the_new_save(kind, saver, tmp_path):
    target = tmp_path / "save"
    check = checker(kind, target)
    assert saver.save(kind, tmp_path / "count", "A")[0] == 0
    status, count = saver.save(kind, tmp_path / "count", "B")  # a save over an earlier one: the case to kill
    assert status == 0 and count >= 5, count
    assert saver.save(kind, target, "A")[0] == 0
    seen = []
    for kill_at in range(1, count + 1):
        assert saver.save(kind, target, "B", kill_at)[0] == -9, kill_at
        seen.append(check())
        if seen[-1] == "B":  # back to A for the next kill, through a clean save (which also removes leftovers)
            assert saver.save(kind, target, "A")[0] == 0 and check() == "A" and not leftovers(tmp_path)
        for leftover in leftovers(tmp_path):  # what the next save would remove; removed by hand here so that
            shutil.rmtree(tmp_path / leftover)  # every kill meets the state the counting save met
    assert saver.save(kind, target, "B", count)[0] == -9 and leftovers(tmp_path)
    assert saver.save(kind, target, "A")[0] == 0 and check() == "A" and not leftovers(tmp_path)
    print(f"{kind}: {count} commit points, killed before each: {seen.count('A')} left the old save, {seen.count('B')} the new one")
    assert seen[0] == "A" and seen[-1] == "B"  # the swap is one of the points: before it old, after it new


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["adapter", "checkpoint"])
def test_kills_at_random_instants_leave_the_old_or_the_new_save(kind, saver, tmp_path):
    target = tmp_path / "save"
    check = checker(kind, target)
    assert saver.save(kind, target, "A")[0] == 0
    generator = random.Random(0)
    outcomes = []
    for _ in range(60):
        status, _ = saver.save(kind, target, "B" if check() == "A" else "A", kill_after=generator.uniform(0.0, 0.1))
        outcomes.append((status, check()))
    assert saver.save(kind, target, "A")[0] == 0 and check() == "A" and not leftovers(tmp_path)
    killed = [version for status, version in outcomes if status == -9]
    print(f"{kind}: 60 saves killed at random instants: {len(killed)} killed before they finished, all left a complete save")
    assert killed, "no save was killed mid-way: the delays are too long for this machine"


def test_a_save_replaces_every_file_of_the_previous_one(tmp_path):
    """Stale files never survive: an attention mixture saved over a single prompt has no vanilla/ left."""
    single, _ = common.make_peft_model("gpt2", "vocab_uniform")
    single.save_pretrained(tmp_path / "adapter")
    (tmp_path / "adapter" / "notes.txt").write_text("mine")
    attention, _ = common.make_peft_model("gpt2", "mixture_attention")
    attention.save_pretrained(tmp_path / "adapter")
    assert not (tmp_path / "adapter" / "vanilla").exists()
    assert (tmp_path / "adapter" / "notes.txt").read_text() == "mine"  # not an adapter file: carried over
    assert json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())["peft_type"] == "MIXTURE_PROMPT_TUNING"
    assert not leftovers(tmp_path)


def test_a_save_is_one_exchange_of_complete_folders(tmp_path, commit_events):
    with atomic_directory_write(tmp_path / "out") as staging:
        (Path(staging) / "a.txt").write_text("1")
    with atomic_directory_write(tmp_path / "out") as staging:
        (Path(staging) / "a.txt").write_text("2")
    events = [args[0] for args in commit_events]
    second = events[len(events) // 2 :]
    assert "exchange" in second and "rename" not in second  # one atomic swap, no per-file moves
    assert (tmp_path / "out" / "a.txt").read_text() == "2" and not leftovers(tmp_path)


def test_a_target_that_links_to_another_filesystem_is_written_there(tmp_path):
    """Issue #12 (1): a symlink target on another filesystem failed with EXDEV."""
    elsewhere = Path("/dev/shm") / f"peft-softprompt-ext-test-{os.getpid()}"
    if not Path("/dev/shm").is_dir():
        pytest.skip("no /dev/shm (a second filesystem) here")
    try:
        elsewhere.mkdir()
        (tmp_path / "link").symlink_to(elsewhere)
        peft_model, _ = common.make_peft_model("gpt2", "vocab_uniform")
        peft_model.save_pretrained(tmp_path / "link")
        peft_model.save_pretrained(tmp_path / "link")  # over an existing save: the swap happens there
        assert (tmp_path / "link").is_symlink() and (elsewhere / "adapter_model.safetensors").is_file()
        batch = common.inference_batch("gpt2")
        loaded = PeftModel.from_pretrained(common.tiny_model("gpt2")[0], tmp_path / "link")
        torch.testing.assert_close(common.forward_logits(loaded, batch), common.forward_logits(peft_model, batch))
    finally:
        shutil.rmtree(elsewhere, ignore_errors=True)


def test_the_fallback_without_an_exchange_is_repaired_by_the_next_save(tmp_path, monkeypatch):
    """Where renameat2 cannot exchange, a kill between the two renames leaves no target: the next save restores it."""
    from peft_softprompt_ext import atomic_io

    monkeypatch.setattr(atomic_io, "_exchange", lambda first, second: False)
    with atomic_directory_write(tmp_path / "out") as staging:
        (Path(staging) / "a.txt").write_text("old")
    os.rename(tmp_path / "out", tmp_path / ".old-out-12345678")  # the state a kill between the renames leaves
    with atomic_directory_write(tmp_path / "other"):
        pass  # another folder's save does not touch it
    with atomic_directory_write(tmp_path / "out") as staging:
        assert (tmp_path / "out" / "a.txt").read_text() == "old"  # restored before the new save proceeds
        (Path(staging) / "a.txt").write_text("new")
    assert (tmp_path / "out" / "a.txt").read_text() == "new" and not leftovers(tmp_path)


def test_the_fallback_puts_the_old_folder_back_when_its_second_rename_fails(tmp_path, monkeypatch):
    """An error (not a kill) between the fallback's two renames leaves the old save in place, in the same process."""
    from peft_softprompt_ext import atomic_io

    monkeypatch.setattr(atomic_io, "_exchange", lambda first, second: False)
    with atomic_directory_write(tmp_path / "out") as staging:
        (Path(staging) / "a.txt").write_text("old")
    real_rename = os.rename

    def failing_rename(source, destination):
        if os.path.basename(source).startswith(".staging-out-"):
            raise OSError(28, "No space left on device", destination)
        real_rename(source, destination)

    monkeypatch.setattr(atomic_io.os, "rename", failing_rename)
    with pytest.raises(OSError, match="No space left"):
        with atomic_directory_write(tmp_path / "out") as staging:
            (Path(staging) / "a.txt").write_text("new")
    assert (tmp_path / "out" / "a.txt").read_text() == "old" and not leftovers(tmp_path)


@pytest.mark.parametrize("where", ["", ".", "..", "{cwd}"])
def test_a_save_into_the_working_directory_or_a_folder_holding_it_is_refused(tmp_path, monkeypatch, where):
    """A save swaps in a whole new folder: the process would be left in a deleted working directory."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "notes.txt").write_text("mine")
    monkeypatch.chdir(work)
    with pytest.raises(ValueError, match="current working directory"):
        with atomic_directory_write(where.format(cwd=work)) as staging:
            (Path(staging) / "a.txt").write_text("new")
    assert os.getcwd() == str(work) and (work / "notes.txt").read_text() == "mine" and not (work / "a.txt").exists()
    peft_model, _ = common.make_peft_model("gpt2", "vocab_uniform")
    with pytest.raises(ValueError, match="current working directory"):
        peft_model.save_pretrained(where.format(cwd=work))
    assert sorted(os.listdir(work)) == ["notes.txt"]


def test_an_interrupted_file_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "results.json"
    path.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_file_write(path) as handle:
            handle.write("half")
            raise RuntimeError("killed")
    assert path.read_text() == "old" and not leftovers(tmp_path)


READER = """
import sys, json
sys.path.insert(0, TESTS)
import torch
import testing_common as common
import contextlib
from peft import PeftModel
import peft_softprompt_ext
target, rounds = sys.argv[1], int(sys.argv[2])
failures, seen = [], {}
for index in range(rounds):
    # even rounds: both loads under one read lock, so they must agree; odd rounds: each load on its own (a save may
    # land between them, but neither load may mix two saves)
    try:
        with peft_softprompt_ext.read_lock(target) if index % 2 == 0 else contextlib.nullcontext():
            model = PeftModel.from_pretrained(common.tiny_model("gpt2")[0], target)
            tokens = model.peft_config["default"].num_virtual_tokens
            plain = PeftModel.from_pretrained(common.tiny_model("gpt2")[0], target, subfolder="vanilla")
        assert index % 2 or plain.peft_config["default"].num_virtual_tokens == tokens, "vanilla/ from another save"
        seen[tokens] = seen.get(tokens, 0) + 1
    except Exception as error:
        failures.append(repr(error)[:300])
print("READER", json.dumps({"failures": failures, "seen": seen}))
""".replace("TESTS", repr(str(TESTS)))


@pytest.mark.parametrize("load", ["from_pretrained", "load_adapter"])
def test_a_plain_load_of_a_saves_vanilla_copy_waits_for_a_save_in_progress(tmp_path, monkeypatch, load):
    """Plain PEFT loads took no read lock, a save's `vanilla/` copy included: a save that landed between PEFT's config
    read and its weights read gave the config of one save and the weights of the other ("size mismatch ... [7, 32]
    from checkpoint ... [5, 32]", once in the slow suite's concurrent-writers test). Here a save in another thread
    starts at that instant; the load must finish first, with one save's prompt."""
    import threading

    target = tmp_path / "save"
    prompts = {}
    for version, tokens in VERSIONS.items():
        config = VocabSampledPromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=tokens, seed=tokens)
        prompts[version] = peft.get_peft_model(common.tiny_model("gpt2")[0], config)
    prompts["A"].save_pretrained(target)
    original, saves, commits = peft.peft_model.load_peft_weights, [], []
    # a save's commit points (its staging folder, the swap, ...): none may come while the load reads, slow disk or not
    sys.addaudithook(lambda event, args: commits.append(args[0]) if event == AUDIT_EVENT and str(tmp_path) in str(args[1]) else None)

    def a_save_meanwhile(*args, **kwargs):  # PEFT has read the config; the weights are next
        save = threading.Thread(target=prompts["B"].save_pretrained, args=(target,))
        save.start()
        save.join(timeout=2.0)
        saves.append((save, list(commits)))
        return original(*args, **kwargs)

    monkeypatch.setattr(peft.peft_model, "load_peft_weights", a_save_meanwhile)
    if load == "from_pretrained":
        plain = PeftModel.from_pretrained(common.tiny_model("gpt2")[0], target, subfolder="vanilla")
    else:
        plain = peft.get_peft_model(common.tiny_model("gpt2")[0], peft.PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=3))
        plain.load_adapter(target / "vanilla", adapter_name="plain")
    for save, _ in saves:
        save.join()
    assert [during for _, during in saves] == [[]], "the save did not wait for the load that was reading"
    assert "mkdir-staging" in commits  # it went through afterwards
    loaded = plain.prompt_encoder["default" if load == "from_pretrained" else "plain"].embedding.weight
    assert tuple(loaded.shape)[0] == VERSIONS["A"]
    reloaded = PeftModel.from_pretrained(common.tiny_model("gpt2")[0], target, subfolder="vanilla")
    assert reloaded.peft_config["default"].num_virtual_tokens == VERSIONS["B"]  # the save went through afterwards


def test_a_reader_that_may_not_list_a_folder_above_the_adapter_reads_unlocked(tmp_path, monkeypatch):
    """Plain PEFT loads take the read lock now (above), which opens the adapter's parent and grandparent folders: a
    user who may enter but not list one (mode 711, as a shared home folder) got PermissionError where plain PEFT had
    loaded. Readers go on unlocked there; writers still need their lock. (Run as root here, so the refusal is made
    by hand.)"""
    import peft_softprompt_ext.atomic_io as atomic_io

    config = VocabSampledPromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=5, seed=5)
    peft.get_peft_model(common.tiny_model("gpt2")[0], config).save_pretrained(tmp_path / "save")
    real_open = os.open

    def no_listing(path, flags, *args, **kwargs):
        if flags & getattr(os, "O_DIRECTORY", 0) and os.fspath(path) == str(tmp_path):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(atomic_io.os, "open", no_listing)
    plain = PeftModel.from_pretrained(common.tiny_model("gpt2")[0], tmp_path / "save", subfolder="vanilla")
    assert plain.peft_config["default"].num_virtual_tokens == 5
    with read_lock(tmp_path / "save"):  # the plugin's own loads likewise
        assert PeftModel.from_pretrained(common.tiny_model("gpt2")[0], tmp_path / "save").peft_config["default"].num_virtual_tokens == 5
    with pytest.raises(PermissionError):  # a save cannot go on without its lock
        peft.get_peft_model(common.tiny_model("gpt2")[0], config).save_pretrained(tmp_path / "save")


@pytest.mark.slow
def test_concurrent_writers_and_a_reader_never_see_a_mixed_folder(tmp_path):
    import threading

    target = tmp_path / "save"
    writers = [Saver(), Saver()]
    assert writers[0].save("adapter", target, "A")[0] == 0
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    reader = subprocess.Popen([sys.executable, "-c", READER, str(target), "60"], env=env, stdout=subprocess.PIPE, text=True)
    writes = []

    def write(saver, version):
        while reader.poll() is None:
            writes.append(saver.save("adapter", target, version)[0])

    threads = [threading.Thread(target=write, args=(saver, version)) for saver, version in zip(writers, "AB")]
    for thread in threads:
        thread.start()
    output, _ = reader.communicate()
    for thread in threads:
        thread.join()
    for saver in writers:
        saver.close()
    result = json.loads(output.split("READER")[-1])
    print(f"{len(writes)} saves by two writers while one reader loaded 60 times: {result}")
    assert result["failures"] == [], result
    assert sum(result["seen"].values()) == 60 and set(writes) == {0} and len(writes) >= 10


def test_a_save_removes_only_its_own_leftovers(tmp_path):
    """Leftovers were matched by name prefix: a save of `run` deleted a user's `.old-run-backup/`, and a first save
    of `a` took sibling `a-b`'s pending `.old-a-b-<hex>` (its old folder, kept by a killed save) as its own."""
    user_backup = tmp_path / ".old-run-backup"
    sibling_pending = tmp_path / ".old-run-b-0123abcd"
    for folder in (user_backup, sibling_pending):
        folder.mkdir()
        (folder / "notes.txt").write_text("mine")
    with atomic_directory_write(tmp_path / "run") as staging:
        Path(staging, "a.txt").write_text("new")
    assert (user_backup / "notes.txt").read_text() == "mine" and (sibling_pending / "notes.txt").read_text() == "mine"
    assert sorted(os.listdir(tmp_path / "run")) == ["a.txt"]


def test_two_threads_saving_one_folder_take_turns(tmp_path):
    """The writer lock was re-entrant per process, not per thread: a second thread skipped it, its repair deleted
    the first thread's staging folder, and the first save failed with FileNotFoundError."""
    import threading
    import time

    errors = []

    def save(content: str):
        try:
            with atomic_directory_write(tmp_path / "same") as staging:
                Path(staging, "first.txt").write_text(content)
                time.sleep(0.3)  # the other thread tries to save meanwhile
                Path(staging, "second.txt").write_text(content)
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=save, args=(content,)) for content in ("one", "two")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    first, second = (tmp_path / "same" / "first.txt").read_text(), (tmp_path / "same" / "second.txt").read_text()
    assert first == second and first in ("one", "two")


def test_reading_an_adapter_in_a_subfolder_holds_off_a_save_of_the_folder_above(tmp_path):
    """A load of `outer/other` (a second adapter's subfolder) locked `outer`, while a save of `outer` locks its
    parent: the two did not exclude each other, and a load could read the other model's prompt mid-swap."""
    import threading
    import time

    from peft_softprompt_ext.atomic_io import read_lock

    (tmp_path / "outer" / "other").mkdir(parents=True)
    saved = threading.Event()

    def save_outer():
        with atomic_directory_write(tmp_path / "outer") as staging:
            Path(staging, "a.txt").write_text("new")
        saved.set()

    with read_lock(tmp_path / "outer" / "other"):
        writer = threading.Thread(target=save_outer)
        writer.start()
        time.sleep(0.3)
        assert not saved.is_set(), "the save of the folder above went ahead during the read"
    writer.join()
    assert saved.is_set()
