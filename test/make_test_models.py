"""Makes the TorchScript models the tests use, with Debian's torch, into the directory given as argv[1].

Analytic models have fixed weights whose output the tests compute independently; U-Nets have seeded random
weights. Nothing is downloaded.
"""
import json
import os
import sys
import types

# The archives must be the same bytes in every checkout: the fuzz tests mutate them with fixed seeds, and their list of
# known upstream failures names cases by number. TorchScript records each class's source file path (in the debug
# pickles) and writes a module's constants in Python's set order, which follows the string hash seed. So the script
# runs itself again from the project root, under a relative path and with a fixed hash seed, before it imports torch.
PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
THIS_SCRIPT = os.path.join("test", "make_test_models.py")
if __name__ == "__main__" and (__file__ != THIS_SCRIPT or os.environ.get("PYTHONHASHSEED") != "0"):
    if len(sys.argv) != 2:
        sys.exit("usage: make_test_models.py OUTPUT_DIRECTORY")
    out_dir = os.path.abspath(sys.argv[1])
    os.chdir(PROJECT_ROOT)
    run_as_relative_path = "import runpy, sys; sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"
    os.execve(sys.executable, [sys.executable, "-c", run_as_relative_path, THIS_SCRIPT, out_dir],
              dict(os.environ, PYTHONHASHSEED="0"))

import torch  # noqa: E402
from torch import nn  # noqa: E402


def import_relative(name, path):
    """Imports the module at `path`, relative to the working directory, so that TorchScript records that path."""
    module = types.ModuleType(name)
    module.__file__ = path  # importlib would make it absolute
    sys.modules[name] = module
    with open(path) as source:
        exec(compile(source.read(), path, "exec"), module.__dict__)
    return module


unet_models = import_relative("unet_models", os.path.join("wrapping", "Python", "itk_unetsegmentation", "networks.py"))
UNet = unet_models.UNet


def conv(dim, cin, cout, kernel):
    layer = (nn.Conv2d if dim == 2 else nn.Conv3d)(cin, cout, kernel, bias=False)
    layer.weight.requires_grad_(False)
    return layer


def mean_filter(dim):
    """One channel in, one score out: the mean of the 3^dim neighbourhood (border 1)."""
    layer = conv(dim, 1, 1, 3)
    layer.weight.fill_(1.0 / 3 ** dim)
    return layer


def shift(dim, offset, border):
    """One channel in, one score out: the input at `offset` (x, y[, z]) from each output voxel."""
    layer = conv(dim, 1, 1, 2 * border + 1)
    layer.weight.zero_()
    index = [0, 0] + [border + o for o in reversed(offset)]
    layer.weight[tuple(index)] = 1.0
    return layer


def channel_classifier(dim):
    """Three channels in, three class scores out: score_k = sum_c W[k][c] * channel_c (border 0)."""
    layer = conv(dim, 3, 3, 1)
    weights = torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.5, 0.5, 1.0]])
    layer.weight.copy_(weights.reshape(layer.weight.shape))
    return layer


def two_class_scorer(dim):
    """One channel in, two class scores out: (x, -2x) (border 0), for the two-class softmax."""
    layer = conv(dim, 1, 2, 1)
    layer.weight.copy_(torch.tensor([1.0, -2.0]).reshape(layer.weight.shape))
    return layer


