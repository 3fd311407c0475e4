"""Seeded mutators for the files a user hands vbp_live besides recordings: YAML configs,
checkpoints and prepared datasets. Each takes a ``random.Random`` so a case is reproduced by
its seed alone.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path
from typing import Any

import yaml

# values that stress a typed loader: wrong types, out-of-range, odd numbers and strings
ODD_VALUES: list[Any] = [
    -1, 0, 10**12, -(10**12), 2**63, 1e308, -1e-308, float("nan"), float("inf"), "nan", "5_000", "٣",
    "", "potato", None, True, [], [1, 2], {}, {"foo": 1}, "a" * 5000, 0.5, -0.5, 3.0, "../../etc/passwd",
    "/dev/zero", [[[[[[]]]]]],
]
ALIAS_BOMB = "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n" \
             "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n" \
             "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n" \
             "g: [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]\n"


def _paths(d: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every key path in a nested dict."""
    out: list[tuple[str, ...]] = []
    if isinstance(d, dict):
        for k, v in d.items():
            out.append((*prefix, k))
            out.extend(_paths(v, (*prefix, k)))
    return out


def _set(d: dict[str, Any], path: tuple[str, ...], value: Any, delete: bool = False) -> None:
    for k in path[:-1]:
        d = d[k]
    if delete:
        d.pop(path[-1], None)
    else:
        d[path[-1]] = value


def mutate_yaml(text: str, rng: random.Random) -> str:
    """One structural or textual mutation of a YAML config's text."""
    op = rng.randrange(12)
    data = yaml.safe_load(text)
    paths = _paths(data)
    if op <= 4 and paths:  # a value of the wrong type or range
        _set(data, rng.choice(paths), rng.choice(ODD_VALUES))
        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    if op == 5 and paths:  # a key removed
        _set(data, rng.choice(paths), None, delete=True)
        return yaml.safe_dump(data, sort_keys=False)
    if op == 6 and paths:  # an unknown key
        path = rng.choice(paths)
        _set(data, (*path[:-1], path[-1] + "x"), 1)
        return yaml.safe_dump(data, sort_keys=False)
    if op == 7:  # not a mapping at the top
        return rng.choice(["- 1\n- 2\n", "just a string\n", "42\n", "", "~\n", "[[[[[[[[[[1]]]]]]]]]]\n"])
    if op == 8:
        return ALIAS_BOMB if rng.random() < 0.5 else "x: " + "[" * 3000 + "]" * 3000 + "\n"
    raw = bytearray(text.encode())
    if op == 9 and raw:  # flipped bytes
        for _ in range(rng.randint(1, 4)):
            raw[rng.randrange(len(raw))] = rng.randrange(256)
        return raw.decode("utf-8", errors="surrogateescape")
    if op == 10:  # truncated
        return text[: rng.randrange(len(text) + 1)]
    return "\ufeff" + text if rng.random() < 0.5 else text.replace("  ", "\t", 1)


def write_yaml_mutant(src: Path, dst: Path, rng: random.Random) -> Path:
    """Write a mutant of the YAML file ``src`` to ``dst`` (undecodable bytes kept as bytes)."""
    text = mutate_yaml(src.read_text(), rng)
    dst.write_bytes(text.encode("utf-8", errors="surrogateescape"))
    return dst


def _mutate_bytes(data: bytes, rng: random.Random) -> bytes:
    raw = bytearray(data)
    op = rng.randrange(4)
    if op == 0:  # flipped bytes
        for _ in range(rng.randint(1, 16)):
            raw[rng.randrange(len(raw))] ^= 1 << rng.randrange(8)
    elif op == 1:  # truncated
        del raw[rng.randrange(len(raw)):]
    elif op == 2:  # zeroed block
        i = rng.randrange(len(raw))
        raw[i: i + rng.randint(1, 4096)] = bytes(len(raw[i: i + 4096]))
    else:  # junk appended or inserted
        i = rng.randrange(len(raw) + 1)
        raw[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
    return bytes(raw)


def mutate_checkpoint(src: Path, dst: Path, rng: random.Random) -> Path:
    """A damaged or lying checkpoint: byte damage, or a well-formed file with wrong contents."""
    import torch

    if rng.random() < 0.35:
        dst.write_bytes(_mutate_bytes(src.read_bytes(), rng))
        return dst
    ck = torch.load(src, weights_only=True)
    op = rng.randrange(10)
    sd = ck["state_dict"]
    key = rng.choice(sorted(sd))
    if op == 0:  # model args that build something else (or something huge)
        ck["model"]["args"] = {rng.choice(["height", "width", "foo"]): rng.choice(ODD_VALUES[:6] + [4096, 100000])}
    elif op == 1:
        ck["model"]["name"] = rng.choice(["nosuchnet", "", 5, None])
    elif op == 2:  # NaN / Inf weights
        t = sd[key].clone().float()
        t.view(-1)[rng.randrange(t.numel())] = rng.choice([float("nan"), float("inf")])
        sd[key] = t
    elif op == 3:  # a tensor of the wrong shape
        sd[key] = torch.zeros(rng.randint(1, 5), 3)
    elif op == 4:  # a missing tensor
        del sd[key]
    elif op == 5:  # a lying crop
        _set(ck, ("crop", rng.choice(sorted(ck["crop"]))), rng.choice(ODD_VALUES))
    elif op == 6:  # a field removed
        ck.pop(rng.choice(["model", "crop", "state_dict", "format"]))
    elif op == 7:  # train_state that a resume would trip over
        ck["train_state"] = rng.choice([{}, {"epoch": "x"}, {"steps_per_epoch": -1}, [], "zz"])
    elif op == 8:  # wrong dtype
        sd[key] = sd[key].to(rng.choice([torch.int64, torch.bool, torch.complex64]))
    else:  # the whole thing is not a dict
        ck = rng.choice([[1, 2], "checkpoint", 3, {"format": "vbp_live/checkpoint-v9"}])
    torch.save(ck, dst)
    return dst


def mutate_dataset(src: Path, dst: Path, rng: random.Random) -> Path:
    """A copy of a prepared dataset with one file damaged or lying."""
    shutil.copytree(src, dst)
    files = sorted(p for p in dst.rglob("*") if p.is_file())
    target = rng.choice(files)
    op = rng.randrange(5)
    if op == 0:
        target.write_bytes(_mutate_bytes(target.read_bytes(), rng))
    elif op == 1:
        target.unlink()
    elif op == 2 and target.suffix in (".yaml", ".yml", ".csv", ".json"):
        if target.suffix == ".csv":
            lines = target.read_text().splitlines()
            if len(lines) > 1:
                i = rng.randrange(1, len(lines))
                cells = lines[i].split(",")
                cells[rng.randrange(len(cells))] = str(rng.choice(ODD_VALUES))
                lines[i] = ",".join(cells)
            target.write_text("\n".join(lines) + "\n")
        else:
            write_yaml_mutant(target, target, rng)
    elif op == 3:  # truncated
        data = target.read_bytes()
        target.write_bytes(data[: rng.randrange(len(data) + 1)])
    else:  # a lying frame shape with the same byte count
        man = next((p for p in files if p.name.startswith("manifest")), None)
        if man is not None:
            text = man.read_text()
            data = yaml.safe_load(text)
            shape = data.get("frame_shape") if isinstance(data, dict) else None
            if isinstance(shape, list) and len(shape) >= 2 and shape[0] % 2 == 0:
                data["frame_shape"] = [shape[0] // 2, shape[1] * 2, *shape[2:]]
                man.write_text(yaml.safe_dump(data, sort_keys=False))
    return dst
