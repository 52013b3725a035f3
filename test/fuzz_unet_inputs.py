"""Deterministic fuzzing of the files UNetSegmentation parses: TorchScript archives and MetaImage/NRRD headers.

    fuzz_unet_inputs.py models --runner UNetFuzzCaseRunner --models DIR --work DIR [--cases 2300] [--shard K/N]
    fuzz_unet_inputs.py images --runner UNetFuzzCaseRunner --models DIR --work DIR [--cases 600] [--shard K/N]

`models` mutates TorchScript archives made by make_test_models.py where LibTorch parses them: cases 0-1999 the small
ones (mean2d, tuple_output, two_class2d), cases from 2000 on a frozen U-Net (weights in constants.pkl), a 3-D U-Net
and a 2-D U-Net (unet2d_frozen, unet3d_tiny, unet2d_valid). In each, the `code/` entries (TorchScript source), `data.pkl` and `constants.pkl` (pickles: bytes
flipped, truncated, opcode records dropped, duplicated or swapped, integers and strings replaced, string lengths
changed), the debug pickles, the `version` record, the tensor storage `data/N`, the archive's entries (renamed,
dropped, duplicated, added, reordered) and the zip structure itself (header size, offset and count fields, bytes,
truncation). Each mutated archive is the model of one small UNetSegmentationImageFilter update.

`images` corrupts MetaImage (.mha, .mhd + .raw, compressed) and NRRD (.nrrd, .nhdr + .raw, gzip) headers of a small
image: dimensions, sizes, element types, channels, data file names, byte counts (HeaderSize, CompressedDataSize,
byte skip, line skip), encodings, geometry, and the data's length; lines dropped, duplicated, swapped, renamed,
truncated. Each file goes through ImageFileReader into the filter.

Case i of a seed is generated from its own random generator, so any case can be remade alone. UNetFuzzCaseRunner
runs the cases in one process; this script supervises it: a case must end in a result ("RAN": the update completed,
or "ITK": it raised itk::ExceptionObject with a message) within --timeout seconds. A crash, an abort or a hang (the
runner is killed and restarted after that case), any other exception, or an empty message counts as a failure; a
crash is run again alone, to tell its own crash from the late effect of an earlier case's memory corruption, and so
is a listed upstream case that did not fail as listed (its fault may depend on what the heap holds). The counts tried
and failed are printed; the exit status is 1 if any case failed. Nothing is downloaded: the cases are made here from
the local test models.
"""
import argparse
import collections
import gzip
import os
import random
import re
import resource
import selectors
import signal
import struct
import subprocess
import sys
import time
import warnings
import zipfile
import zlib

# ---------------------------------------------------------------------------------------------------------------
# TorchScript archives


class Archive:
    """The entries of a zip archive, in order: [name, bytes, compression]."""

    def __init__(self, path):
        with zipfile.ZipFile(path) as archive:
            self.entries = [[info.filename, archive.read(info), info.compress_type] for info in archive.infolist()]

    def write(self, path):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # duplicated names are one of the mutations
            with zipfile.ZipFile(path, "w") as archive:
                for name, data, compression in self.entries:
                    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
                    info.compress_type = compression
                    archive.writestr(info, data)

    def pick(self, rng, predicate):
        chosen = [entry for entry in self.entries if predicate(entry[0])]
        return rng.choice(chosen) if chosen else None


INTEGERS = [0, 1, 2, 3, 4, 7, 8, 9, 255, 256, 65535, 65536, 2**31 - 1, 2**31, 2**32, 2**62, 2**63 - 1, 2**64, -1,
            -2, -(2**31), -(2**63), 10**6]
CODE_WORDS = ["Tensor", "int", "float", "bool", "str", "List", "Tuple", "Optional", "None", "NoneType", "torch",
              "conv1d", "conv3d", "relu", "forward", "self", "Module", "return", "def", "class", "__torch__", "Final",
              "weight", "bias", "training", "ops", "aten", "prim", "annotate", "uninitialized", "raise", "while",
              "for", "if", "else", "import", "global", "del", "assert", "lambda", "__parameters__", "__buffers__",
              "_conv_forward", "Conv2d", "Conv3d", "device", "cuda"]
SYNTAX = b"()[]{},:.=+-*/<>!@%&|^~ \n\t0123456789_axyzTN\"'#\\"
GLOBALS = ["torch._utils _rebuild_tensor", "torch._utils _rebuild_parameter", "torch._utils _rebuild_tensor_v2",
           "torch FloatStorage", "torch DoubleStorage", "torch HalfStorage", "torch LongStorage", "torch BoolStorage",
           "torch ByteStorage", "torch QInt8Storage", "torch ComplexFloatStorage", "torch BFloat16Storage",
           "collections OrderedDict", "builtins set", "builtins eval", "os system", "torch.jit._pickle build_intlist",
           "torch.jit._pickle build_tensorlist", "torch.jit._pickle build_doublelist",
           "torch.jit._pickle restore_type_tag", "__torch__.torch.nn.modules.conv Conv3d",
           "__torch__.torch.nn.modules.conv Conv1d", "__torch__.make_test_models Missing", "__torch__ ", " ", ""]
STRINGS = ["cpu", "cuda", "cuda:7", "meta", "mkldnn", "xla", "vulkan", "0", "1", "7", "00", "../0", "/etc/passwd",
           "data/0", "", "training", "weight", "bias", "conv", "_is_full_backward_hook", "storage", "x" * 300,
           "\u00e9\u0000\u2603"]


