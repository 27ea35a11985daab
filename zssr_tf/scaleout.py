"""Folder runs beyond one process: local worker processes (`run_local`) and Ray tasks (`run_ray`).

Every backend runs each image through `app.run_job` (the image's outputs, log and record, its failure made its
result) and yields (index, RunResult) as images end; `app.run_folder` rebuilds results.csv from them in the folder's
order, so it ends the same whatever ran the images. A worker lost mid-image (killed, out of memory) costs that image
only: locally it becomes an error row and a new worker takes the next images; on Ray the task is retried.

Workers on CPUs each get their own cores (`os.sched_setaffinity` before TensorFlow loads, so every TensorFlow and
tf.data thread pool is sized to them): two TensorFlow processes sharing 2 cores with default threads slow each other
far more than 2x. On GPUs each worker sees one GPU (`CUDA_VISIBLE_DEVICES`) and grows its memory as needed.
Imports no TensorFlow at module level: workers set their devices before it loads.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import sys
import types
from typing import Any, Iterator, Sequence

from absl import logging

from zssr_tf import interrupts

# Workers that die before they are ready (TensorFlow fails to load, say) are replaced at most this many times.
MAX_WORKER_STARTS = 3


# The jobs live here, in a module without TensorFlow: a spawned worker unpickles its arguments before it runs, and
# must set its cores and GPU before TensorFlow loads.
@dataclasses.dataclass(frozen=True)
class FolderJob:
    """One image of a folder run, as `find_inputs` found it; `index` is its place in the folder's order."""

    index: int
    input_path: str
    ground_truth: str | None
    kernels: list[str] | None
    depth: str | None


@dataclasses.dataclass(frozen=True)
class JobOptions:
    """What every image of a folder run shares besides the configuration (`app.run`'s arguments of the same names)."""

    output_dir: str
    overwrite: bool = False
    tensorboard_dir: str | None = None
    export_model: bool = False


