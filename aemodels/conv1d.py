"""A 1-D convolutional autoencoder: sensors are channels, the window is the time axis."""
from __future__ import annotations

import weakref
from collections.abc import Callable
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from aemodels.checks import is_int
from aemodels.mlp import ACTIVATIONS, OUTPUT_ACTIVATIONS, check_network_args
from aemodels.network import Autoencoder


def conv_lengths(window_size: int, n_blocks: int) -> list[int]:
    """Sequence lengths after each stride-2 block, window_size first: 30 -> [30, 15, 8, 4]."""
    lengths = [window_size]
    for _ in range(n_blocks):
        lengths.append((lengths[-1] - 1) // 2 + 1)  # 'same' padding, stride 2: ceil(L / 2)
    return lengths


def check_conv_args(owner: str, window_size: int, n_sensors: int, channels: tuple[int, ...], kernel_size: int,
                    latent: int, activation: str, dropout: float, output_activation: str) -> None:
    check_network_args(owner, {"window_size": window_size, "n_sensors": n_sensors, "latent": latent,
                               **{f"channels[{i}]": c for i, c in enumerate(channels)}},
                       activation, dropout, output_activation)
    if not channels:
        raise ValueError(f"{owner} channels=(), must name at least one convolution block")
    if not is_int(kernel_size) or kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"{owner} kernel_size={kernel_size!r}, must be an odd int >= 1")


