"""XLA:CPU compile seconds of selax programs under the XLA flags that `tests/conftest.py` sets, vs none.

The test suite runs many short programs, each compiled once, so compile time dominates it. Each row
compiles one program in a fresh subprocess (XLA_FLAGS are read at backend start): a random normal of
rank 2 and rank 4 (flax's conv-kernel initializer), and the `:smoke` train steps (init and step) of
`configs/default.py`, `configs/cifar100.py` and `configs/imagenet_10pct.py` on 1 CPU device.

Usage:
  python experiments/compile_times.py                 # ~10 min on 2 idle cores
  python experiments/compile_times.py --programs normal_rank4,default
Writes experiments/results/compile_times.json.
"""

import argparse
import json
import os
import subprocess
import sys
import time

FLAG_SETS = {
    "XLA defaults": "",
    "no LLVM optimization": "--xla_backend_optimization_level=0",
    "tests/conftest.py": "--xla_backend_optimization_level=0 --xla_cpu_use_fusion_emitters=false",
}
PROGRAMS = ("normal_rank2", "normal_rank4", "default", "cifar100", "imagenet_10pct")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def compile_seconds(program: str) -> dict[str, float]:
    """Seconds to compile `program`'s jitted functions in this process (after tracing and lowering)."""
    import jax  # pylint: disable=import-outside-toplevel

    def timed(lowered) -> float:
        start = time.perf_counter()
        lowered.compile()
        return time.perf_counter() - start

    if program.startswith("normal_rank"):
        shape = (72, 16) if program.endswith("2") else (3, 3, 8, 16)
        lowered = jax.jit(lambda key: jax.random.normal(key, shape)).lower(jax.random.key(0))
        return {"normal": timed(lowered)}
    from selax import sharding, train  # pylint: disable=import-outside-toplevel
    from selax.config_fields import sibling  # pylint: disable=import-outside-toplevel

    config = sibling(os.path.join(ROOT, "configs", f"{program}.py"), program).get_config("smoke")
    experiment = train.Experiment(config, sharding.data_mesh(jax.devices()[:1]))
    seconds = {"init": timed(experiment._init.lower(jax.random.PRNGKey(0)))}  # pylint: disable=protected-access
    state = experiment.init_state()
    seconds["train_step"] = timed(experiment.train_step.lower(state, experiment.load_batch(0)))
    return seconds


def run_row(program: str, flags: str) -> dict:
    """`compile_seconds(program)` in a subprocess started with XLA_FLAGS=`flags`."""
    env = dict(os.environ, XLA_FLAGS=flags, JAX_NUM_CPU_DEVICES="1")
    command = [sys.executable, __file__, "--worker", program]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--programs", default=",".join(PROGRAMS), help=f"comma-separated subset of {PROGRAMS}")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(compile_seconds(args.worker)))
        return
    rows = []
    print(f"load average {os.getloadavg()[0]:.2f}; compile seconds, 1 CPU device")
    print(f"{'program':16s} {'part':11s} " + " ".join(f"{name:>22s}" for name in FLAG_SETS))
    for program in args.programs.split(","):
        by_flags = {name: run_row(program, flags) for name, flags in FLAG_SETS.items()}
        for part in next(iter(by_flags.values())):
            seconds = {name: by_flags[name][part] for name in FLAG_SETS}
            rows.append(dict(program=program, part=part, seconds=seconds, load_average_1min=os.getloadavg()[0]))
            print(f"{program:16s} {part:11s} " + " ".join(f"{seconds[name]:22.2f}" for name in FLAG_SETS))
    path = os.path.join(ROOT, "experiments", "results", "compile_times.json")
    with open(path, "w") as f:
        json.dump(dict(flag_sets=FLAG_SETS, rows=rows), f, indent=2)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
