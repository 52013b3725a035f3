"""The model card of a TorchScript network: what it needs besides its weights (normalisation, spacing, classes,
flips, tiles, cell-separation thresholds, provenance), stored in the archive as the extra file
``unet_model_card.json`` (see ``model_card.schema.json`` beside this file, and ``itk::UNetModelCard``).

    python3 -m itk_unetsegmentation.model_card show MODEL.pt
    python3 -m itk_unetsegmentation.model_card set MODEL.pt [RECORD.json] [--standardize M S | --normalize M S]
        [--spacing X Y [Z] --unit mm|um|nm|pixel] [--classes NAME[:R,G,B] ...] [--flip-axes A ...]
        [--tile X Y [Z]] [--overlap N] [--cell-class K] [--seed-threshold T] [--cell-threshold T]
        [--provenance JSON]
    python3 -m itk_unetsegmentation.model_card remove MODEL.pt

``set`` starts from the file's record (or RECORD.json, or an empty one), applies the options, checks the result
against the schema, writes it into the archive with torch (keeping the archive's other extra files), and loads the
network with ``itk.UNetModel`` to check the record against it; the file is left as it was if any check fails. Any
TorchScript network can be annotated so, a MONAI or nnU-Net export included.

From Python: ``read(path)`` (no torch needed), ``validate(record)``, ``write(path, record)``.
"""
import argparse
import json
import os
import shutil
import sys
import tempfile
import zipfile

ARCHIVE_NAME = "unet_model_card.json"
SCHEMA_VERSION = 1
SCHEMA_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "model_card.schema.json")

__all__ = ["ARCHIVE_NAME", "read", "validate", "write", "remove"]


def _extra_entries(path):
    """{extra file name: bytes} of a TorchScript archive (its zip entries <archive>/extra/<name>)."""
    with zipfile.ZipFile(path) as archive:
        entries = {}
        for name in archive.namelist():
            parts = name.split("/")
            if len(parts) == 3 and parts[1] == "extra":
                entries[parts[2]] = archive.read(name)
        return entries


def read(path):
    """The model card of the TorchScript file at `path` as a dict, or None when it has none."""
    text = _extra_entries(path).get(ARCHIVE_NAME)
    return None if text is None else json.loads(text.decode("utf-8"))


def validate(record):
    """Raises ValueError unless `record` follows the schema (python3-jsonschema)."""
    import jsonschema

    with open(SCHEMA_FILE) as schema_file:
        schema = json.load(schema_file)
    try:
        jsonschema.validate(record, schema)
    except jsonschema.ValidationError as error:
        field = ".".join(str(part) for part in error.absolute_path) or "(record)"
        raise ValueError(f"model card field {field}: {error.message}") from None


def _save(path, extra):
    """Saves the network at `path` again with the extra files `extra` (name: text or bytes), through a copy."""
    import torch

    module = torch.jit.load(path)
    with tempfile.NamedTemporaryFile(suffix=".pt", dir=os.path.dirname(os.path.abspath(path)), delete=False) as tmp:
        temporary = tmp.name
    try:
        torch.jit.save(module, temporary, _extra_files=extra)
        shutil.copymode(path, temporary)  # the file keeps its permissions
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def _check_with_itk(path):
    """Loads the network with itk.UNetModel, which checks the record against the network (channels, classes,
    dimension); raises ValueError with its message."""
    import itk

    model = itk.UNetModel.New()
    model.SetFileName(path)
    try:
        model.Load()
    except RuntimeError as error:
        raise ValueError(str(error).strip().splitlines()[-1]) from None


def write(path, record, check=True):
    """Writes `record` as the model card of the TorchScript file at `path` (replacing any), after checking it against
    the schema and, with `check`, against the network through itk.UNetModel; on failure the file is unchanged."""
    validate(record)
    extra = {name: data for name, data in _extra_entries(path).items() if name != ARCHIVE_NAME}
    extra[ARCHIVE_NAME] = json.dumps(record, indent=2, sort_keys=False)
    backup = path + ".backup"
    shutil.copyfile(path, backup)
    try:
        _save(path, extra)
        if check:
            _check_with_itk(path)
    except BaseException:
        os.replace(backup, path)
        raise
    os.remove(backup)


