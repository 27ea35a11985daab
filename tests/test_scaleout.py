"""Folders beyond one process: worker processes and Ray give what a run in one process gives; lost workers cost
their image only."""

import csv
import os
import signal
import subprocess
import sys
import time
import types

import numpy as np
import pytest

from tests.conftest import smooth_image
from tests.test_cli import ROOT, TINY, zssr
from zssr_tf import scaleout
from zssr_tf.image_io import read_image, write_image

OUTPUT = "{}_zssr_X2.00X2.00.png"


def folder_of(tmp_path, names, size=(20, 22)):
    folder = tmp_path / "in"
    folder.mkdir()
    for i, name in enumerate(names):
        write_image(folder / f"{name}.png", smooth_image(*size, seed=i))
        write_image(folder / f"{name}_gt.png", smooth_image(2 * size[0], 2 * size[1], seed=i))
    return folder


def results_csv(output_dir):
    with open(output_dir / "results.csv") as f:
        return {row["name"]: row for row in csv.DictReader(f)}


def outputs(output_dir, names):
    return {name: read_image(output_dir / OUTPUT.format(name)).pixels for name in names}


def training_driver(*args):
    """`zssr ARGS` started, once one of its workers trains: (the process, its workers' process ids)."""
    driver = subprocess.Popen([sys.executable, "-m", "zssr_tf", *args], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, cwd=ROOT,
                              env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    for line in driver.stderr:
        if "x2x2 iteration" in line:
            break
    workers = worker_pids(driver)
    assert len(workers) == 2, workers
    return driver, workers


def worker_pids(driver):
    """The driver's worker processes (not multiprocessing's resource tracker, its other child)."""
    children = subprocess.run(["pgrep", "-P", str(driver.pid)], capture_output=True, text=True).stdout.split()
    return [pid for pid in children if "spawn_main" in open(f"/proc/{pid}/cmdline").read()]


def test_cpu_shares_split_the_cores_and_never_give_none(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    assert scaleout.cpu_shares(2) == [[0, 1], [2, 3]]
    assert scaleout.cpu_shares(3) == [[0], [1], [2]]
    assert scaleout.cpu_shares(6) == [[0], [1], [2], [3], [0], [1]]
    assert scaleout.cpu_shares(2, cpus_per_worker=1) == [[0], [1]]


def test_default_workers_are_one_per_visible_gpu(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,5")
    assert scaleout.default_workers() == 2
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")
    assert scaleout.default_workers() == 1


NAMES = ["a", "b", "c", "d"]


@pytest.fixture(scope="module")
def one_core_run(tmp_path_factory):
    """A folder of 4 tiny images and the plain run of it in a process pinned to one core: what each worker (one
    core each here) must write. A process's outputs depend on its number of cores (the order of its sums)."""
    tmp_path = tmp_path_factory.mktemp("scaleout")
    folder = folder_of(tmp_path, NAMES)
    core = min(os.sched_getaffinity(0))
    result = subprocess.run([sys.executable, "-m", "zssr_tf", f"--input={folder}", f"--output_dir={tmp_path / 'one'}",
                             *TINY, "--noprogress"], capture_output=True, text=True, cwd=ROOT, timeout=300,
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
                            preexec_fn=lambda: os.sched_setaffinity(0, {core}))
    assert result.returncode == 0, result.stderr
    return folder, tmp_path / "one"


def assert_same_results(output_dir, reference):
    """The same rows (all but the seconds) in the folder's order, and the same outputs, bit for bit."""
    rows, expected = results_csv(output_dir), results_csv(reference)
    assert list(rows) == list(expected) == NAMES  # whichever image ended first
    for name in NAMES:
        assert {k: v for k, v in rows[name].items() if k not in ("seconds", "output")} == \
            {k: v for k, v in expected[name].items() if k not in ("seconds", "output")}
        np.testing.assert_array_equal(outputs(output_dir, [name])[name], outputs(reference, [name])[name])


def test_two_workers_write_what_one_process_writes(one_core_run, tmp_path, capsys):
    folder, reference = one_core_run
    status, out, err = zssr(capsys, f"--input={folder}", f"--output_dir={tmp_path / 'two'}", *TINY, "--noprogress",
                            "--workers=2")
    assert status == 0 and out.count("wrote") == 4, err
    assert_same_results(tmp_path / "two", reference)


def test_scale_out_flags_are_for_folders(tmp_path, capsys):
    image = tmp_path / "a.png"
    write_image(image, smooth_image(20, 22))
    status, _, err = zssr(capsys, f"--input={image}", "--workers=2")
    assert status == 2 and "--workers is for folders" in err
    status, _, err = zssr(capsys, f"--input={tmp_path}", "--backend=ray", "--workers=2")
    assert status == 2 and "--workers is for --backend=local" in err


@pytest.mark.fault("kill -9 of a worker process of a --workers=2 folder run, then the same command again",
                   "that image an error row (the worker died), the others done, exit 1; the rerun does that image "
                   "only, exit 0")
def test_a_killed_worker_costs_its_image_only(tmp_path, capsys, record_property):
    names = ["a", "b", "c", "d"]
    folder = folder_of(tmp_path, names)
    args = [f"--input={folder}", f"--output_dir={tmp_path / 'out'}", *TINY, "--noprogress", "--workers=2"]
    driver, workers = training_driver(*args, "--max_iters=600", "--min_iters=600")
    os.kill(int(workers[0]), signal.SIGKILL)
    out, err = driver.communicate(timeout=300)
    rows = results_csv(tmp_path / "out")
    died = [name for name, row in rows.items() if "worker process died" in row["status"]]
    assert driver.returncode == 1 and len(died) == 1 and "1 of 4 images failed" in err, (rows, err)
    assert all(rows[name]["status"] == "done" for name in names if name not in died)
    assert not [name for name in os.listdir(tmp_path / "out") if name.startswith(".tmp_")]
    first_rows = rows
    status, out, err = zssr(capsys, *args)
    rows = results_csv(tmp_path / "out")
    assert status == 0 and all(row["status"] == "done" for row in rows.values()), err
    assert out.count("done by an earlier run, kept") == 3 and out.count("wrote") == 1
    record_property("observed", f"{died[0]}: {first_rows[died[0]]['status']}; others done, exit 1; rerun: "
                    f"1 image done, 3 kept, exit {status}")


def test_ray_tasks_write_what_one_process_writes(one_core_run, tmp_path, capsys):
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install -e '.[ray]'; no wheel for every "
                              "Python version)")
    folder, reference = one_core_run
    ray.init(num_cpus=2, include_dashboard=False, logging_level="warning")  # the command uses it (1 CPU a task)
    try:
        status, out, err = zssr(capsys, f"--input={folder}", f"--output_dir={tmp_path / 'ray'}", *TINY,
                                "--noprogress", "--backend=ray")
    finally:
        ray.shutdown()
    assert status == 0 and out.count("wrote") == 4, err
    assert_same_results(tmp_path / "ray", reference)


@pytest.mark.fault("SIGTERM to the driver of a --workers=2 folder run", "exit 143 within seconds with one line naming "
                   "the stopped images; no worker left, no temporary file")
def test_a_stopped_driver_stops_its_workers(tmp_path, record_property):
    folder = folder_of(tmp_path, ["a", "b", "c"])
    driver, workers = training_driver(f"--input={folder}", f"--output_dir={tmp_path / 'out'}", *TINY,
                                      "--noprogress", "--workers=2", "--max_iters=5000", "--min_iters=5000")
    start = time.perf_counter()
    driver.send_signal(signal.SIGTERM)
    _, err = driver.communicate(timeout=60)
    seconds = time.perf_counter() - start
    last = err.strip().splitlines()[-1]
    assert driver.returncode == 143 and last.startswith("zssr: interrupted with 0 of 3 images done (stopped: "), err
    assert seconds < 15  # the workers stop at their next safe point (a bound, not a speed target)
    assert not [pid for pid in workers if os.path.exists(f"/proc/{pid}")]  # gone with the driver, not orphans
    assert not [name for name in os.listdir(tmp_path / "out") if name.startswith(".tmp_")]
    record_property("observed", f"exit {driver.returncode} after {seconds:.1f} s: {last}; workers gone")


def test_workers_that_cannot_start_end_the_run_in_one_line(tmp_path, capsys, monkeypatch):
    folder = folder_of(tmp_path, ["a", "b", "c"])
    fake = tmp_path / "fake"
    (fake / "tensorflow").mkdir(parents=True)
    (fake / "tensorflow" / "__init__.py").write_text("raise ImportError('no TensorFlow in this worker')\n")
    import tensorflow  # noqa: F401  (this process's, loaded before the fake is on the path)

    monkeypatch.syspath_prepend(str(fake))  # spawned workers start with this process's sys.path: they find it
    status, _, err = zssr(capsys, f"--input={folder}", f"--output_dir={tmp_path / 'out'}", *TINY, "--noprogress",
                          "--workers=2")
    assert status == 1 and err.strip() == "zssr: error: workers: worker processes die before they are ready " \
        "(exit status 1); see the lines above", err
    assert not os.path.exists(tmp_path / "out" / "results.csv")  # no image was given to a worker


def test_workers_beyond_the_cores_are_capped_and_the_log_says_so(monkeypatch, caplog):
    from zssr_tf import app

    monkeypatch.setattr(scaleout.os, "sched_getaffinity", lambda pid: {0})
    monkeypatch.setattr(scaleout, "visible_gpus", lambda: [])
    ran = []
    monkeypatch.setattr(app, "run_job", lambda conf, job, options: ran.append(job.index) or job.index)
    jobs = [types.SimpleNamespace(index=i, input_path=f"{i}.png", ground_truth=None, kernels=None, depth=None)
            for i in range(3)]
    with caplog.at_level("WARNING"):
        results = list(scaleout.run_local(None, jobs, None, num_workers=8))
    assert results == [(0, 0), (1, 1), (2, 2)] and ran == [0, 1, 2]  # here, one after another: no worker pool
    assert "8 workers on 1 cores would share cores and run slower; running 1" in caplog.text