def conv_encoder(window_size: int, n_sensors: int, channels: tuple[int, ...], kernel_size: int, n_out: int,
                 activation: str, dropout: float) -> nn.Sequential:
    """(B, C, L) -> strided Conv1d blocks -> flatten -> Linear -> (B, n_out)."""
    layers: list[nn.Module] = []
    for c_in, c_out in zip((n_sensors, *channels[:-1]), channels, strict=True):
        layers += [nn.Conv1d(c_in, c_out, kernel_size, stride=2, padding=kernel_size // 2),
                   ACTIVATIONS[activation]()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
    n_flat = channels[-1] * conv_lengths(window_size, len(channels))[-1]
    layers += [nn.Flatten(), nn.Linear(n_flat, n_out)]  # (B, channels[-1], L_last) -> (B, n_flat) -> (B, n_out)
    return nn.Sequential(*layers)


def conv_decoder(n_in: int, window_size: int, n_sensors: int, channels: tuple[int, ...], kernel_size: int,
                 activation: str, dropout: float, output_activation: str) -> nn.Sequential:
    """(B, n_in) -> Linear -> unflatten -> ConvTranspose1d blocks -> (B, C, L), mirroring conv_encoder.

    Each transposed block doubles the length, minus one where the encoder rounded an odd
    length up (output_padding), so any window_size comes back exactly."""
    lengths = conv_lengths(window_size, len(channels))
    layers: list[nn.Module] = [nn.Linear(n_in, channels[-1] * lengths[-1]), ACTIVATIONS[activation](),
                               nn.Unflatten(1, (channels[-1], lengths[-1]))]  # (B, c*L_last) -> (B, c, L_last)
    outs = (*reversed(channels[:-1]), n_sensors)
    for i, (c_in, c_out) in enumerate(zip(reversed(channels), outs, strict=True)):
        l_in, l_out = lengths[-1 - i], lengths[-2 - i]
        layers.append(nn.ConvTranspose1d(c_in, c_out, kernel_size, stride=2, padding=kernel_size // 2,
                                         output_padding=l_out - (2 * l_in - 1)))
        if i < len(channels) - 1:
            layers.append(ACTIVATIONS[activation]())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
    if output_activation != "identity":
        layers.append(OUTPUT_ACTIVATIONS[output_activation]())
    return nn.Sequential(*layers)


class Conv1dAutoencoder(Autoencoder):
    """(B, n_sensors, window_size) -> strided convolutions -> dense latent -> transposed convolutions -> same shape."""

    def __init__(self, window_size: int, n_sensors: int, channels: tuple[int, ...] = (16, 32), kernel_size: int = 5,
                 latent: int = 8, activation: str = "relu", dropout: float = 0.0, output_activation: str = "identity"):
        super().__init__()
        channels = tuple(channels)
        check_conv_args("Conv1dAutoencoder", window_size, n_sensors, channels, kernel_size, latent,
                        activation, dropout, output_activation)
        self.window_size, self.n_sensors, self.latent = int(window_size), int(n_sensors), int(latent)
        self.encoder = conv_encoder(window_size, n_sensors, channels, kernel_size, latent, activation, dropout)
        self.decoder = conv_decoder(latent, window_size, n_sensors, channels, kernel_size, activation, dropout,
                                    output_activation)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)  # (B, C, L) -> (B, latent)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))  # (B, C, L) -> (B, latent) -> (B, C, L)

    def encode_windows(self, x: torch.Tensor) -> torch.Tensor:
        """encode() on windows as they are, (B, L, C) -> (B, latent), the convolutions run channels last."""
        return channels_last_forward(self.encoder, x)

    def forward_windows(self, x: torch.Tensor) -> torch.Tensor:
        """forward() on windows as they are, (B, L, C) -> (B, L, C): the same values, computed
        channels last (no transposes of the windows; see channels_last_forward)."""
        return channels_last_forward(self.decoder, channels_last_forward(self.encoder, x))

    def residual_windows(self, x: torch.Tensor) -> torch.Tensor:
        """forward_windows(x) - x, (B, L, C): scoring subtracts the windows as the last layer writes."""
        return channels_last_forward(self.decoder, channels_last_forward(self.encoder, x), minus=x)


# -- the same networks on windows as they come, (B, L, C): channels last, convolutions as matmuls --
# oneDNN runs these small 1-D convolutions (a few channels, kernel 5) on (B, C, L) far below matmul speed,
# and the transposed ones slower still. With the time axis outer and the channels inner, a
# convolution is one matmul over the unfolded input (im2col), and a stride-2 transposed
# convolution one matmul that writes each pair of output steps (its two phases) at once.
# The weights are the modules' own, read on every call, so training and scoring share them.


def conv1d_channels_last(x: torch.Tensor, conv: nn.Conv1d) -> torch.Tensor:
    """conv(x) for x (B, L, C_in) channels last: (B, L_out, C_out), the same values as
    conv(x.transpose(1, 2)).transpose(1, 2) for any stride and an int padding."""
    batch, length, c_in = x.shape
    assert not isinstance(conv.padding, str), "channels-last convolutions take an int padding"
    k, stride, padding = conv.kernel_size[0], conv.stride[0], conv.padding[0]
    l_out = (length + 2 * padding - k) // stride + 1
    patches = _Im2col.apply(x, k, stride, padding, padding)  # (B * L_out, k * C_in), zero-padded in time
    weight = conv.weight.transpose(1, 2).reshape(conv.out_channels, k * c_in)  # (C_out, C_in, k) -> (C_out, k * C_in)
    return _affine(patches, weight.t(), conv.bias).view(batch, l_out, -1)


class _Im2col(torch.autograd.Function):
    """(B, L, C) -> (B * L_out, k * C): the input of each output step, k consecutive steps of
    the time axis (stride apart) of x zero-padded by `left` and `right` steps, as the rows of
    a matmul; the values of pad(x).unfold(1, k, stride).transpose(2, 3).reshape(-1, k * C).

    Its backward gives that expression's gradient bit for bit (each step's gradient sums the
    windows containing it in unfold_backward's order, from the first window on) as k strided
    additions instead of unfold_backward, a per-element scatter that took a fifth of a
    training step, and without the padding's own graph node and copy."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, k: int, stride: int, left: int, right: int) -> torch.Tensor:
        batch, length, channels = x.shape
        padded = x
        if left or right:
            padded = x.new_zeros(batch, left + length + right, channels)  # (B, L + left + right, C)
            padded[:, left:left + length] = x
        l_out = (padded.shape[1] - k) // stride + 1
        ctx.shape, ctx.k, ctx.stride, ctx.left = padded.shape, k, stride, left
        ctx.length = length
        # (B, L_out, C, k) -> (B, L_out, k, C) -> (B * L_out, k * C)
        return padded.unfold(1, k, stride).transpose(2, 3).reshape(batch * l_out, k * channels)

    @staticmethod
    def backward(ctx: Any, *grads: torch.Tensor) -> tuple[torch.Tensor, None, None, None, None]:
        batch, padded_length, channels = ctx.shape
        k, stride = ctx.k, ctx.stride
        l_out = (padded_length - k) // stride + 1
        grad = grads[0].reshape(batch, l_out, k, channels)
        grad_padded = grad.new_zeros(batch, padded_length, channels)
        # step i gets tap j of window (i - j) / stride: the taps from last to first visit its
        # windows from first to last, the order unfold_backward sums them in
        for j in reversed(range(k)):
            grad_padded[:, j:j + stride * (l_out - 1) + 1:stride].add_(grad[:, :, j])  # a view, added in place
        return grad_padded[:, ctx.left:ctx.left + ctx.length], None, None, None, None


def _affine(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """x @ weight (+ bias), the bias added by the matmul itself."""
    return x @ weight if bias is None else torch.addmm(bias, x, weight)


def _phase_taps(k: int, padding: int) -> dict[tuple[int, int], int]:
    """{(phase, tap j): offset d}: output step 2m + phase of a stride-2 transposed convolution
    takes tap j from input step m + d."""
    return {(phase, j): (phase + padding - j) // 2 for phase in (0, 1) for j in range(k)
            if (phase + padding - j) % 2 == 0}


def conv_transpose1d_channels_last(x: torch.Tensor, conv: nn.ConvTranspose1d) -> torch.Tensor:
    """conv(x) for x (B, L, C_in) channels last and a stride-2 transposed convolution: (B, L_out, C_out),
    the same values as conv(x.transpose(1, 2)).transpose(1, 2).

    Output steps 2m and 2m + 1 depend on the input steps m + d for the few offsets d the
    kernel reaches: one matmul of the unfolded input (B * L, taps * C_in) by a (taps * C_in,
    2 * C_out) matrix of the kernel's taps gives both phases, already interleaved in time."""
    batch, length, c_in = x.shape
    assert not isinstance(conv.padding, str) and conv.stride[0] == 2, "channels-last transposed convolutions: stride 2"
    k, padding, output_padding = conv.kernel_size[0], conv.padding[0], conv.output_padding[0]
    c_out = conv.out_channels
    l_out = (length - 1) * 2 - 2 * padding + k + output_padding
    taps = _phase_taps(k, padding)
    low, high = min(taps.values()), max(taps.values())
    n_taps = high - low + 1
    # (taps, C_in, phase, C_out), zero where a phase does not use an offset: one gather from the
    # kernel's taps and a zero tap (k), not a stack of per-tap slices (a few ops, not dozens,
    # per training step; every tap is read once, so its gradient is the same, bit for bit)
    index = [k] * (2 * n_taps)  # (offset, phase) -> tap
    for (phase, j), d in taps.items():
        index[2 * (d - low) + phase] = j
    extended = torch.cat([conv.weight, conv.weight.new_zeros(c_in, c_out, 1)], dim=2)  # (C_in, C_out, k + 1)
    gathered = extended[:, :, torch.tensor(index)].view(c_in, c_out, n_taps, 2)  # (C_in, C_out, taps, 2)
    weight = gathered.permute(2, 0, 3, 1)  # (taps, C_in, 2, C_out)
    # (B * L, taps * C_in): output pair m reads input steps m + low .. m + high (zeros beyond the ends)
    patches = _Im2col.apply(x[:, max(0, low):length - max(0, -high)], n_taps, 1, max(0, -low), max(0, high))
    out = _affine(patches, weight.reshape(n_taps * c_in, 2 * c_out),
                  None if conv.bias is None else conv.bias.repeat(2))
    return out.view(batch, 2 * length, c_out)[:, :l_out]  # (B, L, 2, C_out) -> (B, 2L, C_out), cropped


# -- inference: the same convolutions through torch's 2-D convolution on an NHWC view --
# A channels-last window (B, L, C) is, without a copy, an image (B, C, 1, L) in torch's
# channels_last memory format, which oneDNN convolves directly (no unfolded copy of the
# input: 2x the im2col matmul above on the default network). A stride-2 transposed
# convolution is a stride-1 convolution with 2 * C_out output channels, one per phase of
# each output pair (the taps of _phase_taps); oneDNN's own transposed convolution is slower
# than the matmul. Used where no gradient is taken; the weights it derives from the modules'
# (the phase convolutions', the permuted Linear layers') are made once per set of parameter
# values (_prepared), not on every batch.


# oneDNN's convolution with a ReLU, or the subtraction of a tensor, applied as it writes (the
# op torch's own compiler fuses into on CPU); absent from a build without oneDNN, where
# F.conv2d and an in-place ReLU or subtraction follow.
_CONV_POINTWISE = (getattr(torch.ops.mkldnn, "_convolution_pointwise", None)
                   if torch.backends.mkldnn.is_available() else None)


# (module, ((parameter, a copy of its values), ...), what was made of them): a module's derived
# weights, remade when a parameter is replaced or its values change. The values are compared,
# not the tensors' version counters: fused optimizer steps (Adam's fused=True, which training
# uses) update parameters in place without bumping them. Comparing a few thousand values
# costs microseconds; remaking the weights, a tenth of a scoring pass of 2048 windows.
_PREPARED: weakref.WeakKeyDictionary[nn.Module, tuple[tuple[tuple[torch.Tensor, torch.Tensor], ...], Any]] = \
    weakref.WeakKeyDictionary()


def _prepared(module: nn.Module, make: Callable[[Any], Any]) -> Any:
    """make(module), computed (without gradients) only when the module's own parameters
    differ from those it was last computed from."""
    params = list(module.parameters(recurse=False))
    hit = _PREPARED.get(module)
    if hit is not None and len(hit[0]) == len(params) and all(
            saved is p and torch.equal(values, p) for (saved, values), p in zip(hit[0], params, strict=True)):
        return hit[1]
    with torch.no_grad():
        value = make(module)
        _PREPARED[module] = (tuple((p, p.detach().clone()) for p in params), value)
    return value


def _conv2d(image: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride: int, padding: int,
            dilation: int, groups: int, relu: bool = False, minus: torch.Tensor | None = None) -> torch.Tensor:
    """F.conv2d over the time axis of a (B, C, 1, L) image by a channels_last weight, then the
    ReLU if asked, or minus (an image of the output's shape) subtracted, in one pass where it can."""
    assert not (relu and minus is not None), "a ReLU or a subtraction after the convolution, not both"
    image = image.contiguous(memory_format=torch.channels_last)
    args = (weight, bias, [0, padding], [1, stride], [1, dilation], groups)
    if relu and _CONV_POINTWISE is not None:
        return _CONV_POINTWISE(image, *args, "relu", [], "")
    if minus is not None and _CONV_POINTWISE is not None:
        return _CONV_POINTWISE.binary(image, minus.contiguous(memory_format=torch.channels_last), *args, "sub",
                                      1.0, None, [], None)
    out = F.conv2d(image, weight, bias, (1, stride), (0, padding), (1, dilation), groups)
    return out.relu_() if relu else out if minus is None else out.sub_(minus)


def _image(x: torch.Tensor) -> torch.Tensor:
    """(B, L, C) -> (B, C, 1, L), a view: channels_last memory when x is contiguous."""
    return x.unsqueeze(1).permute(0, 3, 1, 2)


def _windows(image: torch.Tensor) -> torch.Tensor:
    """(B, C, 1, L) -> (B, L, C), a view when the image is channels_last."""
    return image.permute(0, 2, 3, 1).flatten(1, 2)


def _channels_last(weight: torch.Tensor) -> torch.Tensor:
    """A (C_out, C_in, 1, k) weight in channels_last memory, as oneDNN wants it beside a
    channels_last input (a contiguous one sends it down a path many times slower)."""
    return weight.contiguous(memory_format=torch.channels_last)


def conv1d_image(x: torch.Tensor, conv: nn.Conv1d, relu: bool = False) -> torch.Tensor:
    """conv(x) for x (B, L, C_in) channels last, as a 2-D convolution of the (B, C_in, 1, L)
    channels_last view: (B, L_out, C_out), the values of conv1d_channels_last (then a ReLU if asked)."""
    assert not isinstance(conv.padding, str), "channels-last convolutions take an int padding"
    # (C_out, C_in, k) -> (C_out, C_in, 1, k), channels_last
    weight = _prepared(conv, lambda module: _channels_last(module.weight.unsqueeze(2)))
    return _windows(_conv2d(_image(x), weight, conv.bias, conv.stride[0], conv.padding[0], conv.dilation[0],
                            conv.groups, relu))


def _phase_conv_weight(conv: nn.ConvTranspose1d) -> tuple[torch.Tensor, int]:
    """The stride-1 convolution equal to a stride-2 transposed one: its weight (2 * C_out,
    C_in, 1, taps), output channel phase * C_out + c for output step 2m + phase, tap i
    reading input step m + i - reach, and reach, its symmetric padding."""
    assert not isinstance(conv.padding, str), "channels-last transposed convolutions take an int padding"
    k, padding = conv.kernel_size[0], conv.padding[0]
    c_in, c_out = conv.in_channels, conv.out_channels
    taps = _phase_taps(k, padding)
    reach = max(0, -min(taps.values()), max(taps.values()))
    weight = conv.weight.new_zeros(2, c_out, c_in, 2 * reach + 1)  # (phase, C_out, C_in, taps)
    for (phase, j), d in taps.items():
        weight[phase, :, :, d + reach] = conv.weight[:, :, j].t()  # (C_in, C_out) -> (C_out, C_in)
    return weight.view(2 * c_out, c_in, 1, 2 * reach + 1), reach


def _phase_conv(conv: nn.ConvTranspose1d) -> tuple[torch.Tensor, torch.Tensor | None, int]:
    """_phase_conv_weight's weight in channels_last memory, the bias of both phases, the reach."""
    weight, reach = _phase_conv_weight(conv)
    return _channels_last(weight), None if conv.bias is None else conv.bias.repeat(2), reach


def conv_transpose1d_image(x: torch.Tensor, conv: nn.ConvTranspose1d, relu: bool = False,
                           minus: torch.Tensor | None = None) -> torch.Tensor:
    """conv(x) for x (B, L, C_in) channels last and a stride-2 transposed convolution: (B, L_out, C_out),
    the values of conv_transpose1d_channels_last, as one stride-1 convolution of the channels_last
    view giving both phases of each output pair, already interleaved in time (then a ReLU if
    asked, or minus (B, L_out, C_out) subtracted)."""
    batch, length, _ = x.shape
    assert not isinstance(conv.padding, str) and conv.stride[0] == 2 and conv.dilation[0] == 1 \
        and conv.groups == 1, "channels-last transposed convolutions: stride 2, no dilation, one group"
    c_out = conv.out_channels
    l_out = (length - 1) * 2 - 2 * conv.padding[0] + conv.kernel_size[0] + conv.output_padding[0]
    weight, bias, reach = _prepared(conv, _phase_conv)
    # minus in the output's layout: (B, 2L, C_out) -> (B, L, 2 * C_out) -> (B, 2 * C_out, 1, L), when not cropped
    fused = minus is not None and l_out == 2 * length and minus.is_contiguous()
    out = _conv2d(_image(x), weight, bias, 1, reach, 1, 1, relu,
                  _image(minus.view(batch, length, 2 * c_out)) if fused and minus is not None else None)
    # (B, 2 * C_out, 1, L) -> (B, L, 2, C_out) -> (B, 2L, C_out), cropped
    windows = _windows(out).reshape(batch, 2 * length, c_out)[:, :l_out]
    return windows.sub_(minus) if minus is not None and not fused else windows


class WindowTranspose(nn.Module):
    """(B, L, C) <-> (B, C, L), between window layout and Conv1d layout."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.transpose(1, 2)


def channels_last_forward(layers: nn.Sequential, x: torch.Tensor, minus: torch.Tensor | None = None) -> torch.Tensor:
    """The layers of conv_encoder / conv_decoder (and the window transposes around them) on
    channels-last activations: (B, L, C) or flat (B, n) in, the same values as the modules
    give in their own (B, C, L) layout, every step kept in (B, L, C).

    With gradients on (training), the convolutions run as matmuls (conv1d_channels_last,
    conv_transpose1d_channels_last); without (scoring), as oneDNN convolutions of channels_last
    views (conv1d_image, conv_transpose1d_image) with the ReLUs in place and weights made once
    per set of parameter values. With minus, the result is layers(x) - minus, subtracted as a
    last transposed convolution writes.

    A Flatten keeps (L, C) order, so the Linear after it reads its columns permuted; a Linear
    whose output an Unflatten splits into (C, L) writes its rows permuted into (L, C)."""
    modules = list(layers)
    inference = not torch.is_grad_enabled()  # no autograd graph: oneDNN's convolutions, activations in place
    skip = -1  # the index of a ReLU a convolution has applied already
    flat_from: tuple[int, int] | None = None  # (C, L) of the last Flatten, for the Linear after it
    owned = False  # whether x is a tensor this pass made (not the caller's), free to overwrite
    for i, module in enumerate(modules):
        if isinstance(module, (nn.Conv1d, nn.ConvTranspose1d)) and inference:
            fused_relu = i + 1 < len(modules) and type(modules[i + 1]) is nn.ReLU  # applied as oneDNN writes
            last = i == len(modules) - 1 and minus is not None and isinstance(module, nn.ConvTranspose1d)
            x = (conv1d_image(x, module, fused_relu) if isinstance(module, nn.Conv1d)
                 else conv_transpose1d_image(x, module, fused_relu, minus if last else None))
            minus = None if last else minus
            owned, skip = True, i + 1 if fused_relu else skip
        elif isinstance(module, nn.Conv1d):
            x, owned = conv1d_channels_last(x, module), True
        elif isinstance(module, nn.ConvTranspose1d):
            x, owned = conv_transpose1d_channels_last(x, module), True
        elif i == skip:
            continue  # the ReLU the convolution before applied
        elif isinstance(module, nn.Flatten):
            steps, channels = x.shape[1:]
            x = x.reshape(len(x), steps * channels)  # (B, L, C) -> (B, L * C)
            flat_from = (channels, steps)
        elif isinstance(module, nn.Linear):
            columns, rows = flat_from, _unflatten_after(modules, i)
            if inference:  # the permuted weights made once, transposed for the matmul
                weight_t, bias = _prepared(module,
                                           partial(_linear_weights, columns=columns, rows=rows, transposed=True))
                x = torch.mm(x, weight_t) if bias is None else torch.addmm(bias, x, weight_t)
            else:
                x = nn.functional.linear(x, *_linear_weights(module, columns, rows))
            flat_from, owned = None, True
        elif isinstance(module, nn.Unflatten):
            channels, steps = module.unflattened_size
            x = x.view(len(x), steps, channels)  # the Linear before wrote (L, C) order
        elif isinstance(module, WindowTranspose):
            continue  # windows already are (B, L, C)
        elif inference and owned and isinstance(module, nn.ReLU):
            x = x.relu_()
        else:  # element-wise: activation, dropout, output activation (eval dropout returns x itself)
            out = module(x)
            x, owned = out, owned or out is not x
    if minus is not None:
        x = x.sub_(minus) if inference and owned else x - minus
    return x


def _linear_weights(linear: nn.Linear, columns: tuple[int, int] | None, rows: nn.Unflatten | None,
                    transposed: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A Linear's weight and bias for channels-last activations: columns (C, L) -> (L, C) after
    a Flatten of (C, L), rows (C, L) -> (L, C) before an Unflatten into (C, L); the weight
    (out, in), or (in, out) contiguous when transposed."""
    weight: torch.Tensor = linear.weight
    bias: torch.Tensor | None = linear.bias
    if columns is not None:
        channels, steps = columns
        weight = weight.view(-1, channels, steps).transpose(1, 2).reshape(-1, steps * channels)
    if rows is not None:
        channels, steps = rows.unflattened_size
        weight = weight.view(channels, steps, -1).transpose(0, 1).reshape(steps * channels, -1)
        bias = None if bias is None else bias.view(channels, steps).t().reshape(-1)
    return (weight.t().contiguous(), bias) if transposed else (weight, bias)


def _unflatten_after(modules: list[nn.Module], i: int) -> nn.Unflatten | None:
    """The Unflatten the output of modules[i] reaches through element-wise layers only, if any."""
    for module in modules[i + 1:]:
        if isinstance(module, nn.Unflatten):
            return module
        if isinstance(module, (nn.Linear, nn.Conv1d, nn.ConvTranspose1d, nn.Flatten)):
            return None
    return None
