"""Realisation: make the outputs of derivations valid, building what is missing (L3).

Only what the targets need is built: the walk stops at valid outputs (`plan`).
Order for one derivation (Nix `LocalStore::addToStore`, applied to builds):
  1. check valid — all outputs already registered: nothing to do;
  2. lock the outputs in sorted order (per-path flock: two processes never build the same path);
  3. re-check valid — another process may have built it while we waited;
  4. build into a temporary location under `$TDX_HOME/tmp` (sandbox: inputs read-only, `/build` and
     the outputs writable, no network unless fixed-output);
  5. normalise, hash, scan references, compare a fixed output's hash with the declared one;
  6. rename into place; 7. register in one transaction; 8. unlock.
The whole run holds the GC lock shared, so a concurrent `gc` cannot delete inputs under a build.
Before building, the store's substituters (binary caches) are asked for the outputs (`cache.py`);
with `store.offline`, builds that would download are listed in one error before anything runs.
Independent derivations run in parallel (`jobs`); dependencies are scheduled first. With one job
everything runs in the calling thread, so Ctrl-C interrupts the build or download at once.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from tdxstore.errors import BuildError, DerivationError, HashMismatchError, TdxError, TransferError
from tdxstore.fetch import offline
from tdxstore.store.build import Options as Options  # re-exported: realise(…, Options(…)) is the API
from tdxstore.store.build import input_closure, run_builder
from tdxstore.store.builtins import BUILTINS, Hashed
from tdxstore.store.derivation import Derivation, decode
from tdxstore.store.nar import NarDigest, hash_path
from tdxstore.store.normalise import normalise_tree
from tdxstore.store.path import StorePath
from tdxstore.store.store import Store, content_address

log = logging.getLogger(__name__)

#: progress(event, derivation, detail): events "valid", "substituted", "build", "built", "failed".
Progress = Callable[[str, Derivation, str], None]


@dataclass(frozen=True, slots=True)
class Plan:
    """What `realise` would do: derivations to build (dependencies first) and those already valid."""

    build: tuple[Derivation, ...]
    valid: tuple[Derivation, ...]


@dataclass
class Result:
    outputs: dict[str, dict[str, StorePath]] = field(default_factory=dict)  # drv path -> output -> path
    built: list[Derivation] = field(default_factory=list)


def closure_of(targets: Sequence[Derivation]) -> list[Derivation]:
    """Every derivation the targets need, each once, inputs before their users."""
    seen: set[StorePath] = set()
    order: list[Derivation] = []
    for t in targets:
        if t.drv_path in seen:
            continue
        for d in t.walk():
            if d.drv_path not in seen:
                seen.add(d.drv_path)
                order.append(d)
    return order


def instantiate(store: Store, drv: Derivation | Sequence[Derivation]) -> StorePath:
    """Write the .drv files of `drv` and all its input derivations into the store."""
    targets = [drv] if isinstance(drv, Derivation) else list(drv)
    for d in closure_of(targets):
        if store.is_valid(d.drv_path):
            continue
        for src in d.input_srcs:
            if not store.is_valid(src):
                raise DerivationError(
                    f"derivation {d.name!r} uses {src}, which is not valid in this store",
                    hint="add or build that path first (for example `tdx store add`)", code="input-not-valid")
        store.add_text(f"{d.name}.drv", d.encoded, [i.drv_path for i in d.input_drvs] + list(d.input_srcs))
    return targets[-1].drv_path


def load_derivation(store: Store, drv_path: StorePath) -> Derivation:
    """Read a .drv (and its inputs, recursively) back from the store; cycles are refused."""
    cache: dict[StorePath, Derivation] = {}

    def load(sp: StorePath, stack: tuple[StorePath, ...]) -> Derivation:
        if sp in stack:
            chain = " -> ".join(p.name for p in (*stack, sp))
            raise DerivationError(f"derivation cycle: {chain}", code="cycle")
        if sp in cache:
            return cache[sp]
        if not sp.is_derivation:
            raise DerivationError(f"{sp} is not a derivation (.drv)", code="not-a-derivation")
        if not store.is_valid(sp):
            raise DerivationError(f"derivation {sp} is not valid in this store",
                                  hint="instantiate it first (tdx realise FILE.py)", code="input-not-valid")
        data = store.real_path(sp).read_bytes()
        drv = decode(data, lambda p: load(p, (*stack, sp)), where=str(sp))
        if drv.drv_path != sp:
            raise DerivationError(f"{sp} does not hash to its own path", code="drv-malformed")
        cache[sp] = drv
        return drv

    return load(drv_path, ())


def plan(store: Store, targets: Sequence[Derivation]) -> Plan:
    """Walk down from the targets; a derivation whose outputs are valid needs none of its inputs.

    As in Nix, a missing input below a valid output is not built (or fetched): a store that got the
    outputs from a bundle or a cache, without what they were built from, realises with nothing to do.
    """
    order = closure_of(targets)  # inputs before their users
    needed = {t.drv_path for t in targets}
    build: list[Derivation] = []
    valid: list[Derivation] = []
    for d in reversed(order):  # users before their inputs
        if d.drv_path not in needed:
            continue
        if _outputs_valid(store, d):
            valid.append(d)
        else:
            build.append(d)
            needed.update(i.drv_path for i in d.input_drvs)
    return Plan(tuple(reversed(build)), tuple(reversed(valid)))


def _outputs_valid(store: Store, drv: Derivation) -> bool:
    return all(store.is_valid(p) for p in drv.output_paths.values())


def realise(store: Store, targets: Sequence[Derivation], options: Options | None = None,
            progress: Progress | None = None) -> Result:
    """Make every output of `targets` valid; returns their paths and what was built."""
    options = options or Options()
    with store.gc_guard():
        instantiate(store, targets)
        todo = plan(store, targets)
        notify = progress or (lambda _e, _d, _s: None)
        for d in todo.valid:
            notify("valid", d, "")
        if store.offline:
            check_offline(store, todo.build)
        result = Result()
        _schedule(store, list(todo.build), options, notify, result)
        for d in closure_of(targets):
            result.outputs[d.drv_path.logical] = dict(d.output_paths)
        return result


def _schedule(store: Store, todo: list[Derivation], options: Options, notify: Progress, result: Result) -> None:
    if options.jobs <= 1:
        # In the calling thread, in dependency order: Ctrl-C (KeyboardInterrupt, delivered only to the
        # main thread) then interrupts the download or build itself, whose cleanup runs at once.
        for d in todo:
            if _build_one(store, d, options, notify):
                result.built.append(d)
        return
    pending = {d.drv_path: d for d in todo}
    waiting_on = {d.drv_path: {i.drv_path for i in d.input_drvs if i.drv_path in pending} for d in todo}
    lock = threading.Lock()
    failure: list[BaseException] = []
    with ThreadPoolExecutor(max_workers=max(1, options.jobs)) as pool:
        running: dict[Future[bool], Derivation] = {}
        while (waiting_on or running) and not failure:
            ready = [p for p, deps in waiting_on.items() if not deps]
            for p in sorted(ready):
                del waiting_on[p]
                running[pool.submit(_build_one, store, pending[p], options, notify)] = pending[p]
            if not running:
                raise DerivationError("derivation graph has a cycle", code="cycle")
            try:
                done, _ = wait(running, return_when=FIRST_COMPLETED)
            except BaseException:
                pool.shutdown(wait=False, cancel_futures=True)  # Ctrl-C: start nothing new
                raise
            for fut in done:
                drv = running.pop(fut)
                try:
                    if fut.result():
                        with lock:
                            result.built.append(drv)
                except BaseException as e:
                    failure.append(e)
                    continue
                for deps in waiting_on.values():
                    deps.discard(drv.drv_path)
        for fut in running:  # let builds already started finish cleanly
            try:
                fut.result()
            except BaseException as e:
                log.debug("concurrent build failed too: %s", e)
    if failure:
        raise failure[0]


def _build_one(store: Store, drv: Derivation, options: Options, notify: Progress) -> bool:
    """Build `drv` unless another process did; True when this process built it."""
    outputs = sorted(drv.output_paths.values())
    if _outputs_valid(store, drv):
        notify("valid", drv, "")
        return False
    # Before the output locks: registering a substitute takes each path's lock itself (and re-checks).
    if store.substituters is not None and _substitute(store, drv):
        notify("substituted", drv, "")
        return False
    with store.path_locks(outputs):
        if _outputs_valid(store, drv):
            notify("valid", drv, "built by another process")
            return False
        _check_inputs_valid(store, drv)
        notify("build", drv, "")
        start = time.monotonic()
        try:
            run_builder(store, drv, options,
                        lambda staged, hashed: _install(store, drv, staged, hashed, impure=options.no_sandbox))
        except TdxError:
            notify("failed", drv, "")
            raise
        notify("built", drv, f"{time.monotonic() - start:.2f}s")
        return True


def uses_network(drv: Derivation) -> bool:
    """Fixed-output builds may download; so do the builtins marked so (mkosi, unless its packages are locked)."""
    entry = BUILTINS.get(drv.builder)
    return drv.fixed is not None or (entry is not None and entry.downloads(drv))


def check_offline(store: Store, todo: Sequence[Derivation]) -> None:
    """`--offline`: every build that would download and no cache can supply, in one error, before any build."""
    subs = store.substituters
    missing = [d for d in todo if uses_network(d)
               and not (subs is not None and all(subs.lookup(p) for p in d.output_paths.values()))]
    lines = [f"{dict(d.env).get('url') or d.builder}  ->  {d.out}" for d in missing]
    if offline.missing():  # fetches the TDXfile's evaluation could not make: one list with the builds
        raise offline.error(lines)
    if missing:
        raise TransferError(f"--offline: {len(missing)} derivation(s) would need the network and are not in the "
                            "store", detail="\n".join(lines), code="offline-missing",
                            hint="import a bundle that holds them (tdx store export on a connected machine, "
                                 "then tdx store import here), or run without --offline")


def _substitute(store: Store, drv: Derivation) -> bool:
    """All outputs of `drv` from the configured caches (and their records); False: build it."""
    assert store.substituters is not None
    if not all(store.substituters.substitute(store, p) for p in drv.output_paths.values()):
        return False
    with store.db.transaction() as conn:
        for o, sp in drv.output_paths.items():
            store.db.record_output(conn, drv.drv_path.base_name, o, sp.base_name)
    return True


def _check_inputs_valid(store: Store, drv: Derivation) -> None:
    for i in drv.input_drvs:
        for p in i.output_paths.values():
            if not store.is_valid(p):
                raise DerivationError(f"input {p} of {drv.name!r} is not valid", code="input-not-valid")


def _install(store: Store, drv: Derivation, staged: dict[str, Path], hashed: Hashed | None, *,
             impure: bool) -> None:
    candidates = input_closure(store, drv)
    for o, sp in sorted(drv.output_paths.items()):
        tree = staged[o]
        if drv.fixed is not None:
            digest = _check_fixed(drv, tree, hashed)
            ca = content_address(bytes.fromhex(drv.fixed.sha256), recursive=drv.fixed.recursive)
            store.install(tree, sp, deriver=drv.drv_path, ca=ca, impure=impure, digest=digest)
        elif drv.builder.startswith("builtin:"):
            # Host builtins (mkosi) produce binary artifacts that rarely spell out store paths, yet were
            # made from every input: record the direct inputs as references.
            store.install(tree, sp, references=_direct_inputs(drv), deriver=drv.drv_path, impure=impure)
        else:
            others = [p for k, p in drv.output_paths.items() if k != o and store.is_valid(p)]
            store.install(tree, sp, scan=[*candidates, *others], deriver=drv.drv_path, impure=impure)
        with store.db.transaction() as conn:
            store.db.record_output(conn, drv.drv_path.base_name, o, sp.base_name)


def _direct_inputs(drv: Derivation) -> list[StorePath]:
    return sorted({*drv.input_srcs, *(p for i in drv.input_drvs for p in i.output_paths.values())})


def _check_fixed(drv: Derivation, tree: Path, hashed: Hashed | None) -> NarDigest:
    """Normalise a fixed output and compare its hash with the declared one; return its NAR digest.

    One read at most: the builtin's own hash when it has one, else a pass that yields the flat and
    the NAR hash together.
    """
    assert drv.fixed is not None
    if not drv.fixed.recursive and (not tree.is_file() or tree.is_symlink()):
        raise BuildError(f"fixed-output derivation {drv.name!r} must produce a single regular file",
                         code="fixed-output-not-file")
    normalise_tree(tree)
    if hashed is not None:
        got, digest = hashed.sha256, hashed.nar
    else:
        flat = hashlib.sha256()
        digest = hash_path(tree, contents=flat.update)
        got = digest.hex if drv.fixed.recursive else flat.hexdigest()
    if got != drv.fixed.sha256:
        what = dict(drv.env).get("url") or drv.name
        raise HashMismatchError(what, f"sha256:{drv.fixed.sha256}", f"sha256:{got}")
    return digest


def outputs_of(targets: Iterable[Derivation]) -> list[StorePath]:
    return [p for t in targets for p in t.output_paths.values()]

