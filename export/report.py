"""Tables and JSON of a harness run (``harness.MujocoHarness.run``'s result). Standard library only."""

from __future__ import annotations

import math
from typing import Any

__all__ = ["MEASURED", "format_table", "json_safe"]

MEASURED: dict[str, tuple[str, int, str]] = {
    "vx": ("local_linvel", 0, "m/s"), "vy": ("local_linvel", 1, "m/s"), "yaw_rate": ("gyro", 2, "rad/s"),
}
"""Command name -> (sensor role, component, unit): what measures how well the robot tracks it."""


def format_table(result: dict[str, Any]) -> str:
    """Aligned plain-text table of a harness run: one row per segment, then the mean absolute errors."""
    s, commands = result["summary"], result["commands"]

    def f(x: float, w: int) -> str:
        return f"{round(x, 2) + 0.0:>{w}.2f}"  # + 0.0: no "-0.00"

    widths = [max(6, len(c) + 4) for c in commands]
    header = " | ".join(f"{c + '_cmd':>{w}} {c:>{w}}" for c, w in zip(commands, widths, strict=True))
    lines = [f"measured: means after skipping the first {s['skip_s']:.1f} s of each segment (and of each "
             "fall reset); " + ", ".join(f"{c} {MEASURED[c][2]} ({MEASURED[c][0]}[{MEASURED[c][1]}])"
                                         for c in commands),
             f"{'seg':>3} {'dur_s':>5} | {header} | {'falls':>5}"]
    for i, r in enumerate(result["segments"]):
        cells = " | ".join(f"{f(r[c + '_cmd'], w)} {f(r[c], w)}" for c, w in zip(commands, widths, strict=True))
        lines.append(f"{i:>3} {r['duration_s']:>5.1f} | {cells} | {r['falls']:>5}")
    errs = ", ".join(f"{c} {s[f'mean_abs_{c}_err']:.3f} {MEASURED[c][2]}" for c in commands)
    pushes = f"; pushes {s['pushes']}" if s.get("pushes") else ""
    substeps = f" ({s['substeps']} substeps per physics step)" if s.get("substeps", 1) > 1 else ""
    for e in result.get("falls", []):
        lines.append(f"fall in segment {e['segment']} at {e['time_in_segment_s']:.2f} s: base {e['base_height']:.3f} m "
                     f"high, its up axis at z {e['up_z']:+.2f}")
    if "terrain" in result:
        last = result["segments"][-1]
        lines.append(f"terrain: highest ground under the base {s['ground_max']:+.2f} m (from the start's); the base "
                     f"ends {last['x_end']:+.2f} m along x, {last['y_end']:+.2f} m along y from its start")
    if "mean_abs_heading_err" in s:
        lines.append(f"heading operator (stiffness {s['heading_stiffness']:g}): the yaw_rate column holds headings "
                     "(rad); yaw_rate_cmd is the mean commanded rate; per segment heading, mean |error| (rad): "
                     + ", ".join(f"{r['heading_cmd']:+.2f} {r['heading_err']:.2f}" for r in result["segments"]))
        errs += f", heading {s['mean_abs_heading_err']:.3f} rad"
    lines.append(f"mean |err|: {errs}; falls {s['falls']}{pushes}; sim {s['sim_s']:.1f} s in "
                 f"{s['wall_s']:.1f} s wall{substeps}")
    return "\n".join(lines)


def json_safe(x: Any) -> Any:
    """NaN/inf -> None, recursively (strict JSON)."""
    if isinstance(x, dict):
        return {k: json_safe(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [json_safe(v) for v in x]
    return None if isinstance(x, float) and not math.isfinite(x) else x