def remove(path):
    """Removes the model card of the TorchScript file at `path`, if it has one."""
    extra = _extra_entries(path)
    if ARCHIVE_NAME in extra:
        del extra[ARCHIVE_NAME]
        _save(path, extra)


def _class_entry(text):
    """NAME or NAME:R,G,B -> a classes entry."""
    name, _, color = text.partition(":")
    entry = {"name": name}
    if color:
        entry["color"] = [int(value) for value in color.split(",")]
    return entry


def apply_options(record, args):
    """`record` with the command-line options of `set` applied."""
    record = dict(record or {})
    record["schema_version"] = SCHEMA_VERSION
    if args.standardize:
        record["normalization"] = {"kind": "standardize", "mean": args.standardize[0],
                                   "standard_deviation": args.standardize[1]}
    if args.normalize:
        record["normalization"] = {"kind": "fixed", "mean": [args.normalize[0]],
                                   "standard_deviation": [args.normalize[1]]}
    if args.spacing:
        record["spacing"] = {"values": args.spacing, "unit": args.unit}
    if args.classes:
        record["classes"] = [_class_entry(text) for text in args.classes]
    if args.flip_axes is not None:
        record["flip_axes"] = args.flip_axes
    for key, value in (("size", args.tile), ("overlap", args.overlap)):
        if value is not None:
            record.setdefault("tile", {})[key] = value
    for key, value in (("cell_class", args.cell_class), ("seed_threshold", args.seed_threshold),
                       ("cell_threshold", args.cell_threshold)):
        if value is not None:
            record.setdefault("cell_separation", {})[key] = value
    if args.provenance:
        record["provenance"] = json.loads(args.provenance)
    return record


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python3 -m itk_unetsegmentation.model_card",
                                     description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    show = commands.add_parser("show", help="print the record")
    show.add_argument("model")
    remove_command = commands.add_parser("remove", help="remove the record")
    remove_command.add_argument("model")
    change = commands.add_parser("set", help="write a record (the file's, RECORD.json's or a new one, with changes)")
    change.add_argument("model")
    change.add_argument("record", nargs="?", help="a JSON file with the whole record to start from")
    change.add_argument("--standardize", nargs=2, type=float, metavar=("MEAN", "SD"),
                        help="each image mapped to this mean and standard deviation")
    change.add_argument("--normalize", nargs=2, type=float, metavar=("MEAN", "SD"),
                        help="(value - MEAN) / SD, for every channel")
    change.add_argument("--spacing", nargs="+", type=float, help="the voxel spacing trained at, x y [z]")
    change.add_argument("--unit", default="mm", choices=["mm", "um", "nm", "pixel"])
    change.add_argument("--classes", nargs="+", metavar="NAME[:R,G,B]")
    change.add_argument("--flip-axes", nargs="*", type=int)
    change.add_argument("--tile", nargs="+", type=int)
    change.add_argument("--overlap", type=int)
    change.add_argument("--cell-class", type=int)
    change.add_argument("--seed-threshold", type=float)
    change.add_argument("--cell-threshold", type=float)
    change.add_argument("--provenance", help="a JSON object")
    args = parser.parse_args(argv)
    try:
        if args.command == "show":
            record = read(args.model)
            print(json.dumps(record, indent=2) if record is not None else f"{args.model} has no model card.")
        elif args.command == "remove":
            remove(args.model)
        else:
            start = read(args.model)
            if args.record:
                with open(args.record) as record_file:
                    start = json.load(record_file)
            write(args.model, apply_options(start, args))
            print(json.dumps(read(args.model), indent=2))
    except (ValueError, OSError, zipfile.BadZipFile) as error:
        sys.exit(f"model_card: {error}")


if __name__ == "__main__":
    main()
