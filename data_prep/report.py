"""Plain-text tables of a run's counts and timings (the CLI prints them)."""

from __future__ import annotations

from data_prep.result import PrepResult

REASON_HELP = {
    "duplicate_timestamp": "same camera timestamp as an earlier frame",
    "slow": "speed <= filter.min_speed_mps",
    "corrupt_image": "image could not be decoded",
    "missing_image": "image file missing",
}


def _reason_help(reason: str) -> str:
    if reason in REASON_HELP:
        return REASON_HELP[reason]
    channel, _, what = reason.partition("_")
    return {
        "before_first": f"before the first {channel} sample",
        "after_last": f"after the last {channel} sample",
        "gap": f"{channel} gap wider than sync.max_gap_s",
        "missing": f"no {channel} value in the log row",
    }.get(what, "")


def summary_table(res: PrepResult) -> str:
    """Counts read / kept / dropped per reason, splits and output path."""
    c = res.counts
    lines = [f"{'frames':<34}{'count':>10}", "-" * 44, f"{'read (camera frames)':<34}{c['read']:>10}"]
    for reason, n in c["dropped"].items():
        lines.append(f"{'  dropped: ' + reason:<34}{n:>10}   {_reason_help(reason)}")
    lines.append(f"{'kept':<34}{c['kept']:>10}")
    for name, n in res.splits.items():
        lines.append(f"{'  ' + name:<34}{n:>10}")
    what = "labels" if res.labels_only else "dataset"
    lines.append(f"{what}: {res.out_dir}")
    lines += [f"warning: {w}" for w in res.warnings]
    return "\n".join(lines)


def timing_table(res: PrepResult) -> str:
    """Frames/s end to end and where the time went."""
    t = res.timings
    total = t.get("total", 0.0)
    n = res.decoded
    lines = [f"end to end: {n} frames decoded in {total:.2f} s = {n / total if total else 0:.0f} frames/s "
             f"({res.counts['read'] / total if total else 0:.0f} camera frames read/s)"]
    if n and t.get("cpu"):
        cpu = 1000 * t["cpu"] / n
        lines.append(f"CPU: {cpu:.2f} ms/frame over all threads -> about {2000 / cpu:.0f} frames/s on 2 idle cores "
                     f"(wall-clock figures above include waiting for other processes)")
    if res.resumed_at:
        lines.append(f"(resumed: {res.resumed_at} frames were done by an earlier run)")
    lines.append(f"{'stage':<12}{'seconds':>9}{'ms/frame':>10}  note")
    notes = {"scan": "pass 1: timestamps + measurements (wall)", "read": "pass 2: read + deserialize (main thread)",
             "decode": "image decode (summed over threads)", "preprocess": "crop/gray/resize (summed over threads)",
             "write": "append + checkpoints (main thread)"}
    for stage, note in notes.items():
        if stage in t:
            per = 1000 * t[stage] / n if n else 0.0
            lines.append(f"{stage:<12}{t[stage]:>9.2f}{per:>10.3f}  {note}")
    return "\n".join(lines)
