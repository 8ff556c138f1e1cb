"""Small synthetic windows for the aemodels tests."""
import numpy as np
import pytest


def sine_windows(rng: np.random.Generator, n_windows: int, window_size: int = 16, n_sensors: int = 3,
                 noise: float = 0.05) -> np.ndarray:
    """Smooth, correlated multichannel sinusoids + small noise, (n_windows, window_size, n_sensors) float32.

    All sensors share one frequency with fixed per-sensor amplitude and phase, so the
    channels are correlated; each window starts at a random phase.
    """
    amplitude = np.linspace(1.0, 0.5, n_sensors)  # (C,)
    phase = np.linspace(0.0, 2.0, n_sensors)  # (C,)
    start = rng.uniform(0, 2 * np.pi, size=(n_windows, 1, 1))
    t = 0.25 * np.arange(window_size)[None, :, None]  # (1, L, 1)
    X = amplitude * np.sin(start + t + phase)  # (n, L, C)
    X = X + rng.normal(0.0, noise, size=X.shape)
    return X.astype(np.float32)


@pytest.fixture(scope="session")
def make_windows():
    return sine_windows
