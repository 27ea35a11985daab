"""Which paper-table runs start with a stuck network (see `zssr_tf.methods.zssr.STUCK_RESIDUAL`).

Trains only the first stage of each Table 1 run (same preset, seed, LR image and examples as
`benchmarks/paper_tables.py`) up to its first learning-rate policy check after `min_iters`, where zssr_tf restarts a
network that has learned nothing. A run listed as stuck here ended as interpolation plus back-projection in code
without the restart (before commit "Restart a stuck network"). Later stages start from the first stage's trained
weights, so they are not checked.

    python benchmarks/stuck_starts.py --data_dir=../shared/data --datasets=Set5,Set14 --scales=2,3,4
"""

from __future__ import annotations

import argparse
import glob
import os

from paper_tables import Job, job_config, make_lr_hr, paper_preset


def first_check_residual(job: Job, data_dir: str, seed: int) -> tuple[int, float, list[int]]:
    """(iteration of the first policy check, largest residual there, restarts) of the job's first stage."""
    from zssr_tf import ZSSR

    conf = job_config(job, paper_preset(1, job.scale), seed)
    check = conf.zssr.min_iters + 1
    check += -(check + 1) % conf.zssr.learning_rate_policy_check_every  # first (i + 1) % every == 0 past min_iters
    conf = conf.replace(scale_factors=conf.task.scale_factors[:1],
                               back_projection_iters=conf.zssr.back_projection_iters[:1], max_iters=check + 1)
    lr, _, _ = make_lr_hr(job, data_dir, seed)
    zssr = ZSSR(lr, conf)
    residual = []
    restart = zssr.restart_network

    def record_restart() -> None:  # the residual that made the restart, before the new weights reset it
        residual.append(zssr._residual_max)
        restart()

    zssr.restart_network = record_restart
    zssr.run()  # the one stage, ending at the check (its final test does not touch the residual)
    return check, residual[0] if residual else zssr._residual_max, zssr.history[0].restarts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", required=True)
    parser.add_argument("--datasets", default="Set5,Set14")
    parser.add_argument("--scales", default="2,3,4")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print("| run | first policy check | largest residual there | restarted |\n|---|---|---|---|", flush=True)
    for dataset in args.datasets.split(","):
        names = [os.path.basename(p)[:-4] for p in sorted(glob.glob(os.path.join(args.data_dir, dataset, "HR", "*.png")))]
        for scale in (int(s) for s in args.scales.split(",")):
            for name in names:
                job = Job(1, dataset, scale, name)
                check, residual, restarts = first_check_residual(job, args.data_dir, args.seed)
                print(f"| {job.key} | {check} | {residual:.1e} | {'yes' if restarts else 'no'} |", flush=True)


if __name__ == "__main__":
    main()
