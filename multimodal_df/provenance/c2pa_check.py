"""Read and validate a C2PA manifest store with the official c2pa-python bindings.

The library hashes the asset to check the manifest's hard binding, so it reads the whole file once;
that is sequential I/O bounded by the file size. Network access (remote manifests, OCSP) is switched
off: a detector must not fetch URLs chosen by the file it is judging.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from .report import AiDeclaration, C2paAction, C2paResult, C2paState, printable
from .vocab import classify_source_type

# Codes that only say nobody vouches for the signer; the manifest itself is intact.
TRUST_CODES = frozenset({"signingCredential.untrusted"})

# Bounds for walking manifest JSON written by whoever made the file.
_MAX_DEPTH = 16
_MAX_NODES = 50_000
_MAX_ACTIONS = 200
_MAX_TEXT = 512


@lru_cache(maxsize=4)
def _context(anchors_pem: str | None) -> Any:
    import c2pa

    settings: dict[str, Any] = {"verify": {"remote_manifest_fetch": False, "ocsp_fetch": False}}
    if anchors_pem:
        # user_anchors adds to the SDK's own anchors instead of replacing them.
        settings["trust"] = {"user_anchors": anchors_pem}
    return c2pa.Context.from_dict(settings)


def _short(value: Any) -> str:
    return printable(value if isinstance(value, str) else json.dumps(value, default=str), _MAX_TEXT)


def _agent_name(agent: Any) -> str | None:
    if isinstance(agent, str):
        return _short(agent)
    if isinstance(agent, dict) and agent.get("name"):
        version = agent.get("version")
        return _short(f"{agent['name']} {version}" if version else str(agent["name"]))
    return None


def _claim_generator(manifest: dict[str, Any]) -> str | None:
    info = manifest.get("claim_generator_info")
    if isinstance(info, list) and info and isinstance(info[0], dict):
        return _agent_name(info[0])
    gen = manifest.get("claim_generator")
    return _short(gen) if isinstance(gen, str) else None


def _source_types(data: Any) -> list[str]:
    """Every value of a ``digitalSourceType`` key (any namespace prefix) in an assertion's data, bounded."""
    found: list[str] = []
    stack: list[tuple[Any, int]] = [(data, 0)]
    nodes = 0
    while stack and nodes < _MAX_NODES:
        node, depth = stack.pop()
        nodes += 1
        if depth > _MAX_DEPTH:
            continue
        if isinstance(node, dict):
            for key, val in node.items():
                if isinstance(key, str) and key.lower().endswith("digitalsourcetype") and isinstance(val, str):
                    found.append(_short(val))
                elif isinstance(val, (dict, list)):
                    stack.append((val, depth + 1))
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node if isinstance(v, (dict, list)))
    return found


def _state(library_state: str | None, failures: list[str]) -> C2paState:
    """Map the library's verdict to ours.

    c2pa-rs says ``Trusted`` only when the signer chains to a configured anchor, ``Valid`` when the
    manifest is intact but trust was not established (``signingCredential.untrusted`` then sits among the
    failures), and ``Invalid`` for any integrity failure (hash mismatch, bad signature, revoked or
    malformed credential).
    """
    if library_state == "Trusted":
        return "valid"
    if library_state == "Invalid":
        return "invalid"
    if library_state == "Valid":
        return "untrusted_signer"
    # Older builds without validation_state: judge from the codes.
    return "invalid" if any(code not in TRUST_CODES for code in failures) else "untrusted_signer"


def _codes(entries: Any) -> list[str]:
    if not isinstance(entries, list):
        return []
    return [_short(str(e["code"])) for e in entries if isinstance(e, dict) and e.get("code")]


