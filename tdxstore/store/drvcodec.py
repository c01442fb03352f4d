"""Canonical CBOR encoding of derivations (L3).

Encoding: one CBOR map, RFC 8949 §4.2 deterministic (cbor2 `canonical=True`: shortest integers,
definite lengths, map keys sorted by their encoded bytes), text strings only, no floats, no tags;
optional fields (`timeout`, `maxSilent`) are omitted when unset so adding a field never changes old
hashes. `decode_record` fails closed: unknown or missing keys, wrong types and non-canonical bytes
are errors (`derivation.decode` rebuilds the model from a record).

    {"version": 1, "name": str, "builder": str, "args": [str], "env": {str: str},
     "root": str?, "inputSrcs": [path], "inputDrvs": {drv path: [output]},
     "outputs": {id: {"path": path, "hash"?: hex, "mode"?: "flat"|"recursive"}},
     "timeout"?: uint, "maxSilent"?: uint}
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import cbor2

from tdxstore.errors import DerivationError

if TYPE_CHECKING:  # the model imports this codec, never the other way round at run time
    from tdxstore.store.derivation import Derivation

VERSION = 1
_REQUIRED = {"version", "name", "builder", "args", "env", "inputSrcs", "inputDrvs", "outputs"}
_OPTIONAL = {"root", "timeout", "maxSilent"}


def _record(drv: Derivation, *, modulo: bool) -> dict[str, Any]:
    input_drvs: dict[str, list[str]] = {}
    for d in drv.input_drvs:
        key = d.modulo_hash if modulo else d.drv_path.logical
        input_drvs[key] = sorted(set(input_drvs.get(key, [])) | set(d.outputs))
    outputs: dict[str, dict[str, str]] = {}
    for o in drv.outputs:
        entry = {"path": "" if modulo else drv.output_paths[o].logical}
        if drv.fixed is not None:
            entry["hash"] = drv.fixed.sha256
            entry["mode"] = "recursive" if drv.fixed.recursive else "flat"
        outputs[o] = entry
    rec: dict[str, Any] = {
        "version": VERSION, "name": drv.name, "builder": drv.builder, "args": list(drv.args),
        "env": dict(drv.env), "inputSrcs": [p.logical for p in drv.input_srcs], "inputDrvs": input_drvs,
        "outputs": outputs,
    }
    if drv.root_path is not None:
        rec["root"] = drv.root_path.logical
    if drv.timeout is not None:
        rec["timeout"] = drv.timeout
    if drv.max_silent is not None:
        rec["maxSilent"] = drv.max_silent
    return rec


def encode(drv: Derivation) -> bytes:
    return bytes(cbor2.dumps(_record(drv, modulo=False), canonical=True))


def encode_for_modulo(drv: Derivation) -> bytes:
    """The encoding hashed for output paths: output paths blank, input drvs by their modulo hash."""
    return bytes(cbor2.dumps(_record(drv, modulo=True), canonical=True))


def to_json(drv: Derivation) -> dict[str, Any]:
    """The stored record as a JSON-ready dict (for `tdx show-derivation`)."""
    rec = _record(drv, modulo=False)
    return {"drvPath": drv.drv_path.logical, **rec}


def decode_record(data: bytes, where: str = "derivation") -> dict[str, Any]:
    """Parse and validate the CBOR of a .drv file; returns the raw record."""
    try:
        rec = cbor2.loads(data)
    except Exception as e:
        raise DerivationError(f"{where} is not valid CBOR: {e}", code="drv-malformed") from e
    if not isinstance(rec, dict):
        raise DerivationError(f"{where}: top level is not a map", code="drv-malformed")
    keys = set(rec)
    if not keys >= _REQUIRED or keys - _REQUIRED - _OPTIONAL:
        raise DerivationError(
            f"{where}: unexpected fields (missing {sorted(_REQUIRED - keys)}, unknown "
            f"{sorted(keys - _REQUIRED - _OPTIONAL)})", code="drv-malformed")
    if rec["version"] != VERSION:
        raise DerivationError(f"{where}: unsupported version {rec['version']!r}", code="drv-malformed")
    _check_types(rec, where)
    if cbor2.dumps(rec, canonical=True) != data:
        raise DerivationError(f"{where} is not canonically encoded", code="drv-malformed")
    return rec


def _check_types(rec: dict[str, Any], where: str) -> None:
    def strs(x: Any) -> bool:
        return isinstance(x, list) and all(isinstance(i, str) for i in x)

    ok = (isinstance(rec["name"], str) and isinstance(rec["builder"], str) and strs(rec["args"])
          and isinstance(rec["env"], dict) and all(isinstance(k, str) and isinstance(v, str)
                                                   for k, v in rec["env"].items())
          and strs(rec["inputSrcs"]) and isinstance(rec["inputDrvs"], dict)
          and all(isinstance(k, str) and strs(v) for k, v in rec["inputDrvs"].items())
          and isinstance(rec["outputs"], dict)
          and all(isinstance(k, str) and isinstance(v, dict) for k, v in rec["outputs"].items())
          and all(isinstance(rec.get(k, 0), int) and not isinstance(rec.get(k, 0), bool)
                  for k in ("timeout", "maxSilent"))
          and isinstance(rec.get("root", ""), str))
    if not ok:
        raise DerivationError(f"{where}: a field has the wrong type", code="drv-malformed")
