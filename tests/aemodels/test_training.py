import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from aemodels.errors import DetectorInputError
from aemodels.mlp import MLPAutoencoder
from aemodels.training import TrainConfig, TrainResult, train_autoencoder


def flat(X):
    return X.reshape(len(X), -1)  # (n, L, C) -> (n, L*C)


def build(n_inputs, seed=0, **kwargs):
    torch.manual_seed(seed)
    return MLPAutoencoder(n_inputs, hidden=(32,), latent=4, **kwargs)


def test_config_defaults_and_frozen():
    config = TrainConfig()
    assert (config.epochs, config.batch_size, config.learning_rate, config.patience) == (60, 128, 1e-3, 10)
    assert config.device == "auto" and config.n_threads is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.epochs = 3


@pytest.mark.parametrize("field, value", [
    ("epochs", 0), ("epochs", 2.5), ("batch_size", 0), ("learning_rate", 0.0), ("learning_rate", float("nan")),
    ("weight_decay", -1e-4), ("patience", -1), ("grad_clip", -1.0), ("seed", -1), ("n_threads", 0),
    ("device", "gpu0"), ("epochs", True),
])
def test_config_rejects_bad_values(field, value):
    with pytest.raises(ValueError, match=f"TrainConfig {field}="):
        TrainConfig(**{field: value})


def test_training_loss_decreases_and_model_is_left_in_eval_mode(make_windows):
    X = flat(make_windows(np.random.default_rng(0), 256))
    model = build(X.shape[1], dropout=0.1)
    result = train_autoencoder(model, X, None, TrainConfig(n_threads=1, epochs=10, batch_size=32, learning_rate=3e-3))
    assert isinstance(result, TrainResult)
    losses = [h["train_loss"] for h in result.history]
    assert [h["epoch"] for h in result.history] == list(range(1, 11))
    assert all(h["val_loss"] is None for h in result.history)
    assert result.best_epoch == 10  # no X_val: the last epoch's weights
    assert losses[-1] < 0.2 * losses[0]
    assert not model.training


def test_same_seed_same_weights_different_seed_differs(make_windows):
    X = flat(make_windows(np.random.default_rng(0), 128))

    def weights(seed):
        model = build(X.shape[1], seed=seed, dropout=0.1)  # dropout: the forked RNG is seeded too
        train_autoencoder(model, X, None, TrainConfig(n_threads=1, epochs=3, batch_size=16, seed=seed))
        return model.state_dict()

    a, b, c = weights(0), weights(0), weights(1)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_training_leaves_global_rng_and_threads_alone(make_windows):
    X = flat(make_windows(np.random.default_rng(0), 64))
    model = build(X.shape[1])
    threads = torch.get_num_threads()
    rng_state = torch.get_rng_state()
    train_autoencoder(model, X, None, TrainConfig(epochs=1, n_threads=1))
    assert torch.get_num_threads() == threads
    assert torch.equal(torch.get_rng_state(), rng_state)


def test_early_stopping_restores_best_weights():
    # Train rows live in the first 8 dimensions, validation rows in the other 8: fitting the
    # training data makes the validation loss worse from the first epoch on.
    rng = np.random.default_rng(0)
    X_train = np.zeros((256, 16), np.float32)
    X_train[:, :8] = rng.normal(size=(256, 8))
    X_val = np.zeros((64, 16), np.float32)
    X_val[:, 8:] = rng.normal(size=(64, 8))
    model = build(16)
    config = TrainConfig(n_threads=1, epochs=40, batch_size=32, learning_rate=1e-2, patience=3)
    result = train_autoencoder(model, X_train, X_val, config)

    val_losses = [h["val_loss"] for h in result.history]
    assert result.best_epoch == 1 + int(np.argmin(val_losses))
    assert len(result.history) == result.best_epoch + config.patience < config.epochs
    with torch.no_grad():
        x_val = torch.from_numpy(X_val)
        restored = F.mse_loss(model(x_val), x_val).item()
    assert restored == pytest.approx(min(val_losses), rel=1e-5)


def test_patience_zero_runs_all_epochs(make_windows):
    X = flat(make_windows(np.random.default_rng(0), 64))
    result = train_autoencoder(build(X.shape[1]), X[:48], X[48:], TrainConfig(n_threads=1, epochs=4, patience=0))
    assert len(result.history) == 4
    assert all(h["val_loss"] is not None for h in result.history)


def test_rejects_val_of_other_width(make_windows):
    X = flat(make_windows(np.random.default_rng(0), 32))
    with pytest.raises(DetectorInputError, match="X_val has rows of shape"):
        train_autoencoder(build(X.shape[1]), X, X[:, :-1], TrainConfig(n_threads=1, epochs=1))


def test_divergence_raises_named_error(make_windows):
    X = flat(make_windows(np.random.default_rng(0), 32)) * 1e30
    with pytest.raises(FloatingPointError, match="training loss is"):
        train_autoencoder(build(X.shape[1]), X, None,
                          TrainConfig(n_threads=1, epochs=2, grad_clip=0.0, learning_rate=10.0))


def test_cuda_device_trains_there_or_is_refused_by_name():
    X = np.zeros((4, 4), np.float32)
    config = TrainConfig(n_threads=1, epochs=1, device="cuda")
    if torch.cuda.is_available():  # on a GPU machine: trains there, model back on its own device
        model = build(4)
        train_autoencoder(model, X, None, config)
        assert next(model.parameters()).device.type == "cpu"
    else:
        with pytest.raises(ValueError, match="CUDA is not available"):
            train_autoencoder(build(4), X, None, config)