def _d(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _l(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _validation(res: C2paResult, store: dict[str, Any]) -> None:
    results = _d(store.get("validation_results"))
    failures = _codes(_d(results.get("activeManifest")).get("failure")) or _codes(store.get("validation_status"))
    res.failure_codes = sorted(set(failures))
    ingredient_codes: list[str] = []
    for delta in _l(results.get("ingredientDeltas")):
        ingredient_codes += _codes(_d(_d(delta).get("validationDeltas")).get("failure"))
    res.ingredient_failure_codes = sorted(set(ingredient_codes))
    lib_state = store.get("validation_state")
    res.library_state = lib_state if isinstance(lib_state, str) else None
    res.state = _state(res.library_state, failures)


def _assertions(res: C2paResult, label: str, manifest: dict[str, Any], is_active: bool) -> None:
    """Actions, digital source types and AI declarations of one manifest."""
    scope = "active manifest" if is_active else f"ingredient manifest {_short(label)}"
    signer = _d(manifest.get("signature_info")).get("common_name")
    by = f", signed by {_short(signer)}" if signer else ""
    for assertion in _l(manifest.get("assertions")):
        name = _short(str(_d(assertion).get("label", "")))
        data = _d(assertion).get("data")
        if name.startswith("c2pa.actions"):
            for act in _l(_d(data).get("actions"))[:_MAX_ACTIONS]:
                if not isinstance(act, dict) or len(res.actions) >= _MAX_ACTIONS:
                    continue
                dst = act.get("digitalSourceType")
                res.actions.append(
                    C2paAction(
                        action=_short(act.get("action", "")),
                        digital_source_type=_short(dst) if dst else None,
                        software_agent=_agent_name(act.get("softwareAgent")),
                        manifest=_short(label),
                        active=is_active,
                    )
                )
        for dst in _source_types(data):
            if dst not in res.declared_source_types:
                res.declared_source_types.append(dst)
            category = classify_source_type(dst)
            if category is not None:
                res.ai_declarations.append(
                    AiDeclaration(
                        source="c2pa", where=f"{name} ({scope}{by})", category=category, value=dst, signed=True
                    )
                )


def parse_store(store: dict[str, Any]) -> C2paResult:
    """Turn the reader's manifest store JSON into a :class:`C2paResult`."""
    res = C2paResult(present=True)
    manifests = _d(store.get("manifests"))
    active_label = store.get("active_manifest")
    active_label = active_label if isinstance(active_label, str) else None
    res.active_manifest = _short(active_label) if active_label is not None else None
    active = _d(manifests.get(active_label)) if active_label is not None else {}
    res.manifests = len(manifests)
    _validation(res, store)
    sig = _d(active.get("signature_info"))
    common_name, org = sig.get("common_name"), sig.get("issuer")
    res.signer = _short(common_name or org) if (common_name or org) else None
    res.signer_org = _short(org) if org else None
    res.claim_generator = _claim_generator(active) if active else None
    # Active manifest first so its declarations lead the list.
    for label, manifest in sorted(manifests.items(), key=lambda kv: kv[0] != active_label):
        if isinstance(manifest, dict):
            _assertions(res, str(label), manifest, label == active_label)
    return res


def check_c2pa(path: Path, mime: str | None, trust_anchors: str | Path | None = None) -> C2paResult:
    """Read and validate the C2PA manifest store of ``path``; never raises.

    ``mime``: the container as sniffed from the bytes (the reader is told this, not the extension).
    ``trust_anchors``: PEM file of root certificates to trust, e.g. the C2PA trust list; without it no
    signer can be ``valid`` and the best a manifest gets is ``untrusted_signer``.
    """
    try:
        import c2pa
    except ImportError:
        return C2paResult(state="not_checked", notes=["c2pa-python is not installed: C2PA not checked"])
    if mime is None:
        return C2paResult(state="not_checked", notes=["this container cannot carry C2PA for the reader"])
    anchors = None
    if trust_anchors is not None:
        try:
            anchors = Path(trust_anchors).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            return C2paResult(state="not_checked", notes=[f"trust anchors unreadable: {type(exc).__name__}"])
    try:
        ctx = _context(anchors)
        with open(path, "rb") as fh:
            reader = c2pa.Reader.try_create(mime, fh, None, ctx)
            if reader is None:
                return C2paResult()
            with reader:
                store = json.loads(reader.json())
                embedded = reader.is_embedded()
    except c2pa.C2paError as exc:
        return _error_result(exc)
    except Exception as exc:
        return C2paResult(
            present=False, state="not_checked", notes=[f"C2PA reader failed: {type(exc).__name__}: {_short(str(exc))}"]
        )
    res = parse_store(store) if isinstance(store, dict) else C2paResult(present=True, state="unreadable")
    res.embedded = embedded
    if not embedded:
        res.notes.append("manifest is remote (not embedded); it was not fetched")
    return res


def _error_result(exc: Exception) -> C2paResult:
    """An exception from the reader: C2PA data that is there but broken, or a file it cannot parse."""
    kind = type(exc).__name__.lstrip("_").removeprefix("C2pa")
    msg = _short(str(exc))
    if kind in ("NotSupported",):
        return C2paResult(state="not_checked", notes=[f"C2PA reader does not support this file: {msg}"])
    if kind in ("Io", "FileNotFound"):
        return C2paResult(state="not_checked", notes=[f"C2PA reader could not read the file: {msg}"])
    if kind == "Other" and "could not be parsed" in msg:
        # The container itself is damaged (e.g. a truncated JPEG): whether it held C2PA is unknown.
        return C2paResult(state="not_checked", notes=[f"file structure too damaged to look for C2PA: {msg}"])
    # Decoding / Verify / Manifest / Json / Other: a manifest-shaped payload that does not parse, or an
    # asset too damaged to locate one. Either way nothing in it can be trusted or believed.
    return C2paResult(present=True, state="unreadable", notes=[f"C2PA data present but unreadable ({kind}): {msg}"])
