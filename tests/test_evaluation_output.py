"""An evaluation's files replace the previous ones as one unit: a kill at any step, a failed
write, or a second process writing into the same folder never leaves hypotheses of one
evaluation beside the results.json of another."""

import hashlib
import json
import subprocess
import sys
import textwrap

import pytest

from noamt.evaluation_output import STAGING, OutputInUse, output_lock, write_evaluation
from noamt.results import ResultsError, read_results_json

META = {"checkpoint": "ck.pt", "step": 7, "data": "toy", "src_lang": "en", "tgt_lang": "de", "tokenized": False}
SCORES = {"bleu": 1.0, "chrf": 2.0, "ter": 3.0, "signatures": {}, "n_sentences": 2}


def evaluation(beam: int) -> tuple[dict, dict]:
    """The files and results of an evaluation at beam size ``beam`` (its hypotheses say which)."""
    files = {name: f"beam {beam} {name}\n".encode() for name in ("test.hyp.de", "test.nll.tsv", "valid.hyp.de")}
    results = {**META, "decoding": {"beam_size": beam}, "splits": {"test": SCORES, "valid": SCORES}}
    return files, results


def assert_whole(folder, beams) -> int:
    """The folder holds exactly one of the evaluations ``beams``, every file of it; returns its beam."""
    results = read_results_json(folder / "results.json")  # verifies every file it lists
    beam = results["decoding"]["beam_size"]
    assert beam in beams
    for name in evaluation(beam)[0]:
        assert (folder / name).read_bytes() == f"beam {beam} {name}\n".encode()
    assert not (folder / STAGING).exists()
    return beam


def test_an_evaluation_replaces_the_previous_one_whole(tmp_path):
    for beam in (1, 3):
        with output_lock(tmp_path):
            write_evaluation(tmp_path, *evaluation(beam))
        assert assert_whole(tmp_path, [beam]) == beam
    listed = json.loads((tmp_path / "results.json").read_text())["files"]
    assert listed["test.hyp.de"] == hashlib.sha256(b"beam 3 test.hyp.de\n").hexdigest()


KILL_AT_RENAME = textwrap.dedent(
    """
    import os, sys, json
    from noamt.evaluation_output import write_evaluation
    files, results = json.loads(sys.argv[3])
    calls, kill_at = [0], int(sys.argv[2])
    real = os.replace
    def replace(a, b):
        calls[0] += 1
        if calls[0] == kill_at:
            os._exit(9)  # killed before this rename
        real(a, b)
    os.replace = replace
    write_evaluation(sys.argv[1], {k: v.encode() for k, v in files.items()}, results)
    print(calls[0])
    """
)


@pytest.mark.slow
def test_a_kill_before_any_rename_leaves_one_whole_evaluation(tmp_path):
    """Killed before each of the write's renames in turn (every file's atomic write and every
    step of the commit): once the next evaluation takes the folder, it holds the old evaluation
    or the new one, each whole, never a mix."""
    files, results = evaluation(3)
    payload = json.dumps([{k: v.decode() for k, v in files.items()}, results])
    write = [sys.executable, "-c", KILL_AT_RENAME]
    total = int(subprocess.run([*write, str(tmp_path / "count"), "0", payload], capture_output=True, text=True,
                               check=True).stdout)  # fmt: skip
    assert total == 2 * len(files) + 2  # each staged file and results.json, then each rename of the commit
    outcomes = []
    for kill_at in range(1, total + 1):
        folder = tmp_path / f"kill{kill_at}"
        write_evaluation(folder, *evaluation(1))
        killed = subprocess.run([*write, str(folder), str(kill_at), payload], capture_output=True)
        assert killed.returncode == 9
        with output_lock(folder):  # what the next evaluation into the folder does first
            pass
        outcomes.append(assert_whole(folder, [1, 3]))
    assert outcomes[0] == 1 and outcomes[-1] == 3  # both ends occur: the kills covered the commit


def test_a_failed_write_names_the_file_and_keeps_the_previous_evaluation(tmp_path):
    write_evaluation(tmp_path, *evaluation(1))
    program = textwrap.dedent(
        """
        import resource, signal, sys
        from noamt.evaluation_output import write_evaluation
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1000, 1000))
        files = {"test.hyp.de": b"x" * 5000}
        write_evaluation(sys.argv[1], files, {"checkpoint": "ck.pt"})
        """
    )
    result = subprocess.run([sys.executable, "-c", program, str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 1
    assert (
        result.stderr.strip().splitlines()[-1]
        == f"OSError: [Errno 27] cannot write {tmp_path / 'test.hyp.de'}: File too large"
    )
    assert assert_whole(tmp_path, [1]) == 1


def test_a_second_writer_is_refused_in_one_line(tmp_path):
    with output_lock(tmp_path):
        with pytest.raises(OutputInUse, match=rf"^out_dir={tmp_path} is being written by process \d+ on .+: wait"):
            with output_lock(tmp_path):
                pass


def test_a_hypothesis_file_changed_after_the_evaluation_is_named(tmp_path):
    write_evaluation(tmp_path, *evaluation(1))
    (tmp_path / "valid.hyp.de").write_text("edited\n")
    with pytest.raises(ResultsError, match=r"valid.hyp.de has changed since .*results.json was written"):
        read_results_json(tmp_path / "results.json")
    (tmp_path / "valid.hyp.de").unlink()
    with pytest.raises(ResultsError, match=r"results.json lists valid.hyp.de, which cannot be read"):
        read_results_json(tmp_path / "results.json")