def visible_gpus() -> list[str]:
    """The GPUs this process may use, as CUDA_VISIBLE_DEVICES names them (TensorFlow's count when it is unset)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [d for d in visible.split(",") if d.strip() and d.strip() != "-1"]
    import tensorflow as tf

    return [str(i) for i in range(len(tf.config.list_physical_devices("GPU")))]


def default_workers() -> int:
    """`--workers=0`: one per visible GPU, else 1."""
    return max(1, len(visible_gpus()))


def cpu_shares(num_workers: int, cpus_per_worker: int = 0) -> list[list[int]]:
    """The cores of each worker: this process's cores split in `num_workers` equal runs (`cpus_per_worker` each
    when given); a worker never gets none (more workers than cores share them round-robin)."""
    cores = sorted(os.sched_getaffinity(0))
    share = cpus_per_worker or max(1, len(cores) // num_workers)
    return [[cores[(i * share + j) % len(cores)] for j in range(share)] for i in range(num_workers)]


def run_local(conf: Any, jobs: Sequence[Any], options: Any, num_workers: int, cpus_per_worker: int = 0,
              total: int | None = None) -> Iterator[tuple[int, Any]]:
    """The jobs in this process one after another (`num_workers` 1), or in `num_workers` worker processes."""
    from zssr_tf import app

    total = total or len(jobs)
    cores = len(os.sched_getaffinity(0))
    if num_workers > cores and not cpus_per_worker and not visible_gpus():
        # Workers sharing a core each run at a fraction of its speed: 8 on 2 cores ran 1.44x slower than one process.
        logging.warning("workers: %d workers on %d cores would share cores and run slower; running %d", num_workers,
                        cores, cores)
        num_workers = cores
    if num_workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            log_start(job, total)
            yield job.index, app.run_job(conf, job, options)
        return
    yield from _WorkerPool(conf, jobs, options, min(num_workers, len(jobs)), cpus_per_worker).results(total)


def log_start(job: FolderJob, total: int) -> None:
    logging.info("image %d of %d: %s (ground truth: %s, kernels: %s%s)", job.index + 1, total, job.input_path,
                 job.ground_truth or "none", ", ".join(map(os.path.basename, job.kernels)) if job.kernels else "none",
                 "" if job.depth is None else f", depth: {job.depth}")


class _WorkerPool:
    """`num_workers` spawned processes, each sent one image at a time through its own pipe (so the pool knows which
    image each one holds when it dies); see the module docstring."""

    def __init__(self, conf: Any, jobs: Sequence[Any], options: Any, num_workers: int, cpus_per_worker: int):
        import multiprocessing

        self._context = multiprocessing.get_context("spawn")  # a fork would copy this process's TensorFlow
        self._progress = conf.run.progress  # one bar of images here; none in the workers
        self._conf = dataclasses.replace(conf, run=dataclasses.replace(conf.run, progress=False))
        self._options, self._jobs, self._pending = options, {job.index: job for job in jobs}, list(jobs)
        gpus = visible_gpus()
        cpus = cpu_shares(num_workers, cpus_per_worker)
        # Worker i: the i-th GPU (round-robin) where there are GPUs, else the i-th share of the cores.
        self._devices = [(None, gpus[i % len(gpus)]) if gpus else (cpus[i], None) for i in range(num_workers)]
        self._workers: dict[int, tuple[Any, Any]] = {}  # slot -> (process, its pipe's end here)
        self._held: dict[int, int] = {}  # slot -> the index of the image that worker runs
        self._ready: set[int] = set()  # slots whose worker has loaded TensorFlow
        self._failed_starts = 0  # workers dead before they were ready, since the last one that was

    def _start(self, slot: int) -> None:
        """A new worker in `slot`; it is sent an image once it says it is ready (TensorFlow loaded)."""
        cpus, gpu = self._devices[slot]
        here, there = self._context.Pipe()
        process = self._context.Process(
            target=_worker_main, name=f"zssr-worker-{slot}", daemon=True,
            args=(cpus, gpu, self._conf, self._options, there, logging.get_verbosity()))
        # The spawned child would import the parent's main script again (as multiprocessing does, to find what
        # the target needs): a script without a __main__ guard would run its whole body in every worker, and one
        # read from stdin cannot be imported. The worker needs zssr_tf only: it is given a main module of nothing.
        main = sys.modules["__main__"]
        sys.modules["__main__"] = types.ModuleType("__main__")
        try:
            process.start()
        finally:
            sys.modules["__main__"] = main
        there.close()
        self._workers[slot] = (process, here)
        self._ready.discard(slot)

    def _hand_out(self, slot: int) -> None:
        """The worker's next image, or the end of its work. A worker that died meanwhile gets none: the image goes
        back to the queue, and the death is seen with its sentinel."""
        connection = self._workers[slot][1]
        job = self._pending.pop(0) if self._pending else None
        try:
            connection.send(job)
        except OSError:
            if job is not None:
                self._pending.insert(0, job)
            return
        if job is not None:
            self._held[slot] = job.index
            logging.info("image %d of %d: %s (worker %d)", job.index + 1, self._total, job.input_path, slot)

    def results(self, total: int) -> Iterator[tuple[int, Any]]:
        from multiprocessing import connection

        from zssr_tf import summaries

        self._total = total
        remaining = set(self._jobs)
        logging.info("%d images in %d worker processes (%s)", len(remaining), len(self._devices),
                     "; ".join(f"worker {i}: GPU {gpu}" if gpu is not None else f"worker {i}: cores "
                               f"{','.join(map(str, cpus))}" for i, (cpus, gpu) in enumerate(self._devices)))
        try:
            for slot in range(len(self._devices)):
                self._start(slot)
            with summaries.progress_bar(len(remaining), "images", self._progress) as bar:
                while remaining:
                    ready = connection.wait([end for pair in self._workers.values() for end in
                                             (pair[1], pair[0].sentinel)], timeout=1.0)
                    for slot, (process, here) in list(self._workers.items()):
                        if here not in ready and process.sentinel not in ready:
                            continue
                        try:
                            while here.poll():
                                message = here.recv()
                                if message == "ready":
                                    self._ready.add(slot)
                                    self._failed_starts = 0
                                    self._hand_out(slot)
                                    continue
                                index, result = message
                                self._held.pop(slot)
                                remaining.discard(index)
                                bar.update(1)
                                yield index, result
                                self._hand_out(slot)
                        except (EOFError, OSError):  # it died: its sentinel says so below
                            pass
                        if process.sentinel in ready or not process.is_alive():
                            process.join()
                            lost = self._lost_worker(slot)
                            if lost is not None:
                                remaining.discard(lost[0])
                                bar.update(1)
                                yield lost
        except KeyboardInterrupt as e:  # interrupts.Interrupted among them: here, then in the workers (SIGTERM)
            stopped = ", ".join(os.path.basename(self._jobs[i].input_path) for i in sorted(self._held.values()))
            raise interrupts.Interrupted(
                f"interrupted with {len(self._jobs) - len(remaining)} of {len(self._jobs)} images done (stopped: "
                f"{stopped or 'none'})", getattr(e, "signum", signal.SIGINT)) from None
        finally:
            self._stop()

    def _lost_worker(self, slot: int) -> tuple[int, Any] | None:
        """A worker that ended: the image it held (if any) is an error; a new worker goes on with the rest."""
        from zssr_tf import app

        process, here = self._workers.pop(slot)
        here.close()
        index = self._held.pop(slot, None)
        why = f"signal {-process.exitcode}" if process.exitcode < 0 else f"exit status {process.exitcode}"
        lost = None
        if index is not None:
            job = self._jobs[index]
            message = f"the worker process died ({why}), e.g. killed or out of memory"
            logging.error("%s: %s", job.input_path, message)
            lost = index, app.failed_result(job, message)
            app.write_record(self._conf, job.input_path, self._options.output_dir, lost[1])
        elif slot not in self._ready:
            self._failed_starts += 1
            if self._failed_starts > MAX_WORKER_STARTS:
                raise ValueError(f"workers: worker processes die before they are ready ({why}); see the lines above")
        if self._pending:
            self._start(slot)
        return lost

    def _stop(self) -> None:
        """Every worker asked to stop (SIGTERM: at its next safe point), then killed if it does not within 10 s."""
        for process, _ in self._workers.values():
            if process.is_alive():
                process.terminate()
        for process, here in self._workers.values():
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
                process.join()
            here.close()


def _worker_main(cpus: list[int] | None, gpu: str | None, conf: Any, options: Any, connection: Any,
                 verbosity: int) -> None:
    """A worker process: its devices set before TensorFlow loads, then the images sent until None."""
    if cpus is not None:
        os.sched_setaffinity(0, cpus)
    os.environ["CUDA_VISIBLE_DEVICES"] = gpu if gpu is not None else "-1"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # Ctrl-C reaches every process of the terminal's group: the driver alone answers it, and stops the workers
    # with SIGTERM, which ends an image at its next safe point (interrupts).
    interrupts.install()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.use_absl_handler()
    logging.set_verbosity(verbosity)
    import threading

    import tqdm

    # tqdm's default lock is a multiprocessing semaphore, which a worker stopped by os._exit would leave behind
    # (and multiprocessing's tracker warn of); no bar is shown in a worker.
    tqdm.tqdm.set_lock(threading.RLock())
    try:
        from zssr_tf.cli import import_tensorflow_quietly

        import_tensorflow_quietly()  # its start-up lines once per command, not once more per worker
        import tensorflow as tf

        for device in tf.config.list_physical_devices("GPU"):
            tf.config.experimental.set_memory_growth(device, True)  # else one worker takes all of the GPU's memory
        from zssr_tf import app

        connection.send("ready")
        while True:
            job = connection.recv()
            if job is None:
                return
            try:
                result = app.run_job(conf, job, options)
            except Exception as e:  # not one of an image's faults (run_job's): still this image's row, in one line
                message = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else 'no message'}"
                logging.exception("%s: %s", job.input_path, message)
                result = app.failed_result(job, message)
                app.write_record(conf, job.input_path, options.output_dir, result)
            connection.send((job.index, dataclasses.replace(result, image=None)))
    except (interrupts.Interrupted, EOFError) as e:  # stopped, or the driver is gone
        sys.stderr.flush()
        os._exit(128 + getattr(e, "signum", signal.SIGTERM))


def run_ray(conf: Any, jobs: Sequence[Any], options: Any, address: str | None,
            cpus_per_task: int = 0) -> Iterator[tuple[int, Any]]:
    """One Ray task per image on the cluster at `address` ("auto": the one this machine belongs to; None or
    "local": a new one on this machine), each asking for one GPU where the cluster has GPUs, else for
    `cpus_per_task` cores (default 1); a task lost with its worker or node is retried (`max_retries`), and a task
    that fails is that image's error row. Inputs and outputs must be on a path every node reads and writes."""
    try:
        import ray
    except ImportError:
        raise ValueError("backend=ray needs Ray: pip install 'zssr-tf[ray]'") from None
    from zssr_tf import app, summaries

    if not ray.is_initialized():
        try:
            ray.init(address=None if address in (None, "", "local") else address, include_dashboard=False,
                     logging_level="warning", log_to_driver=True)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise ValueError(f"ray_address: no Ray cluster at {address} ({str(e).splitlines()[0]})") from None
    gpus = ray.cluster_resources().get("GPU", 0)
    resources = {"num_gpus": 1} if gpus else {"num_cpus": cpus_per_task or 1}
    task = ray.remote(max_retries=3, **resources)(_ray_task)
    worker_conf = dataclasses.replace(conf, run=dataclasses.replace(conf.run, progress=False))
    pending = {task.remote(worker_conf, job, options): job for job in jobs}
    logging.info("%d images as Ray tasks (%s each; the cluster: %s)", len(jobs),
                 "1 GPU" if gpus else f"{resources['num_cpus']} CPU", ray.cluster_resources())
    try:
        with summaries.progress_bar(len(pending), "images", conf.run.progress) as bar:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
                for ref in done:
                    job = pending.pop(ref)
                    try:
                        result = ray.get(ref)
                    except ray.exceptions.RayError as e:  # the task raised, or was lost more often than retried
                        message = f"the Ray task failed ({type(e).__name__}: {str(e).strip().splitlines()[-1]})"
                        logging.error("%s: %s", job.input_path, message)
                        result = app.failed_result(job, message)
                        app.write_record(conf, job.input_path, options.output_dir, result)
                    bar.update(1)
                    yield job.index, result
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)


def _ray_task(conf: Any, job: Any, options: Any) -> Any:
    """A Ray task: one image; TensorFlow's threads set to the cores Ray gave it (when this worker process has not
    run TensorFlow yet; Ray reuses CPU workers), and GPU memory grown as needed."""
    import ray
    import tensorflow as tf

    cpus = int(ray.get_runtime_context().get_assigned_resources().get("CPU", 0))
    try:
        if cpus:
            tf.config.threading.set_intra_op_parallelism_threads(cpus)
            tf.config.threading.set_inter_op_parallelism_threads(cpus)
        for device in tf.config.list_physical_devices("GPU"):
            tf.config.experimental.set_memory_growth(device, True)
    except RuntimeError:  # this worker ran TensorFlow before: its settings stay
        pass
    from zssr_tf import app

    return dataclasses.replace(app.run_job(conf, job, options), image=None)