def mutate_bytes(rng, data):
    """Flips 1 to 4 bytes, or replaces them with TorchScript syntax."""
    data = bytearray(data)
    if not data:
        return bytes([rng.randrange(256)]), "byte added to empty"
    syntax = rng.random() < 0.5
    for _ in range(rng.randint(1, 4)):
        position = rng.randrange(len(data))
        data[position] = rng.choice(SYNTAX) if syntax else data[position] ^ rng.randint(1, 255)
    return bytes(data), "bytes replaced by syntax" if syntax else "bytes flipped"


def truncate(rng, data):
    cut = rng.randrange(len(data)) if data else 0
    return data[:cut], "truncated at %d of %d" % (cut, len(data))


def mutate_code_lines(rng, data):
    lines = data.split(b"\n")
    i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
    operation = rng.choice(["drop", "duplicate", "swap", "indent", "dedent"])
    if operation == "drop":
        del lines[i]
    elif operation == "duplicate":
        lines.insert(i, lines[i])
    elif operation == "swap":
        lines[i], lines[j] = lines[j], lines[i]
    elif operation == "indent":
        lines[i] = b"  " + lines[i]
    else:
        lines[i] = lines[i][1:]
    return b"\n".join(lines), "line %d %s" % (i, operation)


def mutate_code_token(rng, data):
    text = data.decode("utf-8", "replace")
    if rng.random() < 0.5:
        numbers = list(re.finditer(r"(?<![\w.])\d+(\.\d+)?", text))
        if numbers:
            match = rng.choice(numbers)
            value = str(rng.choice(INTEGERS + [0.5, 1e308, -0.0]))
            return (text[: match.start()] + value + text[match.end():]).encode(), "number %s -> %s" % (
                match.group(), value)
    words = list(re.finditer(r"[A-Za-z_]\w*", text))
    match = rng.choice(words)
    word = rng.choice(CODE_WORDS + [w.group() for w in words])
    return (text[: match.start()] + word + text[match.end():]).encode(), "word %s -> %s" % (match.group(), word)


def pickle_records(data):
    """Byte ranges of a pickle's opcodes, as far as it parses: [(start, end, opcode name, argument)]."""
    import pickletools
    records = []
    try:
        ops = list(pickletools.genops(data))
    except Exception:  # noqa: BLE001 - an already mutated pickle parses only partly
        ops = []
    for k, (opcode, argument, start) in enumerate(ops):
        end = ops[k + 1][2] if k + 1 < len(ops) else len(data)
        records.append((start, end, opcode.name, argument))
    return records


def encode_int(value):
    if 0 <= value < 256:
        return b"K" + bytes([value])
    if 0 <= value < 65536:
        return b"M" + struct.pack("<H", value)
    if -(2**31) <= value < 2**31:
        return b"J" + struct.pack("<i", value)
    raw = value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(raw)]) + raw


def mutate_pickle_records(rng, data):
    records = pickle_records(data)
    if not records:
        return mutate_bytes(rng, data)
    operation = rng.choice(["drop", "duplicate", "swap", "int", "int", "int", "string", "string", "string", "length"])
    ints = [r for r in records if r[2] in ("BININT1", "BININT2", "BININT", "LONG1")]
    strings = [r for r in records if r[2] in ("BINUNICODE", "SHORT_BINUNICODE", "GLOBAL")]
    if operation == "int" and ints:
        start, end, name, argument = rng.choice(ints)
        value = rng.choice(INTEGERS)
        return data[:start] + encode_int(value) + data[end:], "pickle int %s -> %d" % (argument, value)
    if operation in ("string", "length") and strings:
        start, end, name, argument = rng.choice(strings)
        if name == "GLOBAL":
            replacement = rng.choice(GLOBALS)
            module, _, attribute = replacement.partition(" ")
            record = b"c" + module.encode() + b"\n" + attribute.encode() + b"\n"
            return data[:start] + record + data[end:], "pickle global %r -> %r" % (argument, replacement)
        text = rng.choice(STRINGS + [argument[:-1], argument + argument[-1:], argument.upper()])
        encoded = text.encode("utf-8", "surrogatepass")
        length = len(encoded)
        if operation == "length":
            length = rng.choice([length + 1, max(length - 1, 0), length + 1000, 2**32 - 1, 2**31, 0])
            text = "%r with length %d" % (text, length)
        record = b"X" + struct.pack("<I", length) + encoded
        return data[:start] + record + data[end:], "pickle string %r -> %r" % (argument[:20], text[:40])
    i, j = rng.randrange(len(records)), rng.randrange(len(records))
    a, b = records[min(i, j)], records[max(i, j)]
    if operation == "drop":
        return data[: a[0]] + data[a[1]:], "pickle record %s dropped" % a[2]
    if operation == "duplicate":
        return data[: a[1]] + data[a[0]: a[1]] + data[a[1]:], "pickle record %s duplicated" % a[2]
    if a is b:
        return data[: a[0]] + data[a[1]:], "pickle record %s dropped" % a[2]
    swapped = data[: a[0]] + data[b[0]: b[1]] + data[a[1]: b[0]] + data[a[0]: a[1]] + data[b[1]:]
    return swapped, "pickle records %s and %s swapped" % (a[2], b[2])


def is_code(name):
    return "/code/" in name and name.endswith(".py")


def is_pickle(name):
    return name.endswith("/data.pkl") or name.endswith("/constants.pkl")


