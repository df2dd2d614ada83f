"""Shared helpers for the numpy reference scripts (numpy + stdlib only)."""

import json
import os
import sys

FIXTURE_DIR = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), os.pardir, "crates", "lcnn", "tests", "fixtures"
)


def to_jsonable(obj):
    """Recursively turn numpy arrays / scalars into plain Python lists / floats."""
    try:
        import numpy as np
    except ImportError:  # pragma: no cover
        np = None
    if np is not None:
        if isinstance(obj, np.ndarray):
            return to_jsonable(obj.tolist())
        if isinstance(obj, np.generic):
            return obj.item()
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, float):
        if obj != obj or obj in (float("inf"), float("-inf")):
            raise ValueError("non-finite value in fixture")
    return obj


def write_fixture(name, payload, max_bytes=100_000):
    """Write payload as JSON (floats as shortest round-trip float64 repr)."""
    os.makedirs(FIXTURE_DIR, exist_ok=True)
    path = os.path.normpath(os.path.join(FIXTURE_DIR, name))
    text = json.dumps(to_jsonable(payload), indent=1, sort_keys=False, allow_nan=False) + "\n"
    size = len(text.encode("utf-8"))
    if size >= max_bytes:
        raise SystemExit(f"{name}: {size} bytes, over the {max_bytes}-byte budget")
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"wrote {path} ({size} bytes)", file=sys.stderr)
    return path
