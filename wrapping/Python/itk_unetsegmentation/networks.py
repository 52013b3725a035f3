"""U-Net definitions in PyTorch, scriptable with torch.jit.script, shared by the training tool
(itk_unetsegmentation.training) and the test-model generator (test/make_test_models.py).

`UNet(dim, in_channels, classes, base, depth, valid, dropout)` is the network of Ronneberger et al. (2015): two 3x3
convolutions per level, 2x2 max pooling, 2x2 up-convolutions, and a 1x1 head; `dropout` > 0 adds the paper's
drop-out at the end of the contracting path (on the bottleneck's features). With `valid=True` the convolutions are
unpadded and the skip connections are centre-cropped, as in the paper (an input edge of 572 gives 388 for depth 4);
with `valid=False` they are same-padded and the concatenation needs edges divisible by 2**depth.

`Normalized(net, mean, standard_deviation)` puts the intensity normalisation inside the network, so that the saved
model takes the images as they are.
"""
import torch
from torch import nn


def _conv(dim):
    return nn.Conv2d if dim == 2 else nn.Conv3d


class Block(nn.Module):
    def __init__(self, dim, cin, cout, valid, batch_norm=False):
        super().__init__()
        conv = _conv(dim)
        pad = 0 if valid else 1
        if batch_norm:
            norm = nn.BatchNorm2d if dim == 2 else nn.BatchNorm3d
            self.body = nn.Sequential(
                conv(cin, cout, 3, padding=pad), norm(cout), nn.ReLU(inplace=True),
                conv(cout, cout, 3, padding=pad), norm(cout), nn.ReLU(inplace=True))
        else:
            self.body = nn.Sequential(
                conv(cin, cout, 3, padding=pad), nn.ReLU(inplace=True),
                conv(cout, cout, 3, padding=pad), nn.ReLU(inplace=True))

    def forward(self, x):
        return self.body(x)


def centre_crop(skip: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    for axis in range(2, skip.dim()):
        offset = (skip.size(axis) - reference.size(axis)) // 2
        skip = skip.narrow(axis, offset, reference.size(axis))
    return skip


class Level(nn.Module):
    """One resolution level: encode, recurse one level down, up-convolve, concatenate the skip, decode."""

    def __init__(self, dim, cin, width, depth, valid, dropout=0.0, batch_norm=False):
        super().__init__()
        self.valid = valid
        self.encode = Block(dim, cin, width, valid, batch_norm)
        self.pool = nn.MaxPool2d(2) if dim == 2 else nn.MaxPool3d(2)
        if depth > 1:
            self.inner = Level(dim, width, 2 * width, depth - 1, valid, dropout, batch_norm)
        elif dropout > 0:
            # The bottleneck ends the contracting path: the paper's drop-out goes on its features.
            self.inner = nn.Sequential(Block(dim, width, 2 * width, valid, batch_norm), nn.Dropout(dropout))
        else:
            self.inner = Block(dim, width, 2 * width, valid, batch_norm)
        up = nn.ConvTranspose2d if dim == 2 else nn.ConvTranspose3d
        self.up = up(2 * width, width, 2, stride=2)
        self.decode = Block(dim, 2 * width, width, valid, batch_norm)

    def forward(self, x):
        skip = self.encode(x)
        y = self.up(self.inner(self.pool(skip)))
        if self.valid:
            skip = centre_crop(skip, y)
        return self.decode(torch.cat([skip, y], 1))


class UNet(nn.Module):
    def __init__(self, dim=2, in_channels=1, classes=2, base=8, depth=2, valid=True, dropout=0.0, batch_norm=False):
        super().__init__()
        self.levels = Level(dim, in_channels, base, depth, valid, dropout, batch_norm)
        self.head = _conv(dim)(base, classes, 1)

    def forward(self, x):
        return self.head(self.levels(x))


class Normalized(nn.Module):
    """(x - mean) / standard_deviation, then the network."""

    def __init__(self, net, mean, standard_deviation):
        super().__init__()
        self.net = net
        self.mean = float(mean)
        self.scale = 1.0 / float(standard_deviation)

    def forward(self, x):
        return self.net((x - self.mean) * self.scale)


def unet_architecture(state):
    """The constructor arguments of the UNet whose state_dict is `state` (keys as saved inside Normalized, "net."
    first), or None for any other network. Drop-out has no parameters: only whether the network has the layer."""
    first, head = state.get("net.levels.encode.body.0.weight"), state.get("net.head.weight")
    if first is None or head is None:
        return None
    return {"dim": first.dim() - 2, "in_channels": first.shape[1], "classes": head.shape[0], "base": first.shape[0],
            "depth": sum(1 for key in state if key.endswith(".up.weight")),
            "batch_norm": any(key.endswith("running_mean") for key in state),
            "has_dropout": any(".inner.0.body." in key for key in state)}


def initialize_as_paper(net):
    """The paper's initialisation: weights from a Gaussian with standard deviation sqrt(2 / N), N the number of
    incoming nodes of a neuron (kernel voxels times input channels); biases 0."""
    for module in net.modules():
        if isinstance(module, (nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.ConvTranspose3d)):
            if isinstance(module, (nn.Conv2d, nn.Conv3d)):
                fan_in = module.weight[0].numel()
            else:  # An up-convolution's output voxel sees each input channel once per kernel voxel per stride.
                fan_in = module.weight.shape[0] * module.weight[0, 0].numel()
                for stride in module.stride:
                    fan_in //= stride
            nn.init.normal_(module.weight, 0.0, (2.0 / fan_in) ** 0.5)
            nn.init.zeros_(module.bias)


def valid_unet_border(depth):
    """Voxels a valid U-Net of the given depth loses on each side: two 3x3 convolutions per level on the way down,
    two in the bottleneck, two per level on the way up, each at its level's scale (92 for depth 4: 572 -> 388)."""
    return (12 * 2 ** depth - 8) // 2


def valid_unet_output_edge(depth, at_least=1):
    """The smallest output edge at or above `at_least` that a valid U-Net of the given depth accepts: the edges are
    4 + 2**depth * k (4, 20, 36, ... for depth 4), those that pool evenly at every level."""
    granularity = 2 ** depth
    return 4 + max(0, -(-(at_least - 4) // granularity)) * granularity
