"""What a run reports: a progress line with rate and ETA, TensorBoard scalars, metrics.json and a plot."""

import json
import os
import time
from typing import Mapping

from absl import logging


class Reporter:
    """Writes scalars to TensorBoard event files in `workdir` and logs a progress line.

    Only the process with `active=True` (process 0) writes; the others keep the history for nothing.
    """

    def __init__(self, workdir: str, total_steps: int, *, active: bool = True):
        self._total_steps = total_steps
        self._active = active
        self.history: dict[str, list[tuple[int, float]]] = {}
        self._writer = None
        if active:
            from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top

            self._writer = SummaryWriter(logdir=os.path.join(workdir, "tensorboard"))
        self._last_time = None
        self._last_step = None

    def start_timer(self, step: int) -> None:
        self._last_time, self._last_step = time.perf_counter(), step

    def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        for name, value in scalars.items():
            self.history.setdefault(name, []).append((step, float(value)))
            if self._writer is not None:
                self._writer.add_scalar(name, float(value), step)
        if self._writer is not None:
            self._writer.flush()

    def progress(self, step: int, scalars: Mapping[str, float], images_per_step: int) -> float:
        """Logs `step/total loss=... images/s ETA` since the last call; returns the measured images/s."""
        now = time.perf_counter()
        steps = step - self._last_step
        seconds = max(now - self._last_time, 1e-9)
        images_per_second = steps * images_per_step / seconds
        eta = (self._total_steps - step) * seconds / max(steps, 1)
        self._last_time, self._last_step = now, step
        if self._active:
            shown = " ".join(f"{k}={v:.4g}" for k, v in scalars.items())
            logging.info(
                "step %d/%d %s | %.0f img/s | ETA %s",
                step,
                self._total_steps,
                shown,
                images_per_second,
                _format_duration(eta),
            )
        return images_per_second

    def finish(self, workdir: str, final_metrics: Mapping[str, float]) -> None:
        """Writes `metrics.json` and `curves.png` (training curves) into `workdir`."""
        if not self._active:
            return
        with open(os.path.join(workdir, "metrics.json"), "w") as f:
            json.dump(dict(final_metrics), f, indent=2, sort_keys=True)
        plot_curves(self.history, os.path.join(workdir, "curves.png"))
        self._writer.close()


def plot_curves(history: Mapping[str, list[tuple[int, float]]], path: str) -> None:
    """One panel per scalar prefix (`train/`, `test/`, ...), each a line per scalar against step.

    Drawn on a bare `Figure`, so it leaves pyplot's backend alone (inline plots in notebooks keep working).
    """
    from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top

    panels: dict[str, list[str]] = {}
    for name in sorted(history):
        if len(history[name]) > 1:
            panels.setdefault(name.split("/")[0], []).append(name)
    fig = Figure(figsize=(5 * max(len(panels), 1), 3.5))
    axes = fig.subplots(1, max(len(panels), 1), squeeze=False)
    for ax, (panel, names) in zip(axes[0], panels.items()):
        for name in names:
            steps, values = zip(*history[name])
            ax.plot(steps, values, label=name.split("/", 1)[-1])
        ax.set_title(panel)
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def _format_duration(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours:d}:{minutes:02d}:{seconds:02d}"
