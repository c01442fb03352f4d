"""Loading derivations named on the command line: `FILE.py[:ATTR]` or a `.drv` store path (L3).

A Python file is run like a script (its directory on sys.path); ATTR names a module-level value
(dotted for attributes). Without ATTR the file's `default` is used, else its only Derivation.
An exception in the user's file becomes a DerivationError whose detail is the user's traceback.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from tdxstore._usercode import run_user_file
from tdxstore.errors import DerivationError
from tdxstore.store.derivation import Derivation
from tdxstore.store.path import StorePath, split_logical
from tdxstore.store.realise import load_derivation
from tdxstore.store.store import Store


def run_python_file(path: Path) -> dict[str, Any]:
    """Execute a user's Python file and return its globals; errors carry the user's traceback."""
    path = path.absolute()
    if not path.is_file():
        raise DerivationError(f"file {str(path)!r} does not exist", code="file-not-found")
    return run_user_file(path, import_roots=[path.parent], run_name="__tdx__", label=path.name,
                         error=DerivationError, code="user-code-error")


def _select(scope: dict[str, Any], attr: str | None, where: str) -> Any:
    if attr:
        value: Any = scope
        for part in attr.split("."):
            value = value.get(part) if isinstance(value, dict) else getattr(value, part, None)
            if value is None:
                raise DerivationError(f"{where} has no attribute {attr!r}", code="unknown-attribute",
                                      hint=f"derivations there: {', '.join(_candidates(scope)) or 'none'}")
        return value
    if "default" in scope:
        return scope["default"]
    found = _candidates(scope)
    if len(found) == 1:
        return scope[found[0]]
    raise DerivationError(f"{where} defines {len(found)} derivations and no `default`",
                          hint=f"name one as FILE.py:ATTR ({', '.join(found) or 'none found'})",
                          code="unknown-attribute")


def _candidates(scope: dict[str, Any]) -> list[str]:
    return sorted(k for k, v in scope.items() if isinstance(v, Derivation) and not k.startswith("_"))


def resolve_targets(store: Store, spec: str, lower: Callable[[Path, Any], Derivation] | None = None,
                    ) -> tuple[list[Derivation], str | None]:
    """Derivations for `FILE.py[:ATTR]` or `/tdx/store/…drv[^OUTPUT]`; also the output selected.

    `lower(file's directory, value)` turns a builder's declaration (anything with `derivation_on`)
    into its derivation; the composing layer supplies it, since the store knows no builders.
    """
    output = None
    if "^" in spec:
        spec, output = spec.rsplit("^", 1)
    if spec.endswith(".drv") or split_logical(spec) is not None:
        drvs = [load_derivation(store, store.parse(spec))]
    else:
        file, _, attr = spec.partition(":")
        value = _select(run_python_file(Path(file)), attr or None, file)
        items = value if isinstance(value, list | tuple) else [value]
        if lower is not None:
            items = [lower(Path(file).absolute().parent, i) if hasattr(i, "derivation_on") else i for i in items]
        if not items or not all(isinstance(i, Derivation) for i in items):
            raise DerivationError(f"{spec} is not a derivation (got {type(value).__name__})",
                                  code="not-a-derivation")
        drvs = list(items)
    if output is not None:
        for d in drvs:
            if output not in d.outputs:
                raise DerivationError(f"derivation {d.name!r} has no output {output!r}",
                                      hint=f"its outputs: {', '.join(d.outputs)}", code="unknown-output")
    return drvs, output


def selected_paths(drvs: list[Derivation], output: str | None) -> list[StorePath]:
    return [p for d in drvs for o, p in sorted(d.output_paths.items()) if output in (None, o)]