def mutate_entry_content(rng, archive, predicate, mutators, label):
    entry = archive.pick(rng, predicate)
    if entry is None:  # an earlier step renamed or dropped it
        return "no %s entry left" % label
    mutator = rng.choice(mutators)
    entry[1], what = mutator(rng, entry[1])
    return "%s %s: %s" % (label, entry[0].split("/", 1)[-1], what)


def mutate_code(rng, archive):
    return mutate_entry_content(rng, archive, is_code,
                                [mutate_bytes, truncate, mutate_code_lines, mutate_code_token, mutate_code_token],
                                "code")


def mutate_pickle(rng, archive):
    data_pickle = rng.random() < 0.85  # constants.pkl is an empty tuple in these models
    predicate = (lambda n: n.endswith("/data.pkl")) if data_pickle else (lambda n: n.endswith("/constants.pkl"))
    return mutate_entry_content(rng, archive, predicate,
                                [mutate_bytes, truncate, mutate_pickle_records, mutate_pickle_records,
                                 mutate_pickle_records], "pickle")


def mutate_debug_pickle(rng, archive):
    return mutate_entry_content(rng, archive, lambda n: n.endswith(".debug_pkl"),
                                [mutate_bytes, truncate, mutate_pickle_records], "debug pickle")


def mutate_storage(rng, archive):
    def resize(rng, data):
        size = rng.choice([0, 1, len(data) // 2, len(data) - 1, len(data) + 1, len(data) * 2, len(data) + 4096])
        return (data + bytes(size))[:size], "resized %d -> %d" % (len(data), size)

    return mutate_entry_content(rng, archive, lambda n: "/data/" in n, [resize, resize, mutate_bytes], "storage")


def mutate_version(rng, archive):
    entry = archive.pick(rng, lambda n: n.endswith("/version"))
    if entry is None:
        return "no version entry left"
    entry[1] = rng.choice([b"", b"0\n", b"1\n", b"2\n", b"4\n", b"6\n", b"7\n", b"99\n", b"-1\n", b"abc\n", b"3",
                           b"18446744073709551616\n", b"3\n3\n", b"\x00"])
    return "version -> %r" % entry[1]


def mutate_entries(rng, archive):
    entries = archive.entries
    k = rng.randrange(len(entries))
    name = entries[k][0]
    operation = rng.choice(["rename", "rename", "drop", "duplicate", "add", "reorder"])
    if operation == "rename":
        prefix, _, rest = name.partition("/")
        choices = [prefix + "/" + rest.upper(), rest, "other/" + rest, prefix + "/" + rest + ".bak",
                   prefix + "/../" + rest, "/" + name, name.replace("data", "Data"), name + "/"]
        position = rng.randrange(len(name))
        choices.append(name[:position] + rng.choice("abxyz_./0") + name[position + 1:])
        entries[k][0] = rng.choice(choices)
        return "entry %s renamed %s" % (name, entries[k][0])
    if operation == "drop":
        del entries[k]
        return "entry %s dropped" % name
    if operation == "duplicate":
        copy = [name, entries[k][1], entries[k][2]]
        if rng.random() < 0.5:
            copy[1], _ = mutate_bytes(rng, copy[1])
        entries.insert(rng.randrange(len(entries) + 1), copy)
        return "entry %s duplicated" % name
    if operation == "add":
        prefix = name.partition("/")[0]
        added = rng.choice(["code/__torch__/extra.py", "data/99", "data.pkl.orig", "extra/x", "code/", "version2"])
        entries.insert(rng.randrange(len(entries) + 1), [prefix + "/" + added, b"x = 1\n", zipfile.ZIP_STORED])
        return "entry %s added" % added
    rng.shuffle(entries)
    return "entries reordered"


def zip_fields(data):
    """(offset, width, label) of the size, offset, count, name-length and method fields of a written zip."""
    fields = []
    end = len(data) - 22
    if end < 0 or data[end: end + 4] != b"PK\x05\x06":
        return fields
    fields += [(end + 8, 2, "EOCD entries on disk"), (end + 10, 2, "EOCD entries"), (end + 12, 4, "EOCD size"),
               (end + 16, 4, "EOCD offset")]
    central = struct.unpack_from("<I", data, end + 16)[0]
    while data[central: central + 4] == b"PK\x01\x02":
        name_length, extra_length, comment_length = struct.unpack_from("<HHH", data, central + 28)
        local = struct.unpack_from("<I", data, central + 42)[0]
        fields += [(central + 10, 2, "central method"), (central + 16, 4, "central crc"),
                   (central + 20, 4, "central compressed size"), (central + 24, 4, "central size"),
                   (central + 28, 2, "central name length"), (central + 30, 2, "central extra length"),
                   (central + 42, 4, "central local offset"), (local + 8, 2, "local method"),
                   (local + 18, 4, "local compressed size"), (local + 22, 4, "local size"),
                   (local + 26, 2, "local name length"), (local + 28, 2, "local extra length")]
        central += 46 + name_length + extra_length + comment_length
    return fields


def mutate_zip(rng, data):
    """Mutates the written archive's bytes: header fields, bytes anywhere, or truncation."""
    operation = rng.choice(["field", "field", "field", "bytes", "truncate"])
    fields = zip_fields(data)
    if operation == "field" and fields:
        offset, width, label = rng.choice(fields)
        old = int.from_bytes(data[offset: offset + width], "little")
        top = 2 ** (8 * width) - 1
        new = rng.choice([0, 1, old - 1, old + 1, old * 2, old + 64, top, top // 2, rng.randrange(top)]) & top
        data = data[:offset] + new.to_bytes(width, "little") + data[offset + width:]
        return data, "zip %s %d -> %d" % (label, old, new)
    if operation == "bytes":
        data, what = mutate_bytes(rng, data)
        return data, "zip " + what
    data, what = truncate(rng, data)
    return data, "zip " + what


ARCHIVE_MUTATORS = [(mutate_code, 30), (mutate_pickle, 34), (mutate_debug_pickle, 4), (mutate_storage, 5),
                    (mutate_version, 3), (mutate_entries, 9)]
ZIP_SHARE = 15  # in the same units as the weights above

# The archives mutated: the first corpus (cases 0-1999, whose indices the known-failure list names), then real U-Nets.
BASE_MODELS = ["mean2d", "tuple_output", "two_class2d"]
MORE_BASE_MODELS = ["unet2d_frozen", "unet3d_tiny", "unet2d_valid"]


# What AddressSanitizer prints when operator new cannot allocate (beyond max_allocation_size_mb or its own maximum).
ASAN_OUT_OF_MEMORY = re.compile(r"AddressSanitizer: (out-of-memory|requested allocation size|allocation-size-too-big)")

FIRST_CORPUS_CASES = 2000
DEFAULT_MODEL_CASES = 2300


def make_model_case(rng, base_path, path):
    archive = Archive(base_path)
    mutators, weights = zip(*ARCHIVE_MUTATORS)
    steps = []
    for _ in range(1 if rng.random() < 0.7 else rng.randint(2, 3)):
        if rng.random() < ZIP_SHARE / (sum(weights) + ZIP_SHARE):
            steps.append("zip")
        else:
            steps.append(rng.choices(mutators, weights)[0])
    descriptions = [step(rng, archive) for step in steps if step != "zip"]
    archive.write(path)
    if "zip" in steps:
        with open(path, "rb") as f:
            data = f.read()
        data, what = mutate_zip(rng, data)
        with open(path, "wb") as f:
            f.write(data)
        descriptions.append(what)
    kind = steps[0] if steps[0] == "zip" else steps[0].__name__[len("mutate_"):]
    return kind, "; ".join(descriptions)


# ---------------------------------------------------------------------------------------------------------------
# MetaImage and NRRD headers


def image_values(count, element):
    rng = random.Random(7)
    values = [rng.randrange(0, 200) for _ in range(count)]
    if element == "float":
        return struct.pack("<%df" % count, *values)
    if element == "short":
        return struct.pack("<%dh" % count, *values)
    return bytes(values)


def base_image(variant, stem):
    """A 12 x 10 image as header lines and data: (lines, separator, data, detached data file name or None)."""
    size = (12, 10)
    count = size[0] * size[1]
    if variant.startswith("meta"):
        element = {"meta_local": "float", "meta_detached": "uchar", "meta_compressed": "short"}[variant]
        data = image_values(count, element)
        lines = ["ObjectType = Image", "NDims = 2", "BinaryData = True", "BinaryDataByteOrderMSB = False",
                 "CompressedData = %s" % ("True" if variant == "meta_compressed" else "False"),
                 "TransformMatrix = 1 0 0 1", "Offset = -3 4.5", "CenterOfRotation = 0 0",
                 "ElementSpacing = 0.5 0.75", "DimSize = 12 10", "ElementNumberOfChannels = 1",
                 "ElementType = %s" % {"float": "MET_FLOAT", "uchar": "MET_UCHAR", "short": "MET_SHORT"}[element]]
        if variant == "meta_compressed":
            data = zlib.compress(data)
            lines.insert(5, "CompressedDataSize = %d" % len(data))
        detached = stem + ".raw" if variant == "meta_detached" else None
        lines.append("ElementDataFile = %s" % (detached or "LOCAL"))
        return lines, "\n", data, detached
    element = {"nrrd_attached": "float", "nrrd_detached": "uchar", "nrrd_gzip": "short"}[variant]
    data = image_values(count, element)
    lines = ["NRRD0004", "# a comment", "type: %s" % element, "dimension: 2", "space dimension: 2",
             "sizes: 12 10", "space directions: (0.5,0) (0,0.75)", "space origin: (-3,4.5)", "kinds: space space",
             "endian: little", "encoding: %s" % ("gzip" if variant == "nrrd_gzip" else "raw")]
    if variant == "nrrd_gzip":
        data = gzip.compress(data, mtime=0)
    detached = stem + ".raw" if variant == "nrrd_detached" else None
    if detached:
        lines.append("data file: %s" % detached)
    return lines, "\n\n" if not detached else "\n", data, detached


IMAGE_VARIANTS = ["meta_local", "meta_detached", "meta_compressed", "nrrd_attached", "nrrd_detached", "nrrd_gzip"]
SIZES = ["0 10", "12", "12 10 1", "12 10 3", "-12 10", "120 100", "1 1", "4294967296 4294967296", "2147483647 2",
         "1000000 1000000", "12 abc", "1e3 10", "12 10 10 10 10 10", "", "4611686018427387904 4", "13 10", "12 9",
         "6 20", "12 10 0"]
FIELD_VALUES = {
    "dimension": ["0", "1", "3", "4", "10", "-1", "2147483648", "", "two", "2 2", "65536", "17"],
    "sizes": SIZES,
    "type": ["MET_UCHAR", "MET_CHAR", "MET_SHORT", "MET_USHORT", "MET_INT", "MET_UINT", "MET_LONG", "MET_ULONG",
             "MET_LONG_LONG", "MET_ULONG_LONG", "MET_FLOAT", "MET_DOUBLE", "MET_STRING", "MET_OTHER", "MET_NONE",
             "MET_UCHAR_ARRAY", "MET_FLOAT_MATRIX", "MET_FLOAT_ARRAY", "MET_BANANA", "", "uchar", "signed char",
             "short", "ushort", "int", "uint", "longlong", "ulonglong", "float", "double", "block", "unknown",
             "int8", "float64"],
    "channels": ["0", "1", "2", "3", "4", "-1", "1000000", "x", ""],
    "file": ["LOCAL", "LIST", "missing.raw", "/nonexistent/x.raw", ".", "..", "/", "", "{header}",
             "{stem}_%03d.raw 0 3 1", "{stem}_%d.raw 1 2 1 2", "LIST 2D", "x" * 5000, "/dev/null", "local",
             "{stem}.raw.gz", "../{stem}.raw"],
    "count": ["0", "1", "-1", "-2", "100", "1000000000", "18446744073709551615", "9223372036854775807", "abc", "",
              "479", "481"],
    "boolean": ["True", "False", "1", "0", "maybe", ""],
    "encoding": ["raw", "gzip", "gz", "bzip2", "ascii", "text", "hex", "zstd", ""],
    "endian": ["little", "big", "middle", ""],
    "geometry": ["0 0", "-1 1", "nan nan", "inf 1", "1e308 1e308", "1", "1 2 3", "0 0 0 0", "(0,0) (0,0)",
                 "(nan,0) (0,1)", "(1,0)", "none (0,1)", "(0.5,0,0) (0,0.75,0)", "(1,0) (1,0)", ""],
    "object": ["Image", "Mesh", "Transform", "", "Group", "Tube"],
    "kinds": ["space", "domain domain", "RGB-color space", "list space", "space space space", ""],
    "magic": ["NRRD0001", "NRRD0005", "NRRD9999", "NRRD", "NRRC0004", "nrrd0004", ""],
}
FIELD_KINDS = {
    "ndims": "dimension", "dimension": "dimension", "space dimension": "dimension",
    "dimsize": "sizes", "sizes": "sizes",
    "elementtype": "type", "type": "type",
    "elementnumberofchannels": "channels",
    "elementdatafile": "file", "data file": "file", "datafile": "file",
    "compresseddatasize": "count", "headersize": "count", "byte skip": "count", "line skip": "count",
    "binarydata": "boolean", "binarydatabyteordermsb": "boolean", "compresseddata": "boolean",
    "encoding": "encoding", "endian": "endian",
    "transformmatrix": "geometry", "offset": "geometry", "centerofrotation": "geometry",
    "elementspacing": "geometry", "space directions": "geometry", "space origin": "geometry",
    "objecttype": "object", "kinds": "kinds",
}
EXTRA_LINES = ["HeaderSize = -1", "HeaderSize = 100000", "byte skip: -1", "byte skip: 1000000", "line skip: 3",
               "ElementMin = 0", "ElementSize = 0 0", "AnatomicalOrientation = XYZ", "block size: 0",
               "ElementNumberOfChannels = 3", "spacings: 0 nan", "thicknesses: 1 1", "axis mins: 0 0",
               "centers: cell node", "content: x", "= = =", ": :", "DimSize", "#", "x" * 10000, "NDims = 3",
               "sizes: 1 1", "type: double", "CompressedData = True"]


def split_field(line):
    for separator in (" = ", "=", ": "):
        if separator in line:
            key, _, value = line.partition(separator)
            return key, separator, value
    return None


IMAGE_EXTENSIONS = {"meta_local": ".mha", "meta_detached": ".mhd", "meta_compressed": ".mha", "nrrd_attached": ".nrrd",
                    "nrrd_detached": ".nhdr", "nrrd_gzip": ".nrrd"}


def field_kind(key):
    """The FIELD_VALUES list a header key's values are drawn from."""
    return FIELD_KINDS.get(key.strip().lower(), "count")


class ImageCase:
    """One image file being corrupted: its header lines and data, the header's bytes once mutated as bytes, and the
    mutations made."""

    def __init__(self, index):
        self.variant = IMAGE_VARIANTS[index % len(IMAGE_VARIANTS)]
        self.stem = "case-%04d" % index
        self.header_name = self.stem + IMAGE_EXTENSIONS[self.variant]
        self.lines, self.separator, self.data, self.detached = base_image(self.variant, self.stem)
        self.header_bytes = None
        self.descriptions = []

    def header_text(self):
        return ("\n".join(self.lines) + self.separator).encode()

    def field_value(self, candidates, rng):
        return rng.choice(candidates).format(header=self.header_name, stem=self.stem)

    def write(self, case_dir):
        """Writes the header (with the data unless detached) and the detached data; returns the case's variant,
        header path and description."""
        header_bytes = self.header_text() if self.header_bytes is None else self.header_bytes
        with open(os.path.join(case_dir, self.header_name), "wb") as f:
            f.write(header_bytes if self.detached else header_bytes + self.data)
        if self.detached:
            with open(os.path.join(case_dir, self.detached), "wb") as f:
                f.write(self.data)
        return self.variant, os.path.join(case_dir, self.header_name), "; ".join(self.descriptions) or "unchanged"


# Each corruption takes the case, a line index k drawn for it and that line's (key, separator, value) or None.
def replace_value(rng, case, k, field):
    """Replaces the value of a line drawn here among the fields and the first line (NRRD's magic)."""
    lines = case.lines
    fields = [i for i, line in enumerate(lines) if split_field(line)] + [0]
    chosen = rng.choice(fields)
    chosen_field = split_field(lines[chosen])
    if chosen_field is None:  # the NRRD magic line
        lines[chosen] = rng.choice(FIELD_VALUES["magic"])
    else:
        key, sep, value = chosen_field
        candidates = FIELD_VALUES[field_kind(key)] if rng.random() < 0.9 else sum(FIELD_VALUES.values(), [])
        lines[chosen] = key + sep + case.field_value(candidates, rng)
    case.descriptions.append("%s -> %s" % ((chosen_field or ("magic",))[0], lines[chosen][:80]))


def drop_line(rng, case, k, field):
    case.descriptions.append("line %r dropped" % case.lines[k][:40])
    del case.lines[k]


def duplicate_line(rng, case, k, field):
    copy = case.lines[k]
    if field and rng.random() < 0.5:
        copy = field[0] + field[1] + case.field_value(FIELD_VALUES[field_kind(field[0])], rng)
    case.descriptions.append("line %r duplicated as %r" % (case.lines[k][:40], copy[:40]))
    case.lines.insert(rng.randrange(len(case.lines) + 1), copy)


def swap_lines(rng, case, k, field):
    j = rng.randrange(len(case.lines))
    case.lines[k], case.lines[j] = case.lines[j], case.lines[k]
    case.descriptions.append("lines %d and %d swapped" % (k, j))


def rename_key(rng, case, k, field):
    key = rng.choice([field[0].upper(), field[0].lower(), field[0][:-1], field[0] + "s", " " + field[0]])
    case.lines[k] = key + field[1] + field[2]
    case.descriptions.append("key %r -> %r" % (field[0], key))


def insert_line(rng, case, k, field):
    case.lines.insert(rng.randrange(len(case.lines) + 1), rng.choice(EXTRA_LINES))
    case.descriptions.append("line inserted")


def truncate_header(rng, case, k, field):
    case.header_bytes, what = truncate(rng, case.header_text())
    case.data = b"" if not case.detached else case.data
    case.descriptions.append("header " + what)


def flip_header_bytes(rng, case, k, field):
    case.header_bytes, what = mutate_bytes(rng, case.header_text())
    case.descriptions.append("header " + what)


def resize_data(rng, case, k, field):
    data = case.data
    size = rng.choice([0, 1, len(data) // 2, len(data) - 1, len(data) + 1, len(data) * 4])
    case.data = (data + bytes(size))[:size] if rng.random() < 0.8 else mutate_bytes(rng, data)[0]
    case.descriptions.append("data %d bytes" % len(case.data))


# name: (weight, corruption)
IMAGE_CORRUPTIONS = {"value": (45, replace_value), "drop": (7, drop_line), "duplicate": (6, duplicate_line),
                     "swap": (5, swap_lines), "rename": (5, rename_key), "insert": (8, insert_line),
                     "truncate": (4, truncate_header), "flip": (6, flip_header_bytes), "data": (14, resize_data)}


def make_image_case(rng, case_dir, index):
    case = ImageCase(index)
    names = list(IMAGE_CORRUPTIONS)
    weights = [weight for weight, _ in IMAGE_CORRUPTIONS.values()]
    for _ in range(1 if rng.random() < 0.7 else rng.randint(2, 3)):
        operation = rng.choices(names, weights)[0]
        k = rng.randrange(len(case.lines))
        field = split_field(case.lines[k])
        if operation == "rename" and not field:
            operation = "data"  # a line without a key has no key to rename: the case's data is changed instead
        IMAGE_CORRUPTIONS[operation][1](rng, case, k, field)
    return case.write(case_dir)


# ---------------------------------------------------------------------------------------------------------------
# Supervision


def limit_child():
    # A mutated size must fail as an allocation error rather than take the machine's memory (address space is
    # what RLIMIT_AS bounds; AddressSanitizer reserves terabytes of it, so sanitized runners go without).
    if os.environ.get("UNET_FUZZ_MEMORY_LIMIT_MB", "4096") != "0":
        limit = int(os.environ.get("UNET_FUZZ_MEMORY_LIMIT_MB", "4096")) * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def run_cases(command, case_files, work, timeout):
    """Runs the runner over the cases, restarting it after a case that kills or hangs it.

    Returns {index: (result, stage, text)}: result RAN, ITK, FOREIGN, CRASH or HANG; stage the last one the case
    passed ("start" before any). A runner that dies between cases or at its exit, once a case of its own has reported,
    counts as a crash of the case that reported last: a corrupted heap often fails only at the next free."""
    list_file = os.path.join(work, "cases.txt")
    with open(list_file, "w") as f:
        f.write("".join(path + "\n" for path in case_files))
    results = {}
    first = 0
    while first < len(case_files):
        log_path = os.path.join(work, "runner-from-%04d.log" % first)
        with open(log_path, "wb") as log:
            process = subprocess.Popen(command[:2] + [list_file, str(first)] + command[2:], stdout=subprocess.PIPE,
                                       stderr=log, preexec_fn=limit_child, start_new_session=True)
        selector = selectors.DefaultSelector()
        selector.register(process.stdout, selectors.EVENT_READ)
        current, stage, deadline, buffer, reported = None, "start", time.monotonic() + timeout, b"", None
        while True:
            if not selector.select(max(deadline - time.monotonic(), 0)):
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
                if current is None:
                    sys.exit("The runner started no case within %d s (see %s)." % (timeout, log_path))
                results[current] = ("HANG", stage, "no result within %d s" % timeout)
                first = current + 1
                break
            chunk = os.read(process.stdout.fileno(), 65536)
            if not chunk:
                status = process.wait()
                if current is not None:
                    results[current] = ("CRASH", stage, runner_death(status, log_path))
                    first = current + 1
                elif status != 0 and reported is not None:
                    results[reported] = ("CRASH", results[reported][1],
                                         "after its result (%s): %s" % (results[reported][0],
                                                                        runner_death(status, log_path)))
                    first = reported + 1
                elif status != 0 or any(i not in results for i in range(first, len(case_files))):
                    sys.exit("The runner failed outside a case (status %d, see %s)." % (status, log_path))
                else:
                    first = len(case_files)
                break
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                word, _, rest = line.decode("utf-8", "replace").partition(" ")
                index, _, message = rest.partition(" ")
                if word == "BEGIN":
                    current, stage, deadline = int(index), "start", time.monotonic() + timeout
                elif word == "STAGE":
                    stage = message
                else:
                    results[int(index)] = (word, stage, message)
                    current, reported = None, int(index)
        selector.close()
        process.stdout.close()
        if process.poll() is None:
            process.wait()
    return results


def runner_death(status, log_path):
    """How the runner ended, and the end of its standard error."""
    reason = ("signal %s" % signal.Signals(-status).name) if status < 0 else "exit status %d" % status
    with open(log_path, "rb") as log:
        tail = log.read()[-300:].decode("utf-8", "replace").replace("\n", " | ")
    return "%s; stderr ends: %s" % (reason, tail)


def read_known_failures(path):
    """{(kind, index): (results, stages, cause)} from lines "kind index result[|result...] stage[|stage...] cause"
    (# comments)."""
    known = {}
    if path:
        with open(path) as f:
            for line in f:
                line = line.split("#", 1)[0].strip()
                if line:
                    kind, index, result, stage, reason = line.split(None, 4)
                    known[(kind, int(index))] = (result, stage, reason)
    return known


def parse_arguments():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=["models", "images"])
    parser.add_argument("--runner", required=True, help="the UNetFuzzCaseRunner program")
    parser.add_argument("--models", required=True, help="the directory make_test_models.py wrote")
    parser.add_argument("--work", required=True, help="a directory for the cases and logs (emptied of old cases)")
    parser.add_argument("--cases", type=int, default=None, help="cases in all shards (2300 models, 600 images)")
    parser.add_argument("--seed", type=int, default=2012)
    parser.add_argument("--shard", default="0/1", help="K/N: this run makes and runs cases K, K+N, K+2N, ...")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds one case may take")
    parser.add_argument("--known", help="failures inside ITK or LibTorch, each explained (see the file)")
    return parser.parse_args()


def default_case_count(kind):
    return DEFAULT_MODEL_CASES if kind == "models" else 600


Case = collections.namedtuple("Case", "index path kind description")


def empty_case_dir(work):
    case_dir = os.path.join(work, "cases")
    os.makedirs(case_dir, exist_ok=True)
    for old in os.listdir(case_dir):
        os.remove(os.path.join(case_dir, old))
    return case_dir


def make_cases(args, case_dir, indices):
    cases = []
    for index in indices:
        rng = random.Random("%s-%d-%d" % (args.kind, args.seed, index))
        if args.kind == "models":
            base = (BASE_MODELS if index < FIRST_CORPUS_CASES else MORE_BASE_MODELS)[index % 3]
            path = os.path.join(case_dir, "case-%04d-%s.pt" % (index, base))
            kind, description = make_model_case(rng, os.path.join(args.models, base + ".pt"), path)
        else:
            kind, path, description = make_image_case(rng, case_dir, index)
        cases.append(Case(index, path, kind, description))
    return cases


def run_shard(command, cases, work, timeout, listed):
    """Runs the cases in one runner, restarted after a case that kills it, except the listed upstream failures (the
    set of case indices `listed`), each in a runner of its own: they corrupt the heap, and what the corruption does
    next, a crash in a later case or at the runner's exit, depends on the cases around them."""
    shared = [k for k, case in enumerate(cases) if case.index not in listed]
    results = {shared[j]: result
               for j, result in run_cases(command, [cases[k].path for k in shared], work, timeout).items()}
    for k, case in enumerate(cases):
        if case.index in listed:
            results[k] = run_alone(command, case, work, timeout)
    return results


def run_alone(command, case, work, timeout):
    alone_dir = os.path.join(work, "alone-%04d" % case.index)
    os.makedirs(alone_dir, exist_ok=True)
    return run_cases(command, [case.path], alone_dir, timeout)[0]


def rerun_alone(command, case, work, timeout, result, stage, message):
    """A crash can be the late effect of an earlier case's memory corruption, and a case can overrun its time limit
    on a loaded machine without hanging: the case is run again alone. A case that ends alone within the limit counts
    as it ended there; otherwise the result stands, its message saying how the case ended alone."""
    alone = run_alone(command, case, work, timeout)
    if result == "HANG" and alone[0] in ("RAN", "ITK"):
        return alone
    return result, stage, message + "; alone: %s after stage %s, %s" % (alone[0], alone[1], alone[2][:120])


def fails_as_listed(result, stage, listed):
    return result in listed[0].split("|") and stage in listed[1].split("|")


def listed_case_alone(command, case, work, timeout, listed, first_run):
    """A listed upstream crash that reads memory it does not own need not crash every time, what it reads depending
    on what the heap holds: such a case is run alone once more. It is stale (the upstream fault gone) only if it does
    not fail as listed there either."""
    result, stage, message = run_alone(command, case, work, timeout)
    if fails_as_listed(result, stage, listed):
        return result, stage, message + "; the first time: %s after stage %s" % first_run[:2]
    return first_run


class Tally:
    """The cases' outcomes: counts per mutation kind, the itk::ExceptionObject messages, and the cases that failed
    as listed in the known failures, failed otherwise, or ran out of memory under AddressSanitizer."""

    def __init__(self):
        self.per_kind = collections.defaultdict(collections.Counter)
        self.messages = collections.Counter()
        self.failures, self.upstream, self.asan_out_of_memory = [], [], []

    def add(self, case, result, stage, message, listed, known_path):
        """Counts one case's final result; listed is its entry in the known failures, or None."""
        counts = self.per_kind[case.kind]
        if result == "CRASH" and ASAN_OUT_OF_MEMORY.search(message):
            # Under AddressSanitizer a failed operator new aborts (its runtime cannot throw std::bad_alloc), where
            # the plain build throws it and ITK turns it into an exception: counted apart, not a failure.
            counts["asan_oom"] += 1
            self.asan_out_of_memory.append(case.index)
            return
        if result == "ITK" and re.search(r"(\"|^[^:]*):\s*$", message):
            result = "UNCLEAR"  # "Cannot load ... from "file": " and nothing more
        if result == "ITK":
            message = re.sub(r"^ITK ERROR: \w+\(0x[0-9a-f]+\): ", "", message)
            self.messages[re.sub(r"\"[^\"]*\"", "\"...\"", message)[:110]] += 1
        if result in ("RAN", "ITK"):
            counts[result] += 1
            if listed and result not in listed[0].split("|"):
                self.failures.append((case.index, case.path, case.description, "STALE", stage,
                                      "listed in %s but did not fail" % known_path))
            return
        if listed and fails_as_listed(result, stage, listed):
            counts["upstream"] += 1
            self.upstream.append((case.index, case.path, case.description, result, stage, listed[2]))
        else:
            counts["failed"] += 1
            self.failures.append((case.index, case.path, case.description, result, stage, message))


def tally_results(args, command, cases, results, known):
    tally = Tally()
    for k, case in enumerate(cases):
        result, stage, message = results.get(k, ("MISSING", "start", "no result"))
        listed = known.get((args.kind, case.index))
        if result in ("CRASH", "HANG"):
            result, stage, message = rerun_alone(command, case, args.work, args.timeout, result, stage, message)
        elif listed and not fails_as_listed(result, stage, listed):
            result, stage, message = listed_case_alone(command, case, args.work, args.timeout, listed,
                                                       (result, stage, message))
        tally.add(case, result, stage, message, listed, args.known)
    return tally


def print_counts(tally, tried):
    print("%-22s %6s %6s %6s %8s %6s" % ("mutation", "tried", "ran", "raised", "upstream", "failed"))
    for kind in sorted(tally.per_kind):
        counts = tally.per_kind[kind]
        print("%-22s %6d %6d %6d %8d %6d" % (kind, sum(counts.values()), counts["RAN"], counts["ITK"],
                                             counts["upstream"], counts["failed"]))
    print("Tried %d: ran %d, raised itk::ExceptionObject %d, failed inside ITK or LibTorch as listed in the known "
          "failures %d, failed otherwise %d" % (tried, sum(c["RAN"] for c in tally.per_kind.values()),
                                                sum(c["ITK"] for c in tally.per_kind.values()), len(tally.upstream),
                                                len(tally.failures)))
    if tally.asan_out_of_memory:
        print("Out of memory under AddressSanitizer (operator new aborts instead of throwing std::bad_alloc): %d, "
              "cases %s" % (len(tally.asan_out_of_memory), " ".join(map(str, tally.asan_out_of_memory))))


def print_cases(tally, kind):
    print("Most frequent itk::ExceptionObject messages:")
    for message, n in tally.messages.most_common(12):
        print("  %5d  %s" % (n, message))
    for index, path, description, result, stage, reason in tally.upstream:
        print("KNOWN  %s %d %s after stage %s [%s]: %s" % (kind, index, result, stage, description, reason))
    for index, path, description, result, stage, message in tally.failures:
        print("FAILED %s %d %s after stage %s [%s] %s: %s" % (kind, index, result, stage, description, path,
                                                             message))


def main():
    args = parse_arguments()
    count = args.cases or default_case_count(args.kind)
    shard, shards = (int(v) for v in args.shard.split("/"))

    case_dir = empty_case_dir(args.work)

    started = time.monotonic()
    cases = make_cases(args, case_dir, list(range(shard, count, shards)))
    generated = time.monotonic()

    command = [args.runner, args.kind]
    if args.kind == "images":
        command.append(os.path.join(args.models, "mean2d.pt"))
    known = read_known_failures(args.known) if args.seed == 2012 and count == default_case_count(args.kind) else {}
    listed = {index for kind, index in known if kind == args.kind}
    results = run_shard(command, cases, args.work, args.timeout, listed)
    finished = time.monotonic()

    tally = tally_results(args, command, cases, results, known)
    print("Fuzzing %s: seed %d, shard %d/%d, %d cases (made in %.1f s, run in %.1f s)" % (
        args.kind, args.seed, shard, shards, len(cases), generated - started, finished - generated))
    print_counts(tally, len(cases))
    print_cases(tally, args.kind)
    return 1 if tally.failures else 0


if __name__ == "__main__":
    sys.exit(main())
