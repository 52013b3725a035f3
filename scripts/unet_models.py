"""U-Net definitions in PyTorch, scriptable with torch.jit.script, shared by the test-model generator and the
demo-model training script.

`UNet(dim, in_channels, classes, base, depth, valid)` is the network of Ronneberger et al. (2015): two 3x3
convolutions per level, 2x2 max pooling, 2x2 up-convolutions, and a 1x1 head. With `valid=True` the convolutions
are unpadded and the skip connections are centre-cropped, as in the paper (an input edge of 572 gives 388 for
depth 4); with `valid=False` they are same-padded and the concatenation needs edges divisible by 2**depth.
"""
import torch
from torch import nn


def _conv(dim):
    return nn.Conv2d if dim == 2 else nn.Conv3d


class Block(nn.Module):
    def __init__(self, dim, cin, cout, valid):
        super().__init__()
        conv = _conv(dim)
        pad = 0 if valid else 1
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

    def __init__(self, dim, cin, width, depth, valid):
        super().__init__()
        self.valid = valid
        self.encode = Block(dim, cin, width, valid)
        self.pool = nn.MaxPool2d(2) if dim == 2 else nn.MaxPool3d(2)
        self.inner = Level(dim, width, 2 * width, depth - 1, valid) if depth > 1 else Block(dim, width, 2 * width, valid)
        up = nn.ConvTranspose2d if dim == 2 else nn.ConvTranspose3d
        self.up = up(2 * width, width, 2, stride=2)
        self.decode = Block(dim, 2 * width, width, valid)

    def forward(self, x):
        skip = self.encode(x)
        y = self.up(self.inner(self.pool(skip)))
        if self.valid:
            skip = centre_crop(skip, y)
        return self.decode(torch.cat([skip, y], 1))


class UNet(nn.Module):
    def __init__(self, dim=2, in_channels=1, classes=2, base=8, depth=2, valid=True):
        super().__init__()
        self.levels = Level(dim, in_channels, base, depth, valid)
        self.head = _conv(dim)(base, classes, 1)

    def forward(self, x):
        return self.head(self.levels(x))
