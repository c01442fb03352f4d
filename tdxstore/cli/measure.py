"""`tdx measure`: predict MRTD and RTMR0–2 of an image and explain a mismatch with a real event log (L4).

IMAGE is a UKI or GPT disk file, a built image (store path or result link: its image.efi and image.disk)
or a TDXfile / directory (built or looked up through the image pipeline); the firmware defaults to the
pinned Debian OVMF store path. Calls `tdxstore.measure.predict`, prints hex values (or JSON) and events.
Never prints a value the library did not compute: missing inputs are listed, and make the command fail
unless `--partial` is given; a log that differs from the prediction fails with the first differing events.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from tdxstore.errors import MeasureError, UsageError

if TYPE_CHECKING:
    from tdxstore.measure.eventlog import Difference
    from tdxstore.measure.predict import Prediction

_PROFILE = "qemu-tdx-upstream"


def register(app: typer.Typer) -> None:
    app.command("measure")(measure_cmd)


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise UsageError(f"cannot read {what} {str(path)!r}: {e.strerror}", code="measure-unreadable") from e


def _store_real(path: Path) -> Path:
    """The real location of a logical `/tdx/store/<hash>-<name>[/sub]` path; other paths unchanged."""
    from tdxstore.cli.app import open_store
    from tdxstore.store.path import split_logical

    found = split_logical(str(path))
    if found is None:
        return path
    sp, rest = found
    store = open_store()
    if not store.is_valid(sp):
        raise UsageError(f"{sp.logical} is not a valid store path", hint="build or realise it first",
                         code="measure-unreadable")
    return store.real_path(sp) / rest if rest else store.real_path(sp)


def _is_tdxfile(path: Path) -> bool:
    """A TDXfile is UTF-8 Python source; a UKI starts with "MZ", a disk image holds binary data."""
    if path.is_dir():
        return (path / "TDXfile").is_file()
    try:
        with open(path, "rb") as f:
            head = f.read(1 << 16)
        head.decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    return bool(head) and not head.startswith(b"MZ") and b"\0" not in head


def _built_image(tdxfile: Path) -> Path:
    """Build (or look up) the UKI image of a TDXfile through the pipeline; its real store directory."""
    import sys

    from tdxstore.cli.app import open_store
    from tdxstore.image import pipeline

    store = open_store()
    _plan, sp, _ran = pipeline.build(store, tdxfile, fmt="uki",
                                     phase=lambda m: print(m, file=sys.stderr, flush=True))
    return store.real_path(sp)


def _image_inputs(image: Path) -> tuple[bytes, bytes | None]:
    """(UKI, disk or None) of IMAGE: a file, a built image directory or a TDXfile."""
    from tdxstore.measure.predict import split_image

    path = _store_real(image)
    if _is_tdxfile(path):
        path = _built_image(path)
    if path.is_dir():
        from tdxstore.disk.manifest import BuiltImage

        built = BuiltImage.at(path)
        return _read(built.uki, "UKI"), _read(built.disk, "disk image") if built.disk else None
    return split_image(_read(path, "image"))


def _firmware_file(firmware: Path | None) -> Path:
    """--firmware as a file: a given file, the OVMF.fd of a firmware store path, or the pinned firmware."""
    if firmware is None:
        from tdxstore.cli.app import open_store
        from tdxstore.image.pinned import realise_firmware

        return realise_firmware(open_store())[1]
    path = _store_real(firmware)
    if path.is_dir():  # a firmware store path
        from tdxstore.debian.pins import FIRMWARE_FILE

        return path / FIRMWARE_FILE
    return path


def measure_cmd(
    image: Annotated[Path | None, typer.Argument(
        metavar="IMAGE", help="A UKI (.efi), a raw GPT disk image, a built image (store path or result link) "
                              "or a TDXfile (or its directory). Without it, --firmware gives MRTD alone."
    )] = None,
    firmware: Annotated[Path | None, typer.Option(
        "--firmware", "-f", help="Unified OVMF.fd image or firmware store path (default: the pinned Debian OVMF)."
    )] = None,
    platform: Annotated[str, typer.Option("--platform", "-p", help="Profile name or .json file.")] = _PROFILE,
    blobs: Annotated[Path | None, typer.Option("--blobs", help="Directory of RTMR0 platform blobs.")] = None,
    page_add_order: Annotated[str | None, typer.Option("--page-add-order", help="MRTD order")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    events: Annotated[bool, typer.Option("--events", help="Also print the predicted event log.")] = False,
    compare_log: Annotated[
        Path | None, typer.Option("--compare", metavar="EVENTLOG", help="A CCEL or TCG2 log to replay.")
    ] = None,
    partial: Annotated[bool, typer.Option("--partial", help="Exit 0 on missing inputs.")] = False,
) -> None:
    """Predict the TDX measurements (MRTD, RTMR0-2) of booting IMAGE (MRTD alone: --firmware FW only)."""
    import dataclasses

    from tdxstore.measure.eventlog import compare, parse_event_log
    from tdxstore.measure.predict import PREDICTED, predict_firmware, predict_image, require_complete
    from tdxstore.measure.profile import load_profile
    from tdxstore.measure.tdvf import PageAddOrder

    profile = load_profile(platform, blobs)
    if page_add_order is not None:
        try:
            order = PageAddOrder(page_add_order)
        except ValueError as e:
            raise UsageError(f"--page-add-order must be single-pass or two-pass, not {page_add_order!r}",
                             code="usage") from e
        profile = dataclasses.replace(profile, page_add_order=order)
    if image is None:
        _firmware_only(firmware, compare_log)
        assert firmware is not None
        prediction = predict_firmware(_read(_firmware_file(firmware), "firmware"), profile)
        _print(prediction, as_json, events, None)
        return  # MRTD is what was asked for; the RTMRs it cannot give are listed, not an error
    uki, disk = _image_inputs(image)
    logged = parse_event_log(_read(compare_log, "event log")) if compare_log is not None else None
    fw = _read(_firmware_file(firmware), "firmware")
    prediction = predict_image(uki, disk, fw, profile)
    diffs = None
    if logged is not None:
        diffs = compare(prediction.events, logged, [r for r in PREDICTED if prediction.rtmrs[r] is not None])
    _print(prediction, as_json, events, diffs)
    if diffs:
        regs = ", ".join(d.register for d in diffs)
        raise MeasureError(f"the event log differs from the prediction in {regs}",
                           hint="The named event is the first one that differs in each register.",
                           detail="\n".join(d.describe() for d in diffs), code="measure-log-mismatch")
    if diffs is not None and not as_json:
        typer.echo("event log matches the prediction")
    if not partial:
        require_complete(prediction)


def _firmware_only(firmware: Path | None, compare_log: Path | None) -> None:
    """Refuse what a prediction without IMAGE cannot do."""
    if firmware is None:
        raise UsageError("tdx measure needs IMAGE, or --firmware FW for the MRTD of a firmware alone",
                         hint="tdx measure IMAGE [--firmware FW], or tdx measure --firmware OVMF.fd",
                         code="usage")
    if compare_log is not None:
        raise UsageError("--compare needs IMAGE: an event log holds the RTMR1/RTMR2 events of an image",
                         hint="tdx measure IMAGE --compare EVENTLOG", code="usage")


def _print(prediction: Prediction, as_json: bool, events: bool, diffs: list[Difference] | None) -> None:
    if not as_json:
        _print_text(prediction, events)
        return
    out = prediction.to_json()
    if not events:
        out.pop("events")
    if diffs is not None:
        out["differences"] = [d.to_json() for d in diffs]
    typer.echo(json.dumps(out, indent=2))


def _print_text(prediction: Prediction, with_events: bool) -> None:
    typer.echo(f"profile   {prediction.profile}")
    typer.echo(f"firmware  {prediction.firmware or '(none)'}")
    if prediction.boot_chain:
        typer.echo("boot      " + ", ".join(f"{k} {v}" for k, v in prediction.boot_chain.items()))
    typer.echo(f"MRTD      {prediction.mrtd.hex() if prediction.mrtd else '(not predicted)'}")
    for reg, value in prediction.rtmrs.items():
        typer.echo(f"{reg.value:<9} {value.hex() if value else '(not predicted)'}")
        for item in prediction.missing.get(reg, ()):
            typer.echo(f"          missing: {item}")
    if with_events:
        for ev in prediction.events:
            typer.echo(f"{ev.register.value} {ev.type:<34} {ev.digest.hex()}  {ev.description}")
