"""PNG figures of a trained detector, for its MLflow run (matplotlib, Agg backend).

Each function takes numbers, writes one PNG and returns its path; `candidate_figures`
makes the set of a trained candidate. Samples, which only the VAE draws, are made for the
VAE only.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")  # files only; never a window, works without a display

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator

from aemodels.detector import VAEDetector

if TYPE_CHECKING:  # fitting imports this module where it draws a candidate's figures
    from monitoring.models.fitting import Candidate

MAX_LATENT_POINTS = 3000
N_WORST_WINDOWS = 4
N_SAMPLES = 4


def _save(fig, path: Path, title: str | None = None, *, layout: bool = True) -> Path:
    """Write the figure as PNG; `title` is also stored in the file's metadata (its Title).
    `layout`: fit the margins to the labels (tight_layout); grids (_grid) have theirs."""
    if layout:
        fig.tight_layout()
    fig.savefig(path, dpi=90, metadata={"Title": title} if title else None)
    plt.close(fig)
    return path


def loss_curves(history: list[dict], best_epoch: int | None, title: str, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(6, 3.6))
    epochs = [row["epoch"] for row in history]
    ax.plot(epochs, [row["train_loss"] for row in history], label="train")
    val = [row.get("val_loss") for row in history]
    if any(v is not None for v in val):
        ax.plot(epochs, [np.nan if v is None else v for v in val], label="validation")
    if best_epoch:
        ax.axvline(best_epoch, color="grey", linestyle=":", label=f"best epoch {best_epoch}")
    ax.set(xlabel="epoch", ylabel="loss", title=title, yscale="log")
    ax.legend()
    return _save(fig, path)


def score_histogram(scores: np.ndarray, anomalous: np.ndarray, thresholds: dict[str, float], chosen: float,
                    title: str, path: Path) -> Path:
    """Scores of normal and anomalous windows with every threshold. A log axis when all
    scores are positive (reconstruction errors); linear otherwise (a VAE's -log p can be < 0)."""
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    values = np.concatenate([scores, list(thresholds.values()), [chosen]])
    log = bool(values.min() > 0)
    low, high = values.min(), values.max()
    edges = np.geomspace(low, high * 1.05, 60) if log else np.linspace(low, high + 0.05 * (high - low or 1), 60)
    bins = edges.tolist()
    ax.hist(scores[~anomalous], bins=bins, alpha=0.6, label=f"holdout, unlabeled ({(~anomalous).sum()})")
    if anomalous.any():
        ax.hist(scores[anomalous], bins=bins, alpha=0.6, color="tab:red",
                label=f"labeled anomalous ({anomalous.sum()})")
    for i, (name, value) in enumerate(sorted(thresholds.items(), key=lambda kv: kv[1])):
        ax.axvline(value, color=f"C{i + 2}", linestyle="--", linewidth=1, label=f"{name} {value:.3g}")
    ax.axvline(chosen, color="black", linewidth=1.6, label=f"threshold {chosen:.3g}")
    ax.set(xscale="log" if log else "linear", xlabel="score", ylabel="windows", title=title)
    ax.legend(fontsize=7)
    return _save(fig, path, title)


def evaluation_title(what: str, start: np.ndarray, anomalous: np.ndarray) -> str:
    """What an evaluation histogram shows: the holdout windows (unlabeled, from their first
    start) and the labeled windows of the range, or that the range has no labels."""
    holdout = f"holdout windows from {pd.Timestamp(np.min(start[~anomalous])):%Y-%m-%d %H:%M}"
    if anomalous.any():
        return f"{what}: scores of {holdout} vs labeled windows"
    return f"{what}: scores of {holdout} (no labeled windows in the range)"


def worst_reconstructions(X: np.ndarray, reconstruction: np.ndarray, scores: np.ndarray, sensors: list[str],
                          labels: list[str], title: str, path: Path) -> Path:
    """One row per window (worst first), one column per sensor: reading vs reconstruction."""
    n, _, n_sensors = X.shape
    fig, axes = _grid(n, n_sensors, row_height=1.5)
    for i in range(n):
        for j in range(n_sensors):
            ax = axes[i, j]
            ax.plot(X[i, :, j], color="tab:blue", linewidth=1)
            ax.plot(reconstruction[i, :, j], color="tab:orange", linewidth=1)
            if i == 0:
                ax.set_title(sensors[j], fontsize=8)
            if j == 0:
                ax.set_ylabel(f"{labels[i]}\n{scores[i]:.3g}", fontsize=6)
    fig.suptitle(f"{title}: reading (blue) vs reconstruction (orange), scaled", fontsize=9)
    return _save(fig, path, layout=False)


def _grid(rows: int, cols: int, row_height: float):
    """A figure of rows x cols small axes (1.9 in wide, `row_height` high) sharing the
    x axis, with margins fixed in inches for their labels (6-point ticks, a two-line row
    label, 8-point column titles and a suptitle) and at most 4 y ticks an axes. Not
    tight_layout: on a grid of 4 x 7 axes it renders the figure once more only to measure
    its labels: 0.75 s a 4 x 7 grid with it, 0.4 s without (in every training's fits)."""
    width, height = max(1.9 * cols, 5.0), row_height * rows + 0.6  # 5 in: room for the suptitle
    fig, axes = plt.subplots(rows, cols, figsize=(width, height), squeeze=False, sharex=True)
    fig.subplots_adjust(left=0.75 / width, right=1 - 0.1 / width, bottom=0.35 / height, top=1 - 0.65 / height,
                        wspace=0.35, hspace=0.25)
    for ax in axes.flat:
        ax.tick_params(labelsize=6)
        ax.yaxis.set_major_locator(MaxNLocator(4))
    axes[0, 0].xaxis.set_major_locator(MaxNLocator(4, integer=True))
    return fig, axes


def project_2d(latent: np.ndarray) -> np.ndarray:
    """The first two principal components (or the latent itself when it has <= 2 dims)."""
    if latent.shape[1] <= 2:
        return np.pad(latent, ((0, 0), (0, 2 - latent.shape[1])))
    centred = latent - latent.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return centred @ vt[:2].T


def latent_space(latent: np.ndarray, anomalous: np.ndarray, title: str, path: Path) -> Path:
    points = project_2d(latent)
    fig, ax = plt.subplots(figsize=(5, 4.2))
    ax.scatter(points[~anomalous, 0], points[~anomalous, 1], s=5, alpha=0.5, label="normal")
    if anomalous.any():
        ax.scatter(points[anomalous, 0], points[anomalous, 1], s=7, alpha=0.8, color="tab:red", label="anomalous")
    ax.set(xlabel="PC 1" if latent.shape[1] > 2 else "z 1", ylabel="PC 2" if latent.shape[1] > 2 else "z 2",
           title=f"{title}: latent space")
    ax.legend()
    return _save(fig, path)


def samples(generated: np.ndarray, sensors: list[str], title: str, path: Path) -> Path:
    """Windows drawn from a generative detector, one row per sample, one column per sensor."""
    n, _, n_sensors = generated.shape
    fig, axes = _grid(n, n_sensors, row_height=1.3)
    for i in range(n):
        for j in range(n_sensors):
            axes[i, j].plot(generated[i, :, j], color="tab:green", linewidth=1)
            if i == 0:
                axes[i, j].set_title(sensors[j], fontsize=8)
    fig.suptitle(f"{title}: sampled windows (scaled)", fontsize=9)
    return _save(fig, path, layout=False)


def candidate_figures(candidate: Candidate, folder: Path) -> list[Path]:
    """The child run's PNGs: loss curves, score histogram, worst windows, latent space, samples."""
    detector, ev, kind = candidate.detector, candidate.evaluation, candidate.kind
    paths = [
        loss_curves(detector.history_, detector.best_epoch_, kind, folder / "loss_curves.png"),
        score_histogram(ev.scores, ev.anomalous, candidate.bundle.thresholds, ev.threshold,
                        evaluation_title(kind, ev.windows.start, ev.anomalous), folder / "score_histogram.png"),
    ]
    worst = np.argsort(-ev.scores, kind="stable")[:N_WORST_WINDOWS]
    X = ev.windows.X[worst]
    labels = [f"{ev.windows.asset[i]} {pd.Timestamp(ev.windows.start[i]):%m-%d %H:%M}" for i in worst]
    paths.append(worst_reconstructions(X, detector.reconstruct(X), ev.scores[worst], candidate.bundle.sensors,
                                       labels, f"{kind}: worst windows", folder / "worst_windows.png"))
    # every detector encodes (the posterior mean for a VAE); only the VAE draws samples
    pick = np.random.default_rng(0).permutation(len(ev.scores))[:MAX_LATENT_POINTS]
    paths.append(latent_space(detector.encode(ev.windows.X[pick]), ev.anomalous[pick], kind,
                              folder / "latent_space.png"))
    if isinstance(detector, VAEDetector):
        paths.append(samples(detector.sample(N_SAMPLES, random_state=0), candidate.bundle.sensors, kind,
                             folder / "samples.png"))
    return paths


def figure_files(candidate: Candidate) -> dict[str, bytes]:
    """candidate_figures as {file name: PNG bytes}, to carry from the process that drew them."""
    with tempfile.TemporaryDirectory() as tmp:
        return {path.name: path.read_bytes() for path in candidate_figures(candidate, Path(tmp))}