class TupleOutput(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = mean_filter(2)

    def forward(self, x):
        return self.conv(x), x


class FlatOutput(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = mean_filter(2)

    def forward(self, x):
        return self.conv(x).flatten(1)


class FirstSampleOnly(nn.Module):
    """Runs like a mean filter on one tile but drops all but the first tile of a batch."""

    def __init__(self):
        super().__init__()
        self.conv = mean_filter(2)

    def forward(self, x):
        return self.conv(x)[:1]


class IrregularEdges(nn.Module):
    """A mean filter whose valid input edges (those losing the fewest voxels) are the multiples of 3 or 5: 15, 18, 20,
    21, 24, 25, ... are not equally spaced, so it has no downsampling factor."""

    def __init__(self):
        super().__init__()
        self.conv = mean_filter(2)

    def forward(self, x):
        out = self.conv(x)
        for axis in (2, 3):
            edge = x.size(axis)
            crop = 0 if edge % 3 == 0 or edge % 5 == 0 else 1
            out = out.narrow(axis, crop, out.size(axis) - 2 * crop)
        return out


class CoupledAxes(nn.Module):
    """A mean filter that refuses inputs of fewer than 100 voxels: each axis alone, the other held large, runs down to
    an edge of 7, but not both at once."""

    def __init__(self):
        super().__init__()
        self.conv = mean_filter(2)

    def forward(self, x):
        if x.size(2) * x.size(3) < 100:
            raise RuntimeError("too few voxels")
        return self.conv(x)


class TupleOutput3D(nn.Module):
    """A 3-D mean filter returning its input beside its scores, as networks with deep supervision do."""

    def __init__(self):
        super().__init__()
        self.conv = mean_filter(3)

    def forward(self, x):
        return self.conv(x), x


class AlwaysRaising3D(nn.Module):
    """A 3-D mean filter that raises on every input, whatever its size."""

    def __init__(self):
        super().__init__()
        self.conv = mean_filter(3)

    def forward(self, x):
        y = self.conv(x)
        if y.size(2) >= 0:
            raise RuntimeError("this network always fails")
        return y


class NonFiniteWhereDark(nn.Module):
    """A mean filter whose score is the square root of (mean - 1): not a number wherever the mean is below 1."""

    def __init__(self):
        super().__init__()
        self.conv = mean_filter(2)

    def forward(self, x):
        return torch.sqrt(self.conv(x) - 1.0)


class NoClasses(nn.Module):
    """A mean filter whose output keeps no channel: a network with no classes."""

    def __init__(self):
        super().__init__()
        self.conv = mean_filter(2)

    def forward(self, x):
        return self.conv(x)[:, :0]


@torch.jit.interface
class ModuleInterface(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pass


class Identity(nn.Module):
    def forward(self, x):
        return x


class Unfreezable(nn.Module):
    """A mean filter that swaps an interface-typed submodule in its forward, which torch.jit.freeze rejects
    ("failed to freeze interface attribute"): the filter must run it as saved."""

    stage: ModuleInterface

    def __init__(self):
        super().__init__()
        self.conv = mean_filter(2)
        self.stage = Identity()
        self.other = Identity()

    def forward(self, x):
        self.stage = self.other
        return self.conv(self.stage(x))


class Wide(nn.Module):
    """256 feature channels at full resolution: a large tile asks LibTorch for more memory than the machine has."""

    def __init__(self):
        super().__init__()
        self.features = conv(2, 1, 256, 3)
        self.head = conv(2, 256, 2, 1)

    def forward(self, x):
        return self.head(self.features(x))


class Hog(nn.Module):
    """A valid 3 x 3 network that also asks for 400 MB in every forward pass, whatever its input (the size depends on
    the input, so that freezing cannot fold it into a constant): under a tighter address-space limit no batch, tile
    or piece runs."""

    def __init__(self):
        super().__init__()
        self.head = conv(2, 1, 2, 3)

    def forward(self, x):
        scratch = torch.zeros([100_000_000 + 0 * x.size(0)], dtype=x.dtype, device=x.device)
        return self.head(x) + scratch[0]


def spread_head(model, probe_shape):
    """Random weights give nearly constant scores; a larger head, centred on a random input, keeps the classes
    competing, so that the label map has structure to compare."""
    with torch.no_grad():
        model.head.weight.mul_(30.0)
        model.head.bias.zero_()
        probe = torch.rand([2] + probe_shape) * 4.0 - 2.0
        scores = model(probe)
        model.head.bias.sub_(scores.transpose(0, 1).reshape(scores.shape[1], -1).mean(dim=1))
    return model


def unet(seed, **kwargs):
    torch.manual_seed(seed)
    model = UNet(**kwargs).eval()
    edge = 188 if kwargs.get("depth", 2) >= 3 else 64
    return spread_head(model, [kwargs.get("in_channels", 1)] + [edge] * kwargs.get("dim", 2))


class AnisotropicLevel(nn.Module):
    """One level of a valid 3-D U-Net whose kernels and poolings differ between axes (z, y, x)."""

    def __init__(self, cin, width, kernels, pools, bottleneck):
        super().__init__()

        def block(cin, cout, kernel):
            return nn.Sequential(nn.Conv3d(cin, cout, kernel), nn.ReLU(), nn.Conv3d(cout, cout, kernel), nn.ReLU())

        self.encode = block(cin, width, kernels[0])
        self.pool = nn.MaxPool3d(pools[0])
        if len(kernels) > 1:
            self.inner = AnisotropicLevel(width, 2 * width, kernels[1:], pools[1:], bottleneck)
        else:
            self.inner = block(width, 2 * width, bottleneck)
        self.up = nn.ConvTranspose3d(2 * width, width, pools[0], stride=pools[0])
        self.decode = block(2 * width, width, kernels[0])

    def forward(self, x):
        skip = self.encode(x)
        y = self.up(self.inner(self.pool(skip)))
        return self.decode(torch.cat([unet_models.centre_crop(skip, y), y], 1))


class AnisotropicUNet(nn.Module):
    """A valid 3-D U-Net for thick slices, as nnU-Net plans them: in-plane kernels (1, 3, 3) and poolings (1, 2, 2) at
    the first two levels, (3, 3, 3) and (2, 2, 2) at the third and in the bottleneck ((z, y, x) order). Per axis
    (x, y, z): border 44, 44, 8; downsampling factor 8, 8, 2; smallest input 92, 92, 18 (output 4, 4, 2)."""

    def __init__(self):
        super().__init__()
        self.levels = AnisotropicLevel(1, 2, [(1, 3, 3), (1, 3, 3), (3, 3, 3)], [(1, 2, 2), (1, 2, 2), (2, 2, 2)],
                                       (3, 3, 3))
        self.head = nn.Conv3d(2, 2, 1)

    def forward(self, x):
        return self.head(self.levels(x))


def anisotropic_unet(seed):
    torch.manual_seed(seed)
    return spread_head(AnisotropicUNet().eval(), [1, 26, 100, 100])


def sum_filter(dim):
    """One channel in, one score out: the 3^dim neighbourhood's sum / 8. Weights of 1/8 keep every sum of
    integer-valued inputs exact in float, whatever order LibTorch adds in, so tilings can be compared bit for bit."""
    layer = conv(dim, 1, 1, 3)
    layer.weight.fill_(0.125)
    return layer


def threshold(dim, slope=20.0, at=0.5):
    """One channel in, one score out: slope * (x - at), so P(class 1) = sigmoid(slope * (x - at)) (border 0)."""
    layer = (nn.Conv3d if dim == 3 else nn.Conv2d)(1, 1, 1)
    with torch.no_grad():
        layer.weight.fill_(slope)
        layer.bias.fill_(-slope * at)
    layer.requires_grad_(False)
    return layer


CARD = "unet_model_card.json"
FULL_CARD = {
    "schema_version": 1,
    "normalization": {"kind": "fixed", "mean": [10.0], "standard_deviation": [4.0]},
    "spacing": {"values": [0.5, 0.5], "unit": "mm"},
    "classes": [{"name": "background", "color": [0, 0, 0]}, {"name": "cell interior", "color": [0, 200, 0]}],
    "flip_axes": [0],
    "tile": {"size": [6, 6], "overlap": 2},
    "cell_separation": {"cell_class": 1, "seed_threshold": 0.6, "cell_threshold": 0.3},
    "provenance": {"training_data": "none: an analytic test network", "held_out_scores": {"pixel_error": 0.0}},
}

# Models with a model card (an extra file of the archive) and the card's JSON text: good ones, and bad ones whose
# loading must fail naming the field.
CARD_MODELS = {
    "card_full2d": ("mean2d", json.dumps(FULL_CARD)),
    "card_standardize2d": ("mean2d", json.dumps({"schema_version": 1, "normalization": {
        "kind": "standardize", "mean": 5.0, "standard_deviation": 2.0}})),
    "card_clip2d": ("mean2d", json.dumps({"schema_version": 1, "normalization": {
        "kind": "clip", "window": [-1.0, 1.0], "mean": [0.5], "standard_deviation": [0.25]}})),
    "card_sphere3d": ("threshold3d", json.dumps({"schema_version": 1, "spacing": {"values": [1.0, 1.0, 1.0], "unit": "mm"},
                                                 "classes": [{"name": "outside"}, {"name": "sphere", "color": [255, 0, 0]}]})),
    "card_pixel2d": ("mean2d", json.dumps({"schema_version": 1, "spacing": {"values": [1.0, 1.0], "unit": "pixel"}})),
    "card_bad_json": ("mean2d", '{"schema_version": 1, "spacing": '),
    "card_bad_type": ("mean2d", json.dumps({"schema_version": 1, "spacing": {"values": "1 1", "unit": "mm"}})),
    "card_bad_version": ("mean2d", json.dumps({"schema_version": 7})),
    "card_bad_field": ("mean2d", json.dumps({"schema_version": 1, "colour": "red"})),
    "card_bad_classes": ("mean2d", json.dumps({"schema_version": 1, "classes": [{"name": "a"}, {"name": "b"}, {"name": "c"}]})),
    "card_bad_spacing": ("mean2d", json.dumps({"schema_version": 1, "spacing": {"values": [1.0, 0.0], "unit": "mm"}})),
    "card_bad_dimension": ("mean2d", json.dumps({"schema_version": 1, "spacing": {"values": [1.0, 1.0, 1.0], "unit": "mm"}})),
    "card_bad_deviation": ("mean2d", json.dumps({"schema_version": 1, "normalization": {
        "kind": "fixed", "mean": [0.0], "standard_deviation": [-1.0]}})),
    "card_bad_channels": ("mean2d", json.dumps({"schema_version": 1, "normalization": {
        "kind": "fixed", "mean": [0.0, 1.0], "standard_deviation": [1.0]}})),
}


def main(out_dir):
    os.makedirs(out_dir, exist_ok=True)
    models = {
        "mean2d": mean_filter(2),
        "mean3d": mean_filter(3),
        "sum2d": sum_filter(2),
        "sum3d": sum_filter(3),
        "shift2d": shift(2, (2, -3), 3),
        "shift3d": shift(3, (1, -2, 2), 2),
        "classifier2d": channel_classifier(2),
        "classifier3d": channel_classifier(3),
        "two_class2d": two_class_scorer(2),
        "tuple_output": TupleOutput(),
        "flat_output": FlatOutput(),
        "first_sample_only": FirstSampleOnly(),
        "irregular_edges2d": IrregularEdges(),
        "coupled_axes2d": CoupledAxes(),
        "non_finite2d": NonFiniteWhereDark(),
        "tuple_output3d": TupleOutput3D(),
        "always_raising3d": AlwaysRaising3D(),
        "no_classes2d": NoClasses(),
        "unet2d_valid": unet(1, dim=2, in_channels=1, classes=2, base=8, depth=2, valid=True),
        "unet2d_same": unet(2, dim=2, in_channels=1, classes=3, base=8, depth=2, valid=False),
        "unet3d_valid": unet(3, dim=3, in_channels=1, classes=2, base=4, depth=1, valid=True),
        # Cheap enough for whole volumes of a few million voxels, segmented many times over in the dask tests.
        "unet3d_tiny": unet(6, dim=3, in_channels=1, classes=2, base=2, depth=1, valid=True),
        "unet2d_rgb": unet(4, dim=2, in_channels=3, classes=2, base=4, depth=1, valid=True),
        "unet2d_paper": unet(5, dim=2, in_channels=1, classes=2, base=8, depth=4, valid=True),
        # The bundled ISBI networks' geometry (depth 3: valid output edges 4 + 8k, which no stride of 8k equals).
        "unet2d_valid_depth3": unet(8, dim=2, in_channels=1, classes=2, base=4, depth=3, valid=True),
        "unet3d_anisotropic": anisotropic_unet(9),
        "unet3d_same": unet(6, dim=3, in_channels=1, classes=2, base=4, depth=1, valid=False),
        # The streaming benchmark's network: a small valid 3-D U-Net, depth 2, 8 base channels.
        "unet3d_valid_depth2": unet(7, dim=3, in_channels=1, classes=2, base=8, depth=2, valid=True),
        "unfreezable2d": Unfreezable(),
        "wide2d": Wide(),
        "hog2d": Hog(),
    }
    models["threshold3d"] = threshold(3)
    for name, model in models.items():
        model.eval()
        torch.jit.save(torch.jit.script(model), os.path.join(out_dir, name + ".pt"))
    for name, (network, card) in CARD_MODELS.items():
        torch.jit.save(torch.jit.script(models[network]), os.path.join(out_dir, name + ".pt"),
                       _extra_files={CARD: card})
    # A frozen archive, as torch.jit.freeze saves it: the weights are constants (constants.pkl), not parameters; a
    # base of the fuzz tests.
    frozen = torch.jit.freeze(torch.jit.script(unet(10, dim=2, in_channels=1, classes=2, base=4, depth=2, valid=True)))
    torch.jit.save(frozen, os.path.join(out_dir, "unet2d_frozen.pt"))
    with open(os.path.join(out_dir, "corrupt.pt"), "wb") as corrupt:
        corrupt.write(b"PK\x03\x04 this is not a TorchScript archive" * 10)


if __name__ == "__main__":
    main(sys.argv[1])
