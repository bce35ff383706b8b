"""Where an encoder's jitted train step spends its time on XLA:CPU: thunk time per HLO instruction kind.

Builds the same train step as `bench_models.py` (encoder + 10-way linear classifier, SGD momentum, batch 64),
traces a few steps with `jax.profiler` (perfetto export), and sums each executed thunk's duration by the kind
of its HLO instruction: convolutions by window size, fusions by name prefix (`ynn_fusion` = YNNPACK fusions,
which hold most convolutions; `transpose_copy_fusion` = loop fusions that transpose an activation, with its
producers recomputed, for a kernel-gradient convolution). Thunks on the two threads overlap, so the column
sums to more than the wall time. Fusions that hold a convolution (with its window: 3x3 forward or input gradient,
image-sized for a kernel gradient) or a reduction are marked so.

Usage:
  python experiments/profile_step.py --case resnet18_cifar --steps 3
  python experiments/profile_step.py --case small_cnn_28 --devices 2   # the batch split over 2 CPU devices
  XLA_FLAGS=... python experiments/profile_step.py          # the same under other XLA flags
Writes experiments/results/profile_step_<case>.json (`_<N>_devices` added to the name on N > 1 devices).
"""

import argparse
import collections
import glob
import gzip
import json
import os
import re
import sys
import tempfile

import jax

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_models import CASES, jax_train_step


def instruction_kinds(hlo_text: str) -> dict[str, str]:
    """HLO instruction name -> a kind label: `convolution WxH`; for fusions the name without its numeric
    suffix, marked `(convolution WxH)` or `(reduce)` when the fused computation holds one; else the opcode."""
    computations = dict(re.findall(r"\n%(\S+) \(.*?\n(.*?)\n}", hlo_text, re.DOTALL))
    kinds = {}
    for line in hlo_text.splitlines():
        match = re.match(r"\s*(?:ROOT )?%(\S+) = .*? (\w[\w-]*)\(", line)
        if not match:
            continue
        name, opcode = match.groups()
        if opcode == "convolution":
            window = re.search(r"window=\{size=(\S+)", line)
            kinds[name] = f"convolution {window.group(1) if window else ''}"
        elif opcode == "fusion":
            called = re.search(r"calls=%([\w.-]+)", line)
            body = computations.get(called.group(1), "") if called else ""
            window = re.search(r" convolution\(.*?window=\{size=(\S+)", body)
            contents = (
                f" (convolution {window.group(1)})" if window else " (reduce)" if " reduce(" in body else ""
            )
            kinds[name] = re.sub(r"\.\d+$", "", name) + contents
        else:
            kinds[name] = opcode
    return kinds


def profile(case: str, steps: int) -> dict:
    """Milliseconds per step of thunk time by kind, plus the traced wall time per step."""
    step, state, batch = jax_train_step(case, "float32")
    kinds = instruction_kinds(step.lower(state, batch).compile().as_text())
    for _ in range(2):
        state = jax.block_until_ready(step(state, batch))
    with tempfile.TemporaryDirectory() as log_dir:
        with jax.profiler.trace(log_dir, create_perfetto_trace=True):
            for _ in range(steps):
                state = jax.block_until_ready(step(state, batch))
        (trace_path,) = glob.glob(os.path.join(log_dir, "**", "perfetto_trace.json.gz"), recursive=True)
        with gzip.open(trace_path) as f:
            trace = json.load(f)
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    ms_per_step = collections.defaultdict(float)
    wall_ms = 0.0
    for event in events:
        if event.get("ph") != "X":
            continue
        if event["name"] in kinds:
            ms_per_step[kinds[event["name"]]] += event["dur"] / 1e3 / steps
        elif "block_until_ready" in event["name"]:
            wall_ms += event["dur"] / 1e3 / steps
    return {"wall_ms_per_step": wall_ms, "thunk_ms_per_step": dict(ms_per_step)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--case", default="resnet18_cifar", choices=list(CASES))
    parser.add_argument("--steps", type=int, default=3, help="traced steps")
    parser.add_argument("--top", type=int, default=15, help="kinds to print")
    parser.add_argument("--devices", type=int, default=1, help="CPU devices the batch is split over")
    args = parser.parse_args()
    if args.devices < 1:
        raise ValueError(f"--devices must be at least 1, got {args.devices}.")
    jax.config.update("jax_num_cpu_devices", args.devices)
    result = profile(args.case, args.steps)
    result.update(
        case=args.case, steps=args.steps, devices=args.devices, xla_flags=os.environ.get("XLA_FLAGS", "")
    )
    result["load_average_1min"] = os.getloadavg()[0]
    print(
        f"{args.case} on {args.devices} device(s): {result['wall_ms_per_step']:.1f} ms/step wall, load"
        f" {result['load_average_1min']:.1f}"
    )
    print(f"{'kind':<32} {'ms/step':>9}")
    for kind, ms in sorted(result["thunk_ms_per_step"].items(), key=lambda item: -item[1])[: args.top]:
        print(f"{kind:<32} {ms:>9.1f}")
    output = os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "results",
        f"profile_step_{args.case}{f'_{args.devices}_devices' * (args.devices > 1)}.json",
    )
    os.makedirs(os.path.dirname(output), exist_ok=True)
    with open(output, "w") as f:
        json.dump(result, f, indent=1)
    print(f"Wrote {output}")


if __name__ == "__main__":
    main()
