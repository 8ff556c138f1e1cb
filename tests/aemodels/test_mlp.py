import pytest
import torch
from torch import nn

from aemodels.mlp import MLPAutoencoder


@pytest.mark.parametrize("hidden", [(), (16,), (32, 16, 8)])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_shapes(hidden, activation):
    model = MLPAutoencoder(21, hidden=hidden, latent=3, activation=activation)
    x = torch.randn(5, 21)
    assert model(x).shape == (5, 21)
    assert model.encode(x).shape == (5, 3)


def test_layers_mirror_and_outputs_are_linear():
    model = MLPAutoencoder(40, hidden=(32, 16), latent=4, dropout=0.1)
    enc = [m for m in model.encoder if isinstance(m, nn.Linear)]
    dec = [m for m in model.decoder if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in enc] == [(40, 32), (32, 16), (16, 4)]
    assert [(m.in_features, m.out_features) for m in dec] == [(4, 16), (16, 32), (32, 40)]
    # latent code and output come straight from a Linear layer (no activation / dropout)
    assert isinstance(model.encoder[-1], nn.Linear) and isinstance(model.decoder[-1], nn.Linear)
    assert sum(isinstance(m, nn.Dropout) for m in model.modules()) == 4


def test_no_dropout_layers_when_dropout_is_zero():
    model = MLPAutoencoder(10)
    assert not any(isinstance(m, nn.Dropout) for m in model.modules())


@pytest.mark.parametrize("kwargs, message", [
    ({"n_inputs": 0}, "n_inputs=0"),
    ({"latent": 0}, "latent=0"),
    ({"hidden": (8, 0)}, r"hidden\[1\]=0"),
    ({"activation": "tanh"}, "activation='tanh'"),
    ({"dropout": 1.0}, "dropout=1.0"),
])
def test_rejects_bad_arguments(kwargs, message):
    args = {"n_inputs": 10, **kwargs}
    with pytest.raises(ValueError, match=message):
        MLPAutoencoder(**args)
